// How a storage server answers one data-protocol request: check the sender's epoch against
// this server's SMT copy, check ownership, apply it to the local segment store, and (as the
// primary) forward writes to the other replicas before acknowledging.
//
// Membership (docs/reliability.md): with a valid lease (a heartbeat acknowledged within the
// lease) the SMT copy is current enough to serve on its own. Once the lease lapses the server
// cannot tell an orchestrator that is paused from one that has marked it down and moved its
// segments on, so for the grace that follows it serves a client request only when the segment's
// other replicas confirm the request's epoch is still theirs: a write is forwarded to all of them
// at that epoch (as always), a read first asks each of them (STAT, forwarded). Any newer epoch
// that could have moved the segment names at least one of them, which then answers STALE and the
// request is refused. A single-copy segment has nobody to ask and waits for the orchestrator.

import type { Logger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import { parseSegmentId, segmentLength, type SmtEntry } from '../metadata/model.ts';
import { encodeChecksums } from '../protocol/codec.ts';
import { isUnreachable, type ConnectionPool } from '../protocol/connection.ts';
import { Flag, MAX_IO_BYTES, Op, OP_NAMES, Status, type Request, type Response } from '../protocol/messages.ts';
import { RangeLock, type Release } from '../segment-store/range-lock.ts';
import type { SegmentStore } from '../segment-store/segment-store.ts';
import { BLOCK_SIZE, CorruptBlockError, NoSpaceError, OutOfRangeError } from '../segment-store/types.ts';

export interface HandlerContext {
  serverId: string;
  store: SegmentStore;
  view: ClusterView;
  peers: ConnectionPool;
  log: Logger;
  isReady(): boolean;
  /**
   * 'valid' while a heartbeat was acknowledged within the lease; 'grace' for a while after it
   * lapsed (serve only what the other replicas confirm); 'expired' after that: serve nothing.
   */
  lease(): LeaseState;
  /** A read found a corrupt block here (scrub repairs it from a replica). */
  onCorrupt?(segmentId: string): void;
  /** Called with each completed request, for telemetry (flags tell forwarded and copy traffic apart). */
  onComplete?(op: Op, status: Status, bytes: number, ms: number, segmentId: string, flags?: number): void;
  /**
   * Called when a write or trim the primary forwarded has been acknowledged by every replica:
   * lagMs = how long after the local apply the last replica answered (0 when the local disk was
   * the slower), forwardMs = the whole round trip to the replicas. For telemetry.
   */
  onReplicated?(segmentId: string, lagMs: number, forwardMs: number): void;
  /** A forward to a peer replica failed to connect (not a timeout): the orchestrator may fail it over early. */
  onPeerUnreachable?(serverId: string): void;
  /** The local disk had no room for a write to this segment (the server reports it, and the orchestrator takes the copy out of the write set). */
  onNoSpace?(segmentId: string): void;
}

export type LeaseState = 'valid' | 'grace' | 'expired';

type Checked = { entry: SmtEntry; size: number } | { error: Response };

/** Blocks of one segment written by replicated writes since tracking began (the copy engine's dirty bitmap). */
export class DirtyTracker {
  private readonly bits: Uint8Array;
  count = 0;

  constructor(readonly segmentId: string, blocks: number) {
    this.bits = new Uint8Array(blocks);
  }

  mark(first: number, end: number): void {
    for (let b = first; b < end && b < this.bits.length; b++) {
      if (!this.bits[b]) {
        this.bits[b] = 1;
        this.count++;
      }
    }
  }

  isDirty(block: number): boolean {
    return this.bits[block] === 1;
  }
}

const MAX_PAUSE_MS = 30000;

export class RequestHandler {
  /** Per-segment ordering of writes on the primary: overlapping writes replicate in arrival order. */
  private readonly locks = new Map<string, RangeLock>();
  private readonly trackers = new Map<string, Set<DirtyTracker>>();
  private readonly pauses = new Map<string, { release: Release; timer: NodeJS.Timeout }>();

  constructor(private readonly ctx: HandlerContext) {}

  handle(req: Request): Promise<Response> {
    const t0 = performance.now();
    let pending: Response | Promise<Response>;
    try {
      pending = this.dispatch(req);
    } catch (err) {
      pending = this.errorResponse(req, err);
    }
    if (!(pending instanceof Promise)) return Promise.resolve(this.completed(req, pending, t0));
    return pending.then(
      (res) => this.completed(req, res, t0),
      (err: unknown) => this.completed(req, this.errorResponse(req, err), t0),
    );
  }

  private completed(req: Request, res: Response, t0: number): Response {
    this.ctx.onComplete?.(req.op, res.status, req.op === Op.READ ? res.payload.length : req.payload.length, performance.now() - t0, req.segmentId, req.flags);
    return res;
  }

  private reply(req: Request, status: Status, epoch: number, payload: Buffer = EMPTY): Response {
    return { op: req.op, status, requestId: req.requestId, epoch, payload };
  }

  private fail(req: Request, status: Status, epoch: number, message: string): Response {
    return this.reply(req, status, epoch, Buffer.from(message, 'utf8'));
  }

  private errorResponse(req: Request, err: unknown): Response {
    if (err instanceof CorruptBlockError) {
      this.ctx.onCorrupt?.(req.segmentId);
      return this.fail(req, Status.CORRUPT, 0, err.message);
    }
    if (err instanceof OutOfRangeError) return this.fail(req, Status.OUT_OF_RANGE, 0, err.message);
    if (err instanceof NoSpaceError) {
      this.ctx.onNoSpace?.(req.segmentId);
      return this.fail(req, Status.NO_SPACE, 0, `${this.ctx.serverId}: ${err.message}`);
    }
    this.ctx.log.error({ err, op: OP_NAMES[req.op], segment: req.segmentId }, 'request failed');
    return this.fail(req, Status.IO_ERROR, 0, (err as Error).message ?? String(err));
  }

  /** Epoch and ownership checks against this server's SMT copy (catching up first if it is behind). */
  private async check(req: Request): Promise<Checked> {
    const now = this.checkNow(req);
    if (now) return now;
    // The sender knows a newer epoch than we do (or a segment we have not heard of): our copy
    // is behind. Catch up once.
    await this.ctx.view.refresh();
    return this.checkNow(req, true)!;
  }

  /** The checks against the SMT copy as it is; undefined when it is behind and should catch up first. */
  private checkNow(req: Request, refreshed = false): Checked | undefined {
    let seg: { volume: string; index: number };
    try {
      seg = parseSegmentId(req.segmentId);
    } catch (err) {
      return { error: this.fail(req, Status.BAD_REQUEST, 0, (err as Error).message) };
    }
    const view = this.ctx.view;
    const entry = view.entry(req.segmentId);
    if (!refreshed && (!entry || req.epoch > entry.epoch)) return undefined;
    if (!entry) return { error: this.fail(req, Status.NOT_OWNER, 0, `no segment ${req.segmentId}`) };
    if (req.epoch > entry.epoch) {
      return { error: this.fail(req, Status.UNAVAILABLE, entry.epoch, 'server metadata is catching up; retry') };
    }
    if (req.epoch < entry.epoch) return { error: this.fail(req, Status.STALE, entry.epoch, `epoch ${req.epoch} is stale`) };
    const me = this.ctx.serverId;
    const isReplica = entry.replicas.includes(me);
    const isJoining = entry.joining?.includes(me) ?? false;
    const forwarded = (req.flags & (Flag.FORWARDED | Flag.COPY)) !== 0;
    if (forwarded ? !isReplica && !isJoining : !isReplica) {
      return { error: this.fail(req, Status.NOT_OWNER, entry.epoch, `${me} does not hold ${req.segmentId}`) };
    }
    const mutating = req.op === Op.WRITE || req.op === Op.TRIM || req.op === Op.FLUSH;
    if (mutating && !forwarded && entry.replicas[0] !== me) {
      return { error: this.fail(req, Status.NOT_OWNER, entry.epoch, `${me} is not the primary of ${req.segmentId}`) };
    }
    const vol = view.volumes.get(seg.volume);
    if (!vol) return { error: this.fail(req, Status.NOT_OWNER, entry.epoch, `no volume ${seg.volume}`) };
    const damage = this.ctx.store.damageOf(req.segmentId);
    if (damage !== undefined && isReplica) {
      // Never served, never a source: reads go to another replica at once (CORRUPT), writes wait
      // (UNAVAILABLE) for the orchestrator to replace this copy, which the heartbeat reported.
      const readable = req.op === Op.READ || req.op === Op.CHECKSUMS || req.op === Op.STAT;
      return { error: this.fail(req, readable ? Status.CORRUPT : Status.UNAVAILABLE, entry.epoch, `the copy of ${req.segmentId} on ${me} is damaged (${damage}); it is being replaced`) };
    }
    return { entry, size: segmentLength(vol, seg.index) };
  }

  private resume(segmentId: string): void {
    const p = this.pauses.get(segmentId);
    if (!p) return;
    this.pauses.delete(segmentId);
    clearTimeout(p.timer);
    p.release();
  }

  private markDirty(segmentId: string, first: number, end: number): void {
    const set = this.trackers.get(segmentId);
    if (set) for (const t of set) t.mark(first, end);
  }

  /** Starts recording which blocks replicated writes touch (for the copy engine). */
  beginTracking(segmentId: string, blocks: number): DirtyTracker {
    const t = new DirtyTracker(segmentId, blocks);
    let set = this.trackers.get(segmentId);
    if (!set) this.trackers.set(segmentId, (set = new Set()));
    set.add(t);
    return t;
  }

  endTracking(t: DirtyTracker): void {
    const set = this.trackers.get(t.segmentId);
    set?.delete(t);
    if (set?.size === 0) this.trackers.delete(t.segmentId);
  }

  /** The write-ordering lock of a segment's block range (the copy engine and scrub apply repairs under it). */
  lock(segmentId: string, firstBlock: number, endBlock: number, exclusive: boolean): Promise<Release> {
    return this.lockOf(segmentId).acquire(firstBlock, endBlock, exclusive);
  }

  private lockOf(segmentId: string): RangeLock {
    let l = this.locks.get(segmentId);
    if (!l) {
      l = new RangeLock();
      this.locks.set(segmentId, l);
    }
    return l;
  }

  /**
   * The common READ (SMT copy current, range not being written, within bounds) is answered
   * without an await of its own: the store's read promise is the only one. Everything else goes
   * through the general path below.
   */
  private dispatch(req: Request): Response | Promise<Response> {
    if (!this.ctx.isReady()) return this.fail(req, Status.UNAVAILABLE, 0, 'server is starting');
    const lease = this.ctx.lease();
    if (lease !== 'valid') {
      if (lease === 'expired') return this.fail(req, Status.UNAVAILABLE, 0, 'server lease expired: cannot confirm membership with the orchestrator');
      return this.dispatchInGrace(req);
    }
    if (req.op !== Op.READ || req.length === 0 || req.length > MAX_IO_BYTES || (req.flags & Flag.COPY) !== 0) return this.dispatchChecked(req);
    const checked = this.checkNow(req);
    if (!checked) return this.dispatchChecked(req);
    if ('error' in checked) return checked.error;
    const { store } = this.ctx;
    const id = req.segmentId;
    if (req.offset + req.length > checked.size || !store.has(id)) return this.dispatchChecked(req, checked);
    const release = this.lockOf(id).tryAcquire(blockOf(req.offset), blockEnd(req.offset + req.length), false);
    if (!release) return this.dispatchChecked(req, checked);
    const epoch = checked.entry.epoch;
    let data: Promise<Buffer>;
    try {
      data = store.read(id, req.offset, req.length);
    } catch (err) {
      release();
      throw err;
    }
    return data.then(
      (payload) => {
        release();
        return this.reply(req, Status.OK, epoch, payload);
      },
      (err: unknown) => {
        release();
        throw err;
      },
    );
  }

  /**
   * The lease lapsed (the orchestrator is silent): serve a request only at an epoch the other
   * replicas confirm (see the file comment). Requests from peers — a primary's forwarded writes,
   * a replica's confirmations, the copy engine — are answered as usual: the epoch check against
   * this server's own copy is the confirmation they ask for.
   */
  private async dispatchInGrace(req: Request): Promise<Response> {
    const checked = await this.check(req);
    if ('error' in checked) return checked.error;
    const fromPeer = (req.flags & (Flag.FORWARDED | Flag.COPY)) !== 0 || req.op === Op.PAUSE || req.op === Op.RESUME;
    if (fromPeer) return this.dispatchChecked(req, checked);
    const others = checked.entry.replicas.filter((s) => s !== this.ctx.serverId);
    if (others.length === 0) {
      return this.fail(req, Status.UNAVAILABLE, checked.entry.epoch, `server lease expired and ${req.segmentId} has no other replica to confirm its epoch: waiting for the orchestrator`);
    }
    // Writes, trims and flushes are forwarded to every replica at this epoch anyway.
    if (req.op === Op.WRITE || req.op === Op.TRIM || req.op === Op.FLUSH) return this.dispatchChecked(req, checked);
    const problem = await applyEverywhere(Promise.resolve(), this.forward({ ...req, op: Op.STAT, offset: 0, length: 0, payload: EMPTY }, { ...checked.entry, joining: undefined }));
    if (problem) return this.fail(req, Status.UNAVAILABLE, checked.entry.epoch, `server lease expired and a replica did not confirm epoch ${checked.entry.epoch}: ${problem.message}`);
    return this.dispatchChecked(req, checked);
  }

  /** The general path; `known` is a check already passed against the current SMT copy. */
  private async dispatchChecked(req: Request, known?: Checked): Promise<Response> {
    const checked = known ?? await this.check(req);
    if ('error' in checked) return checked.error;
    const { entry, size } = checked;
    const { store } = this.ctx;
    const id = req.segmentId;
    const epoch = entry.epoch;
    const inRange = (len: number) => req.offset + len <= size;

    switch (req.op) {
      case Op.READ: {
        if (req.length > MAX_IO_BYTES) return this.fail(req, Status.BAD_REQUEST, epoch, `READ of ${req.length} bytes exceeds ${MAX_IO_BYTES}`);
        if (!inRange(req.length)) return this.fail(req, Status.OUT_OF_RANGE, epoch, `read past the end of ${id} (${size} bytes)`);
        if (req.length === 0) return this.reply(req, Status.OK, epoch);
        // Wait for overlapping writes still replicating, so a read never returns unacknowledged data.
        // The copy engine's reads skip this: they run while the segment is paused (PAUSE holds the lock).
        const release = (req.flags & Flag.COPY) !== 0
          ? () => {}
          : await this.lockOf(id).acquire(blockOf(req.offset), blockEnd(req.offset + req.length), false);
        try {
          const data = store.has(id) ? await store.read(id, req.offset, req.length) : Buffer.alloc(req.length);
          return this.reply(req, Status.OK, epoch, data);
        } finally {
          release();
        }
      }
      case Op.WRITE:
      case Op.TRIM: {
        const len = req.op === Op.WRITE ? req.payload.length : req.length;
        if (!inRange(len)) return this.fail(req, Status.OUT_OF_RANGE, epoch, `${OP_NAMES[req.op]} past the end of ${id} (${size} bytes)`);
        if (len === 0) return this.reply(req, Status.OK, epoch);
        const release = await this.lockOf(id).acquire(blockOf(req.offset), blockEnd(req.offset + len), true);
        try {
          if (!store.has(id)) await store.ensure(id, size);
          const local = req.op === Op.WRITE
            ? store.write(id, req.offset, req.payload, { fua: (req.flags & Flag.FUA) !== 0 })
            : store.trim(id, req.offset, req.length);
          const forwarded = (req.flags & (Flag.FORWARDED | Flag.COPY)) !== 0;
          const remote = forwarded ? [] : this.forward(req, entry);
          if (remote.length > 0 && this.ctx.onReplicated) observeReplication(req.segmentId, local, remote, this.ctx.onReplicated);
          const problem = await applyEverywhere(local, remote);
          if ((req.flags & Flag.COPY) === 0) this.markDirty(id, blockOf(req.offset), blockEnd(req.offset + len));
          // A full replica is final for this write (the client decides whether to wait for a new
          // write set); any other replica failure is worth a retry.
          if (problem) return this.fail(req, problem.status === Status.NO_SPACE ? Status.NO_SPACE : Status.UNAVAILABLE, epoch, `replica did not acknowledge: ${problem.message}`);
          return this.reply(req, Status.OK, epoch);
        } finally {
          release();
        }
      }
      case Op.FLUSH: {
        const forwarded = (req.flags & (Flag.FORWARDED | Flag.COPY)) !== 0;
        const local = store.has(id) ? store.flush(id) : Promise.resolve();
        const problem = await applyEverywhere(local, forwarded ? [] : this.forward(req, entry));
        if (problem) return this.fail(req, problem.status === Status.NO_SPACE ? Status.NO_SPACE : Status.UNAVAILABLE, epoch, `replica did not flush: ${problem.message}`);
        return this.reply(req, Status.OK, epoch);
      }
      case Op.CHECKSUMS: {
        if (req.offset % BLOCK_SIZE !== 0 || req.length % BLOCK_SIZE !== 0 && req.offset + req.length !== size) {
          return this.fail(req, Status.BAD_REQUEST, epoch, 'CHECKSUMS range must be block-aligned');
        }
        if (!inRange(req.length)) return this.fail(req, Status.OUT_OF_RANGE, epoch, `range past the end of ${id}`);
        const first = req.offset / BLOCK_SIZE;
        const count = Math.ceil(req.length / BLOCK_SIZE);
        if (!store.has(id)) return this.reply(req, Status.OK, epoch, encodeChecksums(new Uint32Array(count), []));
        const sums = await store.checksums(id, first, count, { recorded: (req.flags & Flag.RECORDED) !== 0 });
        return this.reply(req, Status.OK, epoch, encodeChecksums(sums.sums, sums.corrupt));
      }
      case Op.PAUSE: {
        if (entry.replicas[0] !== this.ctx.serverId) return this.fail(req, Status.NOT_OWNER, epoch, 'PAUSE goes to the primary');
        this.resume(id);
        const release = await this.lockOf(id).acquire(0, Math.ceil(size / BLOCK_SIZE), true);
        const ms = Math.min(Math.max(req.length, 1), MAX_PAUSE_MS);
        // A copier that dies must not stall the segment forever: the pause ends by itself.
        const timer = setTimeout(() => this.resume(id), ms);
        this.pauses.set(id, { release, timer });
        return this.reply(req, Status.OK, epoch);
      }
      case Op.RESUME: {
        this.resume(id);
        return this.reply(req, Status.OK, epoch);
      }
      case Op.STAT: {
        const info = store.has(id) ? await store.info(id) : undefined;
        const body = {
          segmentId: id,
          epoch,
          size,
          present: !!info,
          allocatedBytes: info?.allocatedBytes ?? 0,
          role: entry.replicas[0] === this.ctx.serverId ? 'primary' : entry.replicas.includes(this.ctx.serverId) ? 'replica' : 'joining',
        };
        return this.reply(req, Status.OK, epoch, Buffer.from(JSON.stringify(body)));
      }
      default:
        return this.fail(req, Status.BAD_REQUEST, epoch, `unsupported op ${req.op}`);
    }
  }

  /** Sends the request on to every other replica (and joining replica) of the entry. */
  private forward(req: Request, entry: SmtEntry): Promise<Response>[] {
    const targets = [...entry.replicas, ...(entry.joining ?? [])].filter((s) => s !== this.ctx.serverId);
    return targets.map((sid) => {
      const server = this.ctx.view.servers.get(sid);
      if (!server) return Promise.reject(new Error(`unknown server ${sid}`));
      return this.ctx.peers.get(server.dataAddr).send({
        op: req.op,
        flags: req.flags | Flag.FORWARDED,
        epoch: req.epoch,
        segmentId: req.segmentId,
        offset: req.offset,
        length: req.length,
        payload: req.payload,
      }).catch((err: unknown) => {
        if (isUnreachable(err)) this.ctx.onPeerUnreachable?.(sid);
        throw err;
      });
    });
  }
}

const EMPTY = Buffer.alloc(0);
const blockOf = (offset: number) => Math.floor(offset / BLOCK_SIZE);
const blockEnd = (end: number) => Math.ceil(end / BLOCK_SIZE);

/** Times how long the replicas trail the local apply (telemetry's replication lag); never throws. */
function observeReplication(segmentId: string, local: Promise<void>, remote: Promise<Response>[], cb: (segmentId: string, lagMs: number, forwardMs: number) => void): void {
  const t0 = performance.now();
  let localAt: number | undefined;
  local.then(() => { localAt = performance.now(); }, () => {});
  void Promise.allSettled(remote).then((rs) => {
    if (rs.some((r) => r.status === 'rejected' || r.value.status !== Status.OK)) return;
    const end = performance.now();
    cb(segmentId, localAt === undefined ? 0 : end - localAt, end - t0);
  });
}

/**
 * Waits for the local operation and every forwarded copy. A local failure is thrown (it maps to
 * the request's error); a replica that failed or refused is returned as a description.
 */
async function applyEverywhere(local: Promise<void>, remote: Promise<Response>[]): Promise<ReplicaProblem | undefined> {
  const [localResult, remoteResults] = await Promise.all([
    local.then(() => undefined, (err: unknown) => ({ err })),
    Promise.allSettled(remote),
  ]);
  if (localResult) throw localResult.err;
  let problem: ReplicaProblem | undefined;
  for (const r of remoteResults) {
    if (r.status === 'rejected') problem ??= { status: Status.UNAVAILABLE, message: (r.reason as Error).message };
    else if (r.value.status !== Status.OK) {
      const p = { status: r.value.status, message: r.value.payload.toString('utf8') || `status ${r.value.status}` };
      // A full replica is reported over any other failure: it is the one the client can act on.
      if (!problem || p.status === Status.NO_SPACE) problem = p;
    }
  }
  return problem;
}

/** Why a forwarded copy failed: the replica's status (UNAVAILABLE when it did not answer) and words. */
interface ReplicaProblem {
  status: Status;
  message: string;
}
