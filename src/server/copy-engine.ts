// The copy engine: brings this server's replica of a segment up to date from a healthy replica
// while clients keep writing. Used by re-replication (reactive repair) and live migration.
//
// This server is already in the SMT entry as a *joining* replica, so every write the primary
// accepts from now on is forwarded here too. The engine then:
//   1. compares per-block checksums of source and local copy and copies the differing blocks,
//      skipping blocks that replicated writes have touched since the copy began (the dirty
//      bitmap: those already hold the newest data), in one pass with several reads in flight;
//   2. pauses writes on the segment at the primary, compares every block again and re-copies
//      any mismatch, until source and copy are identical block for block (or gives up);
//   3. resumes writes. Only a copy that verified is reported done; the orchestrator commits
//      it to the SMT.
// Copying by checksum difference also makes a returning server's resync cheap: only the blocks
// that changed while it was away move.

import crypto from 'node:crypto';
import { failpoint } from '../common/failpoints.ts';
import type { Logger } from '../common/log.ts';
import { TokenBucket } from '../common/token-bucket.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import { parseSegmentId, segmentLength } from '../metadata/model.ts';
import { decodeChecksums } from '../protocol/codec.ts';
import type { ConnectionPool } from '../protocol/connection.ts';
import { Flag, Op, ProtocolError, STATUS_NAMES, Status, type Response } from '../protocol/messages.ts';
import type { SegmentStore } from '../segment-store/segment-store.ts';
import { BLOCK_SIZE } from '../segment-store/types.ts';
import type { RequestHandler } from './request-handler.ts';
import type { CopyJobSpec, CopyJobState, CopyJobStatus } from '../api/server-admin-types.ts';

export type { CopyJobSpec, CopyJobState, CopyJobStatus } from '../api/server-admin-types.ts';

const CHECKSUM_BATCH_BLOCKS = 8192; // 32 MiB of data per CHECKSUMS request
const COPY_RUN_BLOCKS = 256; // 1 MiB per READ
const COPY_DEPTH = 4; // READs in flight per copy
const PAUSE_MS = 10000;
const FINAL_ATTEMPTS = 4;

export interface CopyEngineContext {
  serverId: string;
  store: SegmentStore;
  view: ClusterView;
  peers: ConnectionPool;
  handler: RequestHandler;
  log: Logger;
  /** Server-wide cap on copy bandwidth (bytes/s, 0 = unlimited). */
  bandwidthBytesPerSec?: number;
  /** At most this many copies run at once on this server; more wait their turn. */
  maxConcurrent?: number;
}

class Cancelled extends Error {}

