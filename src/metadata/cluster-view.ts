// A typed, read-only view of the cluster metadata, kept current by a KvReplica. Servers use it
// to check the epoch of every request; clients use it to route I/O; the orchestrator uses it
// for status and placement.

import { EventEmitter } from 'node:events';
import type { KvEvent } from './kv.ts';
import type { KvReplica } from './kv-replica.ts';
import {
  CLUSTER_KEY, FLAGS_KEY, SERVERS, SMT, VOLUMES,
  type ClusterFlags, type ClusterRecord, type ServerRecord, type SmtEntry, type VolumeRecord,
} from './model.ts';

export class ClusterView extends EventEmitter {
  readonly volumes = new Map<string, VolumeRecord>();
  readonly servers = new Map<string, ServerRecord>();
  readonly smt = new Map<string, SmtEntry>();
  /** The identity of the cluster this metadata belongs to (absent on a store not yet initialised). */
  cluster?: ClusterRecord;
  /** Operator switches (noout); empty when none was ever set. */
  flags: ClusterFlags = {};

  constructor(readonly replica: KvReplica) {
    super();
    replica.on('reload', () => this.rebuild());
    replica.on('change', (ev: KvEvent) => this.apply(ev));
    this.rebuild();
  }

  get revision(): number {
    return this.replica.revision;
  }

  entry(segmentId: string): SmtEntry | undefined {
    return this.smt.get(segmentId);
  }

  /** Pulls pending changes now; used after a server answered STALE or NOT_OWNER. */
  refresh(): Promise<void> {
    return this.replica.refresh();
  }

  /** Segment ids of a volume, in index order. */
  segmentsOf(volume: string): string[] {
    const v = this.volumes.get(volume);
    if (!v) return [];
    return Array.from({ length: v.segmentCount }, (_, i) => `${volume}/${i}`);
  }

  private rebuild(): void {
    this.volumes.clear();
    this.servers.clear();
    this.smt.clear();
    this.cluster = undefined;
    this.flags = {};
    for (const [key, value] of this.replica.entries()) this.set(key, value);
    this.emit('reload');
  }

  private apply(ev: KvEvent): void {
    const wasDown = ev.key.startsWith(SERVERS) ? this.servers.get(ev.key.slice(SERVERS.length))?.state === 'down' : true;
    if (ev.type === 'put' && ev.value !== undefined) this.set(ev.key, ev.value);
    else this.remove(ev.key);
    this.emit('change', ev);
    // 'server-down' (record): for dropping connections to it, whose requests in flight would otherwise wait out their timeouts.
    if (!wasDown) {
      const s = this.servers.get(ev.key.slice(SERVERS.length));
      if (s?.state === 'down') this.emit('server-down', s);
    }
  }

  private set(key: string, value: string): void {
    try {
      if (key.startsWith(SMT)) this.smt.set(key.slice(SMT.length), JSON.parse(value) as SmtEntry);
      else if (key.startsWith(VOLUMES)) this.volumes.set(key.slice(VOLUMES.length), JSON.parse(value) as VolumeRecord);
      else if (key.startsWith(SERVERS)) this.servers.set(key.slice(SERVERS.length), JSON.parse(value) as ServerRecord);
      else if (key === CLUSTER_KEY) this.cluster = JSON.parse(value) as ClusterRecord;
      else if (key === FLAGS_KEY) this.flags = JSON.parse(value) as ClusterFlags;
    } catch {
      // A value that does not parse is ignored rather than crashing every watcher; the writer validates.
    }
  }

  private remove(key: string): void {
    if (key.startsWith(SMT)) this.smt.delete(key.slice(SMT.length));
    else if (key.startsWith(VOLUMES)) this.volumes.delete(key.slice(VOLUMES.length));
    else if (key.startsWith(SERVERS)) this.servers.delete(key.slice(SERVERS.length));
    else if (key === CLUSTER_KEY) this.cluster = undefined;
    else if (key === FLAGS_KEY) this.flags = {};
  }
}
