// Reactive failover: the baseline every storage system has. A server that misses heartbeats for
// the timeout is marked down; every SMT entry that names it drops it in one transaction (a
// surviving replica becomes primary where needed; epochs bump, so the dead server is fenced);
// then the repair policy proposes, at the highest priority, a new replica for every segment
// below its replication factor. Clients and servers that cannot reach a server report it
// (suspect()); the orchestrator then probes it itself, and a refused connection — nothing listens
// on its data port, the process is gone — marks it down at once instead of after the heartbeat
// timeout (as Ceph does on connection refused). Anything less certain (a timeout, a reset) waits
// for the heartbeats: a slow or partitioned server is not a dead one.

import net from 'node:net';
import { parseHostPort } from '../common/address.ts';
import type { Logger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { KvStore } from '../metadata/kv.ts';
import type { DecisionLog } from './decision-log.ts';
import { smtKey, type SmtEntry } from '../metadata/model.ts';
import { NotFoundError, type MetadataWriter } from './metadata-writer.ts';
import type { OperatorController } from './operator-controller.ts';
import { PRIORITY } from './operators.ts';
import { pickReplicas } from './placement.ts';

export interface Liveness {
  at: number;
  usedBytes: number;
  segments: number;
  /** Copies the server holds in quarantine (see StorageServer's GC). */
  quarantined?: number;
}

export type SuspectResult = 'marked-down' | 'reachable' | 'inconclusive' | 'not-up';

/** How long one probe result answers further reports about the same server. */
const PROBE_REUSE_MS = 500;

/** Connects to host:port: 'refused' (nothing listens), 'open', or 'inconclusive' (timeout, other errors). */
export function probeTcp(addr: string, timeoutMs: number): Promise<'refused' | 'open' | 'inconclusive'> {
  let host: string;
  let port: number;
  try {
    ({ host, port } = parseHostPort(addr));
  } catch {
    return Promise.resolve('inconclusive');
  }
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (r: 'refused' | 'open' | 'inconclusive') => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('inconclusive'), timeoutMs);
    sock.once('connect', () => done('open'));
    sock.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'inconclusive'));
  });
}

export class FailoverController {
  /** (server, segment) pairs whose damaged copy is being dropped now (heartbeats repeat the report). */
  private readonly droppingDamaged = new Set<string>();
  private readonly probes = new Map<string, { at: number; result: Promise<SuspectResult> }>();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private startedAt = Date.now();
  /** Segments whose repair found no target yet (logged once, retried every tick). */
  private readonly stuck = new Set<string>();

  constructor(
    private readonly kv: KvStore,
    private readonly view: ClusterView,
    private readonly writer: MetadataWriter,
    private readonly controller: OperatorController,
    private readonly liveness: Map<string, Liveness>,
    readonly timeoutMs: number,
    private readonly log: Logger,
    private readonly repairEnabled = true,
    private readonly decisions?: DecisionLog,
  ) {}