export class CopyEngine {
  private readonly jobs = new Map<string, CopyJobStatus & { cancel: boolean }>();
  /** Callers of whenFinished(), per job id: answered the moment the job leaves 'running'. */
  private readonly finishWaiters = new Map<string, (() => void)[]>();
  private readonly serverBucket: TokenBucket;
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly ctx: CopyEngineContext) {
    this.serverBucket = new TokenBucket(ctx.bandwidthBytesPerSec ?? 0);
  }

  setBandwidth(bytesPerSec: number): void {
    this.serverBucket.rate = bytesPerSec;
  }

  /** Starts a copy (or returns the one already running for that segment). */
  start(spec: CopyJobSpec): CopyJobStatus {
    parseSegmentId(spec.segmentId);
    for (const j of this.jobs.values()) if (j.segmentId === spec.segmentId && j.state === 'running') return this.public(j);
    const entry = this.ctx.view.entry(spec.segmentId);
    const source = spec.source ?? entry?.replicas[0];
    if (!source) throw new Error(`no source replica known for ${spec.segmentId}`);
    if (source === this.ctx.serverId) throw new Error('cannot copy a segment from this same server');
    const job = {
      id: crypto.randomUUID(),
      segmentId: spec.segmentId,
      source,
      state: 'running' as CopyJobState,
      totalBytes: 0,
      bytesCopied: 0,
      passes: 0,
      recopiedBlocks: 0,
      verified: false,
      rateBytesPerSec: 0,
      startedAt: new Date().toISOString(),
      cancel: false,
    };
    this.jobs.set(job.id, job);
    this.run(job, new TokenBucket(spec.bandwidthBytesPerSec ?? 0)).catch(() => {});
    this.prune();
    return this.public(job);
  }

  get(id: string): CopyJobStatus | undefined {
    const j = this.jobs.get(id);
    return j && this.public(j);
  }

  /**
   * The job's status once it is no longer running, or after `waitMs` (whichever comes first):
   * a long-poll, so the orchestrator learns of a finished copy at once instead of at its next
   * poll. undefined for an unknown job.
   */
  async whenFinished(id: string, waitMs: number): Promise<CopyJobStatus | undefined> {
    const j = this.jobs.get(id);
    if (!j) return undefined;
    if (j.state === 'running' && waitMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, waitMs);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        const list = this.finishWaiters.get(id) ?? [];
        list.push(done);
        this.finishWaiters.set(id, list);
      });
    }
    return this.get(id);
  }

  list(): CopyJobStatus[] {
    return [...this.jobs.values()].map((j) => this.public(j));
  }

  cancel(id: string): boolean {
    const j = this.jobs.get(id);
    if (!j || j.state !== 'running') return false;
    j.cancel = true;
    return true;
  }

  private public(j: CopyJobStatus & { cancel: boolean }): CopyJobStatus {
    const { cancel: _c, ...rest } = j;
    return { ...rest, phaseMs: rest.phaseMs && { ...rest.phaseMs } };
  }

  private prune(): void {
    const finished = [...this.jobs.values()].filter((j) => j.state !== 'running');
    for (const j of finished.slice(0, Math.max(0, finished.length - 200))) this.jobs.delete(j.id);
  }

  private async slot(): Promise<void> {
    const max = this.ctx.maxConcurrent ?? 2;
    if (this.running < max) {
      this.running++;
      return;
    }
    await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
  }

  private release(): void {
    this.running--;
    this.waiting.shift()?.();
  }

  private async run(job: CopyJobStatus & { cancel: boolean }, jobBucket: TokenBucket): Promise<void> {
    const { store, view, handler, log } = this.ctx;
    const t0 = Date.now();
    await this.slot();
    const phase = { queued: Date.now() - t0, diff: 0, copy: 0, verify: 0, flush: 0 };
    job.phaseMs = phase;
    let tp = Date.now();
    const lap = (k: keyof typeof phase) => {
      const now = Date.now();
      phase[k] += now - tp;
      tp = now;
    };
    let tracker: ReturnType<RequestHandler['beginTracking']> | undefined;
    try {
      const { volume, index } = parseSegmentId(job.segmentId);
      await view.refresh();
      const vol = view.volumes.get(volume);
      if (!vol) throw new Error(`no volume ${volume}`);
      const size = segmentLength(vol, index);
      const blocks = Math.ceil(size / BLOCK_SIZE);
      job.totalBytes = size;
      this.checkMembership(job);
      // A copy that starts from nothing needs no comparison to know what differs: everything
      // does, except blocks that are zero at the source (the new file is sparse zeros already).
      // A damaged local copy (found so at start-up) is worth nothing as a base: start from scratch.
      if (store.has(job.segmentId) && store.damageOf(job.segmentId) !== undefined) await store.delete(job.segmentId);
      const fresh = !store.has(job.segmentId);
      if (fresh) await store.ensure(job.segmentId, size);
      tracker = handler.beginTracking(job.segmentId, blocks);
      const t = tracker;
      const progress = () => {
        const secs = (Date.now() - t0) / 1000;
        job.rateBytesPerSec = secs > 0 ? job.bytesCopied / secs : 0;
      };
      // COPY_DEPTH reads in flight, each written as it lands: the source reads the next runs
      // while this server writes the last ones (one READ at a time left both idle half the time).
      const copy = async (list: number[], skipDirty: boolean, paused: boolean, skipZero = false) => {
        const todo = runs(list, COPY_RUN_BLOCKS);
        let next = 0;
        let stop = false;
        const worker = async () => {
          while (!stop && next < todo.length) {
            const run = todo[next++]!;
            if (job.cancel) throw new Cancelled('cancelled');
            const bytes = Math.min(run.count * BLOCK_SIZE, size - run.first * BLOCK_SIZE);
            await jobBucket.take(bytes);
            await this.serverBucket.take(bytes);
            const res = await this.call(job, Op.READ, run.first * BLOCK_SIZE, bytes, paused ? Flag.COPY : 0);
            const release = await handler.lock(job.segmentId, run.first, run.first + run.count, true);
            try {
              // Blocks that replicated writes touched meanwhile already hold newer data: keep them.
              const keep = (b: number) => (!skipDirty || !t.isDirty(b)) && !(skipZero && isZeroBlock(res.payload, b - run.first));
              for (const sub of runs(range(run.first, run.count).filter(keep), COPY_RUN_BLOCKS)) {
                const off = (sub.first - run.first) * BLOCK_SIZE;
                const len = Math.min(sub.count * BLOCK_SIZE, res.payload.length - off);
                await store.write(job.segmentId, sub.first * BLOCK_SIZE, res.payload.subarray(off, off + len));
              }
            } finally {
              release();
            }
            job.bytesCopied += bytes;
            progress();
            const remaining = Math.max(0, job.totalBytes - job.bytesCopied);
            job.etaSeconds = job.rateBytesPerSec > 0 ? remaining / job.rateBytesPerSec : undefined;
          }
        };
        // allSettled, not all: no worker may still be writing when the copy reports or retries.
        const settled = await Promise.allSettled(Array.from({ length: Math.min(COPY_DEPTH, todo.length) }, () => worker().catch((err) => {
          stop = true;
          throw err;
        })));
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      };

      // One live pass: copy what differs. Writes from the join on reach this server too (dirty
      // blocks are skipped), so a second live comparison finds nothing in the normal case and
      // costs a full read of both copies; the paused comparison below is the proof either way,
      // and re-copies what a write the primary took before it saw the join left behind.
      job.passes = 1;
      this.checkMembership(job);
      tp = Date.now();
      const diff = fresh ? range(0, blocks) : await this.diff(job, blocks, (b) => !t.isDirty(b));
      lap('diff');
      if (diff.length > 0) await copy(diff, true, false, fresh);
      lap('copy');
      await failpoint('copy.after-pass');

      // Final pass with writes paused at the primary: compare every block (our data against the
      // source's records), re-copy mismatches.
      const primary = this.primaryAddr(job);
      await this.expectOk(job, await this.ctx.peers.get(primary).send({ op: Op.PAUSE, flags: 0, epoch: this.epoch(job), segmentId: job.segmentId, offset: 0, length: PAUSE_MS, payload: EMPTY }));
      try {
        await failpoint('copy.paused');
        for (let attempt = 0; attempt < FINAL_ATTEMPTS; attempt++) {
          const diff = await this.diff(job, blocks, () => true, true);
          if (diff.length === 0) {
            job.verified = true;
            break;
          }
          job.recopiedBlocks += diff.length;
          await copy(diff, false, true);
        }
      } finally {
        await this.ctx.peers.get(primary).send({ op: Op.RESUME, flags: 0, epoch: this.epoch(job), segmentId: job.segmentId, offset: 0, length: 0, payload: EMPTY }).catch(() => {});
      }
      lap('verify');
      if (!job.verified) throw new Error('copy did not verify against the source after repeated re-copies');
      await store.flush(job.segmentId);
      lap('flush');
      job.state = 'done';
      log.info({ segment: job.segmentId, source: job.source, bytes: job.bytesCopied, passes: job.passes, recopied: job.recopiedBlocks, ms: Date.now() - t0 }, 'copy verified');
    } catch (err) {
      job.state = err instanceof Cancelled ? 'cancelled' : 'failed';
      job.error = (err as Error).message;
      log.warn({ segment: job.segmentId, source: job.source, err: job.error }, 'copy did not complete');
    } finally {
      if (tracker) handler.endTracking(tracker);
      job.finishedAt = new Date().toISOString();
      job.etaSeconds = 0;
      this.release();
      for (const wake of this.finishWaiters.get(job.id) ?? []) wake();
      this.finishWaiters.delete(job.id);
    }
  }

  /** The copy only makes sense while this server is joining (or already a replica of) the segment. */
  private checkMembership(job: CopyJobStatus): void {
    const e = this.ctx.view.entry(job.segmentId);
    if (!e) throw new Error(`segment ${job.segmentId} no longer exists`);
    const me = this.ctx.serverId;
    if (!e.joining?.includes(me) && !e.replicas.includes(me)) throw new Error(`${me} is not joining ${job.segmentId} (epoch ${e.epoch})`);
    if (!e.replicas.includes(job.source)) throw new Error(`source ${job.source} is no longer a replica of ${job.segmentId}`);
  }

  private epoch(job: CopyJobStatus): number {
    return this.ctx.view.entry(job.segmentId)?.epoch ?? 0;
  }

  private addrOf(serverId: string): string {
    const s = this.ctx.view.servers.get(serverId);
    if (!s) throw new Error(`unknown server ${serverId}`);
    return s.dataAddr;
  }

  private primaryAddr(job: CopyJobStatus): string {
    const e = this.ctx.view.entry(job.segmentId);
    if (!e) throw new Error(`segment ${job.segmentId} no longer exists`);
    return this.addrOf(e.replicas[0]);
  }

  private async expectOk(job: CopyJobStatus, res: Response): Promise<Response> {
    if (res.status !== Status.OK) throw new ProtocolError(res.status, `${job.source}: ${res.payload.toString('utf8')}`, res.epoch);
    return res;
  }

  /** A request to the source, following epoch changes (the entry moves as the copy progresses). */
  private async call(job: CopyJobStatus, op: Op, offset: number, length: number, flags: number): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const res = await this.ctx.peers.get(this.addrOf(job.source)).send({ op, flags, epoch: this.epoch(job), segmentId: job.segmentId, offset, length, payload: EMPTY });
      if ((res.status === Status.STALE || res.status === Status.UNAVAILABLE) && attempt < 5) {
        await this.ctx.view.refresh();
        this.checkMembership(job);
        await new Promise((r) => setTimeout(r, 20 * (attempt + 1)));
        continue;
      }
      if (res.status !== Status.OK) throw new ProtocolError(res.status, `${STATUS_NAMES[res.status]} from ${job.source}: ${res.payload.toString('utf8')}`, res.epoch);
      return res;
    }
  }

  /**
   * Blocks whose checksum differs between the source and the local copy (among those `consider`
   * accepts). A corrupt local block always differs; a corrupt source block cannot be copied.
   */
  private async diff(job: CopyJobStatus, blocks: number, consider: (b: number) => boolean, paused = false): Promise<number[]> {
    const out: number[] = [];
    const size = job.totalBytes;
    for (let first = 0; first < blocks; first += CHECKSUM_BATCH_BLOCKS) {
      const count = Math.min(CHECKSUM_BATCH_BLOCKS, blocks - first);
      const len = Math.min(count * BLOCK_SIZE, size - first * BLOCK_SIZE);
      // Both sides at once: the source's scan and ours overlap instead of taking turns. Paused,
      // the source answers with what its sidecar records (Flag.RECORDED: every block copied was
      // verified when this copy read it) while this side scans its data in full, so rot in the
      // new copy is still caught; writes stay paused for one local scan instead of two, one of
      // them across the network.
      const [res, local] = await Promise.all([
        this.call(job, Op.CHECKSUMS, first * BLOCK_SIZE, len, paused ? Flag.COPY | Flag.RECORDED : 0),
        this.ctx.store.checksums(job.segmentId, first, count),
      ]);
      const src = decodeChecksums(res.payload);
      if (src.corrupt.length) throw new Error(`source ${job.source} has corrupt block(s) ${src.corrupt.slice(0, 5).join(', ')}: scrub must repair it first`);
      const bad = new Set(local.corrupt);
      for (let i = 0; i < count; i++) {
        const b = first + i;
        if ((src.sums[i] !== local.sums[i] || bad.has(b)) && consider(b)) out.push(b);
      }
    }
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);

/** Whether block i of a READ payload is all zeros (a short last block counts by its bytes). */
function isZeroBlock(payload: Buffer, i: number): boolean {
  const b = payload.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
  return b.length === BLOCK_SIZE ? b.equals(ZERO_BLOCK) : b.equals(ZERO_BLOCK.subarray(0, b.length));
}

function range(first: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i);
}

/** Groups sorted block numbers into runs of consecutive blocks of at most `max`. */
export function runs(blocks: number[], max: number): { first: number; count: number }[] {
  const out: { first: number; count: number }[] = [];
  for (const b of blocks) {
    const last = out[out.length - 1];
    if (last && last.first + last.count === b && last.count < max) last.count++;
    else out.push({ first: b, count: 1 });
  }
  return out;
}
