// Which metadata store a process uses: the orchestrator's embedded store (reached through the
// orchestrator's API) or etcd (`--meta etcd://host:port[,host:port…]`, `etcds://` with TLS), which servers and clients
// then watch directly, and where the active orchestrator is found by leader election.

import { EtcdKvStore, parseEtcdUrl } from './etcd-kv.ts';
import { LeaderElection } from './leader-election.ts';

export const ORCHESTRATOR_ELECTION = 'presage-orchestrator';

export type MetaBackend = { kind: 'embedded' } | { kind: 'etcd'; url: string };

export function parseMetaOption(text: string | undefined): MetaBackend {
  if (!text || text === 'embedded') return { kind: 'embedded' };
  if (text.startsWith('etcd://') || text.startsWith('etcds://')) {
    parseEtcdUrl(text); // throws a clear error on a malformed URL
    return { kind: 'etcd', url: text };
  }
  throw new Error(`invalid --meta "${text}" (expected "embedded", etcd://HOST:PORT[,HOST:PORT…] or etcds:// for TLS)`);
}

/** An etcd connection for a server or client: a watch source, and where the leader's API is. */
export class EtcdMeta {
  readonly store: EtcdKvStore;
  private readonly election: LeaderElection;

  constructor(url: string) {
    this.store = EtcdKvStore.connect(url);
    // Only used to read who leads; this process never campaigns through it.
    this.election = new LeaderElection(this.store.client, ORCHESTRATOR_ELECTION, 'observer', 5);
  }

  /** The API URL of the orchestrator that currently leads (its candidate id is its URL). */
  async leaderUrl(): Promise<string> {
    const url = await this.election.leader().catch((e) => Promise.reject(this.store.explain(e)));
    if (!url) throw new Error('no orchestrator is leading (is one running with the same --meta?)');
    return url;
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