  start(intervalMs = 200): void {
    // Servers get a full timeout to reach a newly started (or newly elected) orchestrator.
    this.startedAt = Date.now();
    this.stopped = false;
    const loop = async () => {
      if (this.stopped) return;
      await this.tick().catch((err) => this.log.error({ err }, 'failover tick failed'));
      if (!this.stopped) this.timer = setTimeout(loop, intervalMs);
    };
    this.timer = setTimeout(loop, intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  async tick(): Promise<void> {
    const now = Date.now();
    for (const s of [...this.view.servers.values()]) {
      if (s.state !== 'up') continue;
      // After an orchestrator restart every server gets a full timeout to check in.
      const last = this.liveness.get(s.id)?.at ?? this.startedAt;
      if (now - last > this.timeoutMs) await this.markDown(s.id, now - last);
    }
    if (this.repairEnabled) await this.proposeRepairs();
  }

  /**
   * Someone could not reach `serverId`. Probes its data port (one probe at a time per server):
   * refused → marked down now; otherwise nothing changes and the heartbeats decide.
   */
  suspect(serverId: string, reportedBy: string): Promise<SuspectResult> {
    const s = this.view.servers.get(serverId);
    if (!s || s.state !== 'up') return Promise.resolve('not-up');
    const prev = this.probes.get(serverId);
    if (prev && Date.now() - prev.at < PROBE_REUSE_MS) return prev.result;
    const result = (async (): Promise<SuspectResult> => {
      const r = await probeTcp(s.dataAddr, 1000);
      if (r === 'open') return 'reachable';
      if (r === 'inconclusive') return 'inconclusive';
      const cur = this.view.servers.get(serverId);
      if (!cur || cur.state !== 'up') return 'not-up';
      const silentMs = Date.now() - (this.liveness.get(serverId)?.at ?? this.startedAt);
      await this.markDown(serverId, silentMs, `connection refused on ${s.dataAddr} (unreachable for ${reportedBy}; last heartbeat ${Math.round(silentMs)} ms ago)`);
      return 'marked-down';
    })();
    this.probes.set(serverId, { at: Date.now(), result });
    return result;
  }

  /** Marks a server down and removes it from every entry in one transaction per batch. */
  async markDown(serverId: string, silentMs: number, why = `no heartbeat for ${Math.round(silentMs)} ms`): Promise<void> {
    this.log.warn({ server: serverId, silentMs, why }, 'marking server down');
    await this.writer.setServerState(serverId, 'down');
    for (let attempt = 0; attempt < 20; attempt++) {
      const r = await this.kv.range(smtKey(''));
      const compare = [];
      const put = [];
      for (const e of r.entries) {
        const entry = JSON.parse(e.value) as SmtEntry;
        const inReplicas = entry.replicas.includes(serverId);
        const inJoining = entry.joining?.includes(serverId) ?? false;
        if (!inReplicas && !inJoining) continue;
        const survivors = entry.replicas.filter((x) => x !== serverId);
        // The last copy stays named: the data is unavailable until that server returns, never silently lost.
        const replicas = survivors.length > 0 ? survivors : entry.replicas;
        const next: SmtEntry = { ...entry, epoch: entry.epoch + 1, replicas, state: 'degraded' };
        const joining = entry.joining?.filter((x) => x !== serverId);
        if (joining && joining.length) next.joining = joining;
        else delete next.joining;
        compare.push({ key: e.key, modRevision: e.modRevision });
        put.push({ key: e.key, value: JSON.stringify(next) });
      }
      if (put.length === 0) return;
      const res = await this.kv.txn({ compare, put });
      if (res.succeeded) {
        await this.view.replica.waitForRevision(res.revision, 5000);
        this.log.warn({ server: serverId, segments: put.length, revision: res.revision }, 'failed over: entries updated');
        this.decisions?.record({ type: 'failover', segmentId: '', server: serverId, reason: `${why}: ${put.length} segment(s) failed over` });
        return;
      }
    }
    this.log.error({ server: serverId }, 'could not fail over: too much contention; will retry');
    await this.writer.setServerState(serverId, 'up'); // so the next tick tries again
  }

  /**
   * A server reported its copies of `segments` damaged (found so at start-up): each such copy
   * leaves the replica set (epoch + 1, degraded) so that reads and writes go to the healthy
   * replicas and repair re-replicates, exactly as for a lost server, but for those segments only.
   * A copy that is the last one stays named: the data is then unavailable, never silently lost.
   */
  async dropDamagedCopies(serverId: string, segments: string[]): Promise<void> {
    for (const segId of segments) {
      if (this.droppingDamaged.has(`${serverId} ${segId}`)) continue;
      this.droppingDamaged.add(`${serverId} ${segId}`);
      try {
        const r = await this.writer.updateEntry(segId, (e) => {
          const others = e.replicas.filter((x) => x !== serverId && this.view.servers.get(x)?.state === 'up');
          if (!e.replicas.includes(serverId) || others.length === 0) return undefined;
          const next: SmtEntry = { ...e, replicas: e.replicas.filter((x) => x !== serverId), state: 'degraded' };
          if (e.joining) next.joining = e.joining.filter((x) => x !== serverId);
          return next;
        }).catch((err: unknown) => (err instanceof NotFoundError ? undefined : Promise.reject(err)));
        if (r?.changed) {
          this.log.warn({ server: serverId, segment: segId }, 'replaced a damaged copy: dropped from the replica set');
          this.decisions?.record({ type: 'failover', segmentId: segId, server: serverId, reason: `the copy on ${serverId} is damaged: dropped, to be re-replicated from a healthy replica` });
        } else if (r && r.entry.replicas.includes(serverId)) {
          this.log.error({ server: serverId, segment: segId }, 'the only live copy of a segment is damaged: left in place (unavailable until repaired by hand)');
        }
      } finally {
        this.droppingDamaged.delete(`${serverId} ${segId}`);
      }
    }
  }

  /** A heartbeat from a server marked down brings it back as an empty-handed member. */
  async markUp(serverId: string): Promise<void> {
    const s = this.view.servers.get(serverId);
    if (s && s.state === 'down') {
      await this.writer.setServerState(serverId, 'up');
      this.log.info({ server: serverId }, 'server is back');
      this.decisions?.record({ type: 'server-back', segmentId: '', server: serverId, reason: 'heartbeats resumed: it holds nothing until placement uses it again' });
    }
  }

  private async proposeRepairs(): Promise<void> {
    let pool: ReturnType<MetadataWriter['placementCandidates']> | undefined;
    for (const [segId, e] of this.view.smt) {
      const vol = this.view.volumes.get(segId.slice(0, segId.lastIndexOf('/')));
      if (!vol) continue;
      const live = e.replicas.filter((r) => this.view.servers.get(r)?.state === 'up');
      if (live.length === 0) continue; // nothing to copy from
      const missing = vol.replicas - e.replicas.length;
      if (missing <= 0) {
        if (e.state === 'degraded' && !this.controller.get(segId) && live.length === e.replicas.length) {
          await this.writer.updateEntry(segId, (x) => (x.state === 'degraded' && x.replicas.length >= vol.replicas ? { ...x, state: 'ok' } : undefined));
        }
        continue;
      }
      if (this.controller.get(segId)) continue;
      const holders = new Set([...e.replicas, ...(e.joining ?? [])]);
      // One pool per tick, so the repairs of one failure spread over the survivors.
      pool ??= this.writer.placementCandidates(new Set(), this.controller.pendingTargets());
      let target: string | undefined;
      try {
        [target] = pickReplicas(pool.filter((c) => !holders.has(c.id)), 1, vol.segmentSize, pool.filter((c) => holders.has(c.id)), segId);
      } catch {
        if (!this.stuck.has(segId)) this.log.warn({ segment: segId }, 'no server available to restore redundancy');
        this.stuck.add(segId);
        continue;
      }
      this.stuck.delete(segId);
      await this.controller.propose({
        segmentId: segId,
        kind: 'repair',
        target,
        priority: PRIORITY.repair,
        reason: `${e.replicas.length} of ${vol.replicas} replicas`,
        source: 'reactive-repair',
      });
    }
  }
}
