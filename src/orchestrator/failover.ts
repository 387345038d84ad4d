// Reactive failover: the baseline every storage system has. A server that misses heartbeats for
// the timeout is marked down; every SMT entry that names it drops it in one transaction (a
// surviving replica becomes primary where needed; epochs bump, so the dead server is fenced);
// then, once the server has been down for the down → out delay (and unless the cluster's
// `noout` flag is set), the repair policy proposes, at the highest priority, a new replica for
// every segment below its replication factor. Clients and servers that cannot reach a server
// report it (suspect()); the orchestrator then probes it itself, and a refused connection —
// nothing listens on its data port, the process is gone — marks it down at once instead of after
// the heartbeat timeout (as Ceph does on connection refused). Anything less certain (a timeout, a
// reset) waits for the heartbeats: a slow or partitioned server is not a dead one.
//
// Against mass mark-down (docs/reliability.md): the orchestrator never marks a server down when
// that would leave fewer than `minUpRatio` of the servers up (Ceph's mon_osd_min_up_ratio), and
// a tick that runs late by more than the stall limit — the orchestrator itself was paused,
// swapped out or SIGSTOPped, so the silence it sees is its own — gives every server a full
// heartbeat timeout again instead of condemning them all.

import net from 'node:net';
import { parseHostPort } from '../common/address.ts';
import type { Logger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { KvStore } from '../metadata/kv.ts';
import type { DecisionLog } from './decision-log.ts';
import { ConflictError, NotFoundError, type MetadataWriter } from './metadata-writer.ts';
import type { OperatorController } from './operator-controller.ts';
import { PRIORITY } from './operators.ts';
import { pickTarget } from './placement.ts';
import { dropCopy, dropServer, markOk } from './smt-transitions.ts';

export interface Liveness {
  at: number;
  usedBytes: number;
  segments: number;
  /** Copies the server holds in quarantine (see StorageServer's GC). */
  quarantined?: number;
  /** The server's writes found its disk full lately: placement passes it over. */
  full?: boolean;
}

export type { SuspectResult } from '../api/types.ts';
import type { SuspectResult } from '../api/types.ts';

/** What limits mark-downs and re-replication (OrchestratorOptions.markDown; defaults below). */
export interface MarkDownPolicy {
  /** Never mark a server down if fewer than this share of the registered servers would stay up. */
  minUpRatio: number;
  /** How long a server stays down before its segments are re-replicated elsewhere ("out"). */
  downOutDelayMs: number;
  /**
   * A failover tick later than this (the orchestrator did not run) restarts every server's
   * heartbeat timeout: what it missed while stopped is not the servers' silence.
   */
  stallMs: number;
}

export const DEFAULT_MARK_DOWN: MarkDownPolicy = { minUpRatio: 0.3, downOutDelayMs: 30_000, stallMs: 2_000 };

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
  /** Segments left with full copies only, logged once each (heartbeats repeat the report). */
  private readonly noSpaceHeld = new Set<string>();
  /** (server, segment) pairs whose damaged or full copy is being dropped now (heartbeats repeat the report). */
  private readonly dropping = new Set<string>();
  private readonly probes = new Map<string, { at: number; result: Promise<SuspectResult> }>();
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private startedAt = Date.now();
  /** Segments whose repair found no target yet (logged once, retried every tick). */
  private readonly stuck = new Set<string>();
  /** Per segment that lost a replica to a mark-down: when it may be re-replicated (down → out). */
  private readonly outAt = new Map<string, number>();
  /** Servers whose mark-down the up-ratio holds back (logged and recorded once per episode). */
  private readonly held = new Set<string>();
  private lastTickAt = 0;
  readonly policy: MarkDownPolicy;

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
    policy: Partial<MarkDownPolicy> = {},
  ) {
    this.policy = { ...DEFAULT_MARK_DOWN, ...policy };
  }

  start(intervalMs = 200): void {
    // Servers get a full timeout to reach a newly started (or newly elected) orchestrator.
    this.startedAt = Date.now();
    this.lastTickAt = 0;
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
    if (this.lastTickAt > 0 && now - this.lastTickAt > this.policy.stallMs) {
      // We did not run (paused, swapped, SIGSTOPped): heartbeats that arrived meanwhile wait
      // unread in socket buffers, so every server looks silent. Start their timeouts again.
      this.log.warn({ stalledMs: now - this.lastTickAt }, 'the orchestrator itself was stalled: every server gets a full heartbeat timeout again');
      this.decisions?.record({ type: 'stall', segmentId: '', server: '', reason: `the orchestrator did not run for ${Math.round((now - this.lastTickAt) / 1000)} s: no server is marked down for the silence of that time` });
      this.startedAt = now;
    }
    this.lastTickAt = now;
    for (const s of [...this.view.servers.values()]) {
      if (s.state !== 'up') continue;
      // After an orchestrator restart (or stall) every server gets a full timeout to check in.
      const last = Math.max(this.liveness.get(s.id)?.at ?? 0, this.startedAt);
      if (now - last > this.timeoutMs) await this.markDown(s.id, now - last);
      else this.held.delete(s.id);
    }
    if (this.repairEnabled) await this.proposeRepairs();
  }

  /**
   * Whether marking `serverId` down keeps at least minUpRatio of the registered servers up; when
   * not, the refusal is logged and recorded once until it changes.
   */
  private mayMarkDown(serverId: string, why: string): boolean {
    const all = [...this.view.servers.values()];
    const up = all.filter((x) => x.state === 'up').length;
    if (all.length === 0 || (up - 1) / all.length >= this.policy.minUpRatio) {
      this.held.delete(serverId);
      return true;
    }
    if (!this.held.has(serverId)) {
      this.held.add(serverId);
      const reason = `not marked down (${why}): only ${up - 1} of ${all.length} servers would stay up, under the minimum up ratio ${this.policy.minUpRatio}; ` +
        'so many silent servers at once is more likely a network or orchestrator fault than so many failures';
      this.log.error({ server: serverId, up, total: all.length, minUpRatio: this.policy.minUpRatio }, 'mark-down held back by the minimum up ratio');
      this.decisions?.record({ type: 'mark-down-held', segmentId: '', server: serverId, reason });
    }
    return false;
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
      const done = await this.markDown(serverId, silentMs, `connection refused on ${s.dataAddr} (unreachable for ${reportedBy}; last heartbeat ${Math.round(silentMs)} ms ago)`);
      return done ? 'marked-down' : 'held';
    })();
    this.probes.set(serverId, { at: Date.now(), result });
    return result;
  }

  /**
   * Marks a server down and removes it from every entry in one transaction per batch; false when
   * the minimum up ratio holds it back (it stays up and named; the next tick asks again).
   */
  async markDown(serverId: string, silentMs: number, why = `no heartbeat for ${Math.round(silentMs)} ms`): Promise<boolean> {
    if (!this.mayMarkDown(serverId, why)) return false;
    this.log.warn({ server: serverId, silentMs, why }, 'marking server down');
    await this.writer.setServerState(serverId, 'down');
    let moved: { segments: string[]; revision: number };
    try {
      moved = await this.writer.updateEntries((e) => dropServer(e, serverId));
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      this.log.error({ server: serverId }, 'could not fail over: too much contention; will retry');
      await this.writer.setServerState(serverId, 'up'); // so the next tick tries again
      return false;
    }
    if (moved.segments.length === 0) return true;
    const out = Date.now() + this.policy.downOutDelayMs;
    for (const id of moved.segments) this.outAt.set(id, out);
    this.log.warn({ server: serverId, segments: moved.segments.length, revision: moved.revision }, 'failed over: entries updated');
    const later = this.policy.downOutDelayMs > 0 ? `; re-replicated after ${Math.round(this.policy.downOutDelayMs / 1000)} s down unless it returns or noout is set` : '';
    this.decisions?.record({ type: 'failover', segmentId: '', server: serverId, reason: `${why}: ${moved.segments.length} segment(s) failed over${later}` });
    return true;
  }

  /**
   * A server reported its copies of `segments` damaged (found so at start-up): each such copy
   * leaves the replica set (epoch + 1, degraded) so that reads and writes go to the healthy
   * replicas and repair re-replicates, exactly as for a lost server, but for those segments only.
   * A copy that is the last one stays named: the data is then unavailable, never silently lost.
   */
  async dropDamagedCopies(serverId: string, segments: string[]): Promise<void> {
    return this.dropCopies(serverId, segments, 'damaged');
  }

  /**
   * A server reported that writes to its copies of `segments` found its disk full: like a damaged
   * copy, each leaves the write set where a replica on a server with room remains (so writes go on
   * there and repair re-replicates onto a server with space). Where every replica is full or the
   * copy is the last one, it stays: writes fail with ENOSPC, the data is intact and readable.
   */
  async dropFullCopies(serverId: string, segments: string[]): Promise<void> {
    return this.dropCopies(serverId, segments, 'no-space');
  }

  private async dropCopies(serverId: string, segments: string[], why: 'damaged' | 'no-space'): Promise<void> {
    for (const segId of segments) {
      if (this.dropping.has(`${serverId} ${segId}`)) continue;
      this.dropping.add(`${serverId} ${segId}`);
      try {
        // A copy being made onto the full server cannot finish, and every write forwarded to it
        // fails: the operator stops (the target leaves the entry) and repair picks a server with room.
        const op = why === 'no-space' ? this.controller.get(segId) : undefined;
        if (op && op.target === serverId) await this.controller.cancel(segId, `${serverId} has no space for the copy of ${segId}: it stops; another server with room takes it`);
        // A replacement must be up, and, for a full copy, have room itself.
        const usable = (x: string) => this.view.servers.get(x)?.state === 'up' && (why === 'damaged' || !this.liveness.get(x)?.full);
        const r = await this.writer.updateEntry(segId, (e) => dropCopy(e, serverId, usable)).catch((err: unknown) => (err instanceof NotFoundError ? undefined : Promise.reject(err)));
        if (r?.changed) {
          if (why === 'damaged') {
            this.log.warn({ server: serverId, segment: segId }, 'replaced a damaged copy: dropped from the replica set');
            this.decisions?.record({ type: 'failover', segmentId: segId, server: serverId, reason: `the copy on ${serverId} is damaged: dropped, to be re-replicated from a healthy replica` });
          } else {
            this.noSpaceHeld.delete(segId);
            this.log.warn({ server: serverId, segment: segId }, 'a copy on a full disk: dropped from the write set');
            this.decisions?.record({ type: 'no-space', segmentId: segId, server: serverId, reason: `${serverId} has no space for writes to ${segId}: its copy leaves the write set, to be re-replicated onto a server with room` });
          }
        } else if (r && r.entry.replicas.includes(serverId)) {
          if (why === 'damaged') this.log.error({ server: serverId, segment: segId }, 'the only live copy of a segment is damaged: left in place (unavailable until repaired by hand)');
          else if (!this.noSpaceHeld.has(segId)) {
            this.noSpaceHeld.add(segId);
            this.log.error({ server: serverId, segment: segId }, 'no replica of a segment has room: writes to it fail with ENOSPC until space is freed');
            this.decisions?.record({ type: 'no-space', segmentId: segId, server: serverId, reason: `${serverId} has no space for writes to ${segId} and no replica on a server with room remains: writes fail with ENOSPC (the data is intact and readable)` });
          }
        }
      } finally {
        this.dropping.delete(`${serverId} ${segId}`);
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

  /** Segments that lost a replica to a mark-down and wait out the down → out delay (or noout). */
  waitingOut(now = Date.now()): number {
    let n = 0;
    for (const [seg, at] of this.outAt) if (this.view.flags.noout || at > now) n += this.view.smt.has(seg) ? 1 : 0;
    return n;
  }

  private async proposeRepairs(): Promise<void> {
    let pool: ReturnType<MetadataWriter['placementCandidates']> | undefined;
    const now = Date.now();
    const noout = !!this.view.flags.noout;
    for (const [segId, e] of this.view.smt) {
      const vol = this.view.volumes.get(segId.slice(0, segId.lastIndexOf('/')));
      if (!vol) continue;
      const live = e.replicas.filter((r) => this.view.servers.get(r)?.state === 'up');
      if (live.length === 0) continue; // nothing to copy from
      const missing = vol.replicas - e.replicas.length;
      if (missing <= 0) {
        this.outAt.delete(segId);
        if (e.state === 'degraded' && !this.controller.get(segId) && live.length === e.replicas.length) {
          await this.writer.updateEntry(segId, (x) => markOk(x, vol.replicas));
        }
        continue;
      }
      if (this.controller.get(segId)) continue;
      // Down, not yet out: a server that was marked down gets the delay to come back before its
      // share is copied elsewhere (a reboot or a switch flap must not start a copy storm).
      const out = this.outAt.get(segId);
      if (out !== undefined && (noout || out > now)) continue;
      this.outAt.delete(segId);
      // One pool per tick, so the repairs of one failure spread over the survivors.
      pool ??= this.writer.placementCandidates(new Set(), this.controller.pendingTargets());
      let target: string | undefined;
      try {
        target = pickTarget(pool, e, vol.segmentSize, segId);
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
