// The controller and executor of operators: admits at most one operator per segment (settled
// by priority and by compare-and-swap on the operator key and on the SMT entry's epoch),
// enforces per-server and cluster-wide limits on concurrent copies, and drives each admitted
// operator through join → verified copy → commit, persisting every state change so a restarted
// orchestrator picks up where it left off.

import crypto from 'node:crypto';
import { failpoint } from '../common/failpoints.ts';
import type { Logger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { KvStore } from '../metadata/kv.ts';
import { DecisionLog, type Decision } from './decision-log.ts';
import { MetadataWriter, NotFoundError } from './metadata-writer.ts';
import {
  OPERATORS, operatorKey,
  type Operator, type OperatorProgress, type OperatorView,
} from './operators.ts';
import { ServerAdminClient } from './server-admin.ts';
import { commit, join, leave } from './smt-transitions.ts';
import type { CopyJobStatus } from '../api/server-admin-types.ts';

export interface ControllerLimits {
  /** Copies one server may take part in at once (as target or source). */
  maxCopiesPerServer: number;
  /** Copies in the whole cluster at once. */
  maxCopiesCluster: number;
  /** Failed copy attempts before an operator is rolled back. */
  maxAttempts: number;
  /** Bytes/s for all copies in the cluster together (0 = no cluster-wide cap); each copy gets an equal share of it. */
  clusterBandwidth: number;
}

export const DEFAULT_LIMITS: ControllerLimits = { maxCopiesPerServer: 2, maxCopiesCluster: 16, maxAttempts: 3, clusterBandwidth: 0 };

export type ProposeResult =
  | { accepted: true; operator: Operator }
  | { accepted: false; reason: string; existing?: Operator };

/** Operator decisions are entries of the orchestrator's decision log. */
export type OperatorEvent = Decision;

export class OperatorController {
  private readonly ops = new Map<string, { op: Operator; modRevision: number }>();
  private readonly jobs = new Map<string, { jobId: string; adminAddr: string }>();
  private readonly progress = new Map<string, OperatorProgress>();
  private timer?: NodeJS.Timeout;
  private ticking = false;
  private stopped = false;
  readonly limits: ControllerLimits;

  constructor(
    private readonly kv: KvStore,
    private readonly view: ClusterView,
    private readonly writer: MetadataWriter,
    private readonly log: Logger,
    limits: Partial<ControllerLimits> = {},
    readonly decisions: DecisionLog = new DecisionLog(log),
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /**
   * Loads persisted operators (after a restart they resume) and starts the executor loop. The
   * interval is only the fallback: an operator takes its next step as soon as it can (a join is
   * followed by the copy request in the same pass, a copy's end is learned by long-poll and a
   * commit follows at once, a finished operator frees its slot for the next one at once).
   */
  async start(intervalMs = 200): Promise<void> {
    await this.load();
    this.intervalMs = intervalMs;
    this.timer = setTimeout(this.loop, 0);
  }

  private intervalMs = 200;
  private again = false;

  private readonly loop = async (): Promise<void> => {
    if (this.stopped) return;
    this.timer = undefined;
    do {
      this.again = false;
      await this.tick().catch((err) => this.log.error({ err }, 'operator tick failed'));
    } while (this.again && !this.stopped);
    if (!this.stopped && !this.timer) this.timer = setTimeout(this.loop, this.intervalMs);
  };

  /** Runs a pass now (or right after the one in progress) instead of at the next interval. */
  private kick(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(this.loop, 0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Long-polls a copy job until it leaves 'running' (or the operator no longer waits on it), then kicks. */
  private async watch(opId: string, jobId: string, admin: ServerAdminClient): Promise<void> {
    while (!this.stopped && this.jobs.get(opId)?.jobId === jobId) {
      const st = await admin.copyJob(jobId, 10_000).catch(() => undefined);
      if (!st || st.state !== 'running') break;
      this.progress.set(opId, progressOf(st));
    }
    this.kick();
  }

  private async load(): Promise<void> {
    const r = await this.kv.range(OPERATORS);
    this.ops.clear();
    for (const e of r.entries) {
      const op = JSON.parse(e.value) as Operator;
      this.ops.set(op.segmentId, { op, modRevision: e.modRevision });
    }
  }

  list(): OperatorView[] {
    return [...this.ops.values()]
      .map(({ op }) => ({ ...op, progress: this.progress.get(op.id) }))
      .sort((a, b) => b.priority - a.priority || a.createdAt.localeCompare(b.createdAt));
  }

  /** Bytes that pending operators will add to their targets once they join (not yet in the SMT). */
  pendingTargets(): Map<string, number> {
    const out = new Map<string, number>();
    for (const { op } of this.ops.values()) {
      if (op.state !== 'pending') continue;
      const vol = this.view.volumes.get(op.segmentId.slice(0, op.segmentId.lastIndexOf('/')));
      if (vol) out.set(op.target, (out.get(op.target) ?? 0) + vol.segmentSize);
    }
    return out;
  }

  get(segmentId: string): Operator | undefined {
    return this.ops.get(segmentId)?.op;
  }

  private record(type: Decision['type'], segmentId: string, reason: string, operator?: Operator): void {
    this.decisions.record({ type, segmentId, reason, operator, priority: operator?.priority, server: operator?.remove });
  }

  /**
   * Proposes moving a copy of a segment. Refused with a reason when the segment already has an
   * operator of equal or higher priority, or one past its pending stage; a pending one of lower
   * priority is replaced (compare-and-swap on its key, so two proposers cannot both win).
   */
  async propose(p: Pick<Operator, 'segmentId' | 'kind' | 'target' | 'remove' | 'priority' | 'reason' | 'source'>): Promise<ProposeResult> {
    await this.view.refresh();
    const entry = this.view.entry(p.segmentId);
    const refuse = (reason: string, existing?: Operator): ProposeResult => {
      this.record('refused', p.segmentId, reason);
      return { accepted: false, reason, existing };
    };
    if (!entry) return refuse(`no segment ${p.segmentId}`);
    const target = this.view.servers.get(p.target);
    if (!target) return refuse(`no server ${p.target}`);
    if (target.state !== 'up') return refuse(`target ${p.target} is ${target.state}`);
    if (entry.replicas.includes(p.target)) return refuse(`${p.target} already holds ${p.segmentId}`);
    if (p.remove && !entry.replicas.includes(p.remove)) return refuse(`${p.remove} does not hold ${p.segmentId}`);
    const cur = await this.kv.get(operatorKey(p.segmentId));
    let compareRev = 0;
    if (cur) {
      const existing = JSON.parse(cur.value) as Operator;
      if (existing.state !== 'pending' || existing.priority >= p.priority) {
        return refuse(`${p.segmentId} already has a ${existing.kind} operator to ${existing.target} (${existing.state}, priority ${existing.priority})`, existing);
      }
      compareRev = cur.modRevision;
    }
    const now = new Date().toISOString();
    const op: Operator = { ...p, id: crypto.randomUUID(), state: 'pending', attempts: 0, createdAt: now, updatedAt: now };
    const r = await this.kv.txn({ compare: [{ key: operatorKey(p.segmentId), modRevision: compareRev }], put: [{ key: operatorKey(p.segmentId), value: JSON.stringify(op) }] });
    if (!r.succeeded) {
      const other = await this.kv.get(operatorKey(p.segmentId));
      return refuse(`${p.segmentId}: another operator was admitted first`, other ? (JSON.parse(other.value) as Operator) : undefined);
    }
    this.ops.set(p.segmentId, { op, modRevision: r.revision });
    this.record(compareRev ? 'replaced' : 'proposed', p.segmentId, p.reason, op);
    return { accepted: true, operator: op };
  }

  /** Cancels the operator of a segment (or by id): the copy stops and the entry is rolled back. */
  async cancel(idOrSegment: string, why = 'cancelled by user'): Promise<boolean> {
    const found = this.ops.get(idOrSegment) ?? [...this.ops.values()].find((x) => x.op.id === idOrSegment);
    if (!found) return false;
    await this.rollback(found.op, why, 'cancelled');
    return true;
  }

  private async save(op: Operator, change: Partial<Operator>): Promise<boolean> {
    const held = this.ops.get(op.segmentId);
    if (!held || held.op.id !== op.id) return false;
    const next = { ...op, ...change, updatedAt: new Date().toISOString() };
    const r = await this.kv.txn({ compare: [{ key: operatorKey(op.segmentId), modRevision: held.modRevision }], put: [{ key: operatorKey(op.segmentId), value: JSON.stringify(next) }] });
    if (!r.succeeded) {
      await this.load();
      return false;
    }
    this.ops.set(op.segmentId, { op: next, modRevision: r.revision });
    return true;
  }

  private async finish(op: Operator): Promise<void> {
    const held = this.ops.get(op.segmentId);
    if (!held || held.op.id !== op.id) return;
    await this.kv.txn({ compare: [{ key: operatorKey(op.segmentId), modRevision: held.modRevision }], delete: [operatorKey(op.segmentId)] });
    this.ops.delete(op.segmentId);
    this.jobs.delete(op.id);
    this.progress.delete(op.id);
    this.kick(); // its copy slot is free: the next pending operator may start now
  }

  /** Undoes a join (the target leaves `joining`) and drops the operator. The data never moved in the SMT. */
  private async rollback(op: Operator, reason: string, type: 'rolled-back' | 'cancelled'): Promise<void> {
    const job = this.jobs.get(op.id);
    if (job) await new ServerAdminClient(job.adminAddr).cancelCopy(job.jobId).catch(() => {});
    try {
      await this.writer.updateEntry(op.segmentId, (e) => leave(e, op.target));
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    await this.finish(op);
    this.record(type, op.segmentId, reason, op);
  }

  private copiesPerServer(): { per: Map<string, number>; total: number } {
    const per = new Map<string, number>();
    let total = 0;
    for (const { op } of this.ops.values()) {
      if (op.state === 'pending') continue;
      total++;
      const primary = this.view.entry(op.segmentId)?.replicas[0];
      for (const s of new Set([op.target, primary].filter((x): x is string => !!x))) per.set(s, (per.get(s) ?? 0) + 1);
    }
    return { per, total };
  }

  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      await this.view.refresh();
      const ordered = [...this.ops.values()].map((x) => x.op).sort((a, b) => b.priority - a.priority || a.createdAt.localeCompare(b.createdAt));
      for (const op of ordered) {
        // Steps that can follow at once do (join → request the copy; copy verified → commit).
        let cur: Operator | undefined = op;
        for (let n = 0; cur && n < 4 && !this.stopped; n++) {
          const advanced: boolean = await this.step(cur).catch((err) => {
            this.log.warn({ err: (err as Error).message, segment: op.segmentId }, 'operator step failed; will retry');
            return false;
          });
          if (!advanced) break;
          const held = this.ops.get(op.segmentId)?.op;
          cur = held?.id === op.id ? held : undefined;
        }
      }
    } finally {
      this.ticking = false;
    }
  }

  /** One step of an operator; true when it advanced and its next step may run at once. */
  private async step(op: Operator): Promise<boolean> {
    const entry = this.view.entry(op.segmentId);
    if (!entry) {
      await this.finish(op);
      this.record('rolled-back', op.segmentId, 'segment no longer exists', op);
      return false;
    }
    const target = this.view.servers.get(op.target);
    if (!target || target.state !== 'up') {
      await this.rollback(op, `target ${op.target} is ${target?.state ?? 'gone'}`, 'rolled-back');
      return false;
    }
    switch (op.state) {
      case 'pending': {
        if (entry.replicas.includes(op.target)) {
          await this.finish(op);
          return false;
        }
        const { per, total } = this.copiesPerServer();
        const primary = entry.replicas[0];
        if (total >= this.limits.maxCopiesCluster) return false;
        if ((per.get(op.target) ?? 0) >= this.limits.maxCopiesPerServer) return false;
        if (primary && (per.get(primary) ?? 0) >= this.limits.maxCopiesPerServer) return false;
        // Step 1: the target joins the entry (epoch+1): from now on writes reach it too.
        await this.writer.updateEntry(op.segmentId, (e) => join(e, op.target));
        await failpoint('operator.after-join');
        if (!(await this.save(op, { state: 'copying' }))) return false;
        this.record('started', op.segmentId, `copying to ${op.target}`, op);
        return true;
      }
      case 'copying': {
        if (!entry.joining?.includes(op.target)) {
          // The join was undone underneath us (e.g. failover touched the entry): start over.
          this.jobs.delete(op.id);
          await this.save(op, { state: 'pending', attempts: op.attempts + 1 });
          return false;
        }
        const job = this.jobs.get(op.id);
        const admin = new ServerAdminClient(target.adminAddr);
        if (!job) {
          // Idempotent: the target returns the copy already running for this segment, if any.
          // At most maxCopiesCluster copies run at once, so equal shares keep the sum under the cap.
          const share = this.limits.clusterBandwidth > 0 ? Math.max(1, Math.floor(this.limits.clusterBandwidth / this.limits.maxCopiesCluster)) : 0;
          const st = await admin.startCopy({ segmentId: op.segmentId, source: entry.replicas[0], bandwidthBytesPerSec: share });
          this.jobs.set(op.id, { jobId: st.id, adminAddr: target.adminAddr });
          void this.watch(op.id, st.id, admin);
          return false;
        }
        const st = await admin.copyJob(job.jobId).catch(() => undefined);
        if (!st) {
          this.jobs.delete(op.id);
          return false;
        }
        this.progress.set(op.id, progressOf(st));
        if (st.state === 'running') return false;
        if (st.state === 'done' && st.verified) return this.save(op, { state: 'committing' });
        this.jobs.delete(op.id);
        const attempts = op.attempts + 1;
        if (attempts >= this.limits.maxAttempts) {
          await this.rollback(op, `copy failed ${attempts} times: ${st.error ?? st.state}`, 'rolled-back');
        } else {
          await this.save(op, { attempts, error: st.error });
        }
        return false;
      }
      case 'committing': {
        // Step 4: compare-and-swap: the verified copy becomes a replica (replacing `remove`), epoch+1.
        await failpoint('operator.before-commit');
        let lost = false;
        const vol = this.view.volumes.get(op.segmentId.slice(0, op.segmentId.lastIndexOf('/')));
        await this.writer.updateEntry(op.segmentId, (e) => {
          const r = commit(e, op.target, op.remove, vol?.replicas ?? e.replicas.length);
          lost = r.lost;
          return r.next;
        });
        if (lost) {
          await this.save(op, { state: 'pending', attempts: op.attempts + 1 });
          return false;
        }
        await failpoint('operator.after-commit');
        await this.finish(op);
        this.record('committed', op.segmentId, op.remove ? `${op.target} replaced ${op.remove}` : `${op.target} added`, op);
        return false;
      }
    }
  }
}

/** What an operator shows of its copy job. */
function progressOf(st: CopyJobStatus): OperatorProgress {
  return { jobId: st.id, bytesCopied: st.bytesCopied, totalBytes: st.totalBytes, rateBytesPerSec: st.rateBytesPerSec, etaSeconds: st.etaSeconds };
}
