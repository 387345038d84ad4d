// How a server, client or CLI reaches the cluster's metadata: through the orchestrator's API
// (embedded store), or straight from etcd (`--meta etcd://…`), finding the active orchestrator
// by its leader election.

import { EtcdMeta, parseMetaOption } from '../metadata/backend.ts';
import type { KvSource } from '../metadata/kv-replica.ts';
import { OrchestratorClient } from './orchestrator-client.ts';

export interface MetaTarget {
  /** The orchestrator's URL (required with the embedded store; optional with etcd). */
  orchestratorUrl?: string;
  /** "embedded" (default) or etcd://HOST:PORT[,…]. */
  meta?: string;
}

export interface MetaConnection {
  api: OrchestratorClient;
  /** What a KvReplica follows: the orchestrator's watch API, or etcd itself. */
  source: KvSource;
  close(): Promise<void>;
}

export function connectMeta(target: MetaTarget): MetaConnection {
  const backend = parseMetaOption(target.meta);
  if (backend.kind === 'etcd') {
    const etcd = new EtcdMeta(backend.url);
    const api = new OrchestratorClient(target.orchestratorUrl ?? (() => etcd.leaderUrl()));
    return {
      api,
      source: etcd.store,
      close: async () => {
        api.close();
        await etcd.close();
      },
    };
  }
  if (!target.orchestratorUrl) throw new Error('an orchestrator URL is needed with the embedded metadata store');
  const api = new OrchestratorClient(target.orchestratorUrl);
  return { api, source: api.kvSource(), close: async () => api.close() };
}
