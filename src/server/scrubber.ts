// Scrub: a background pass, run by each segment's primary, that compares per-block checksums
// across the replicas and repairs a bad block from a healthy one. A block that fails its own
// checksum is corrupt and is replaced by a verified copy; replicas that verify but disagree are
// brought back in line with the primary (which applies every write first). Each chunk is
// compared under the primary's write-ordering lock, so no write is half-replicated meanwhile.

import type { Logger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import { parseSegmentId, segmentLength, type SmtEntry } from '../metadata/model.ts';
import { decodeChecksums } from '../protocol/codec.ts';
import type { ConnectionPool } from '../protocol/connection.ts';
import { Flag, Op, Status } from '../protocol/messages.ts';
import type { SegmentStore } from '../segment-store/segment-store.ts';
import { BLOCK_SIZE } from '../segment-store/types.ts';
import type { RequestHandler } from './request-handler.ts';

export interface ScrubStats {
  passes: number;
  segmentsScrubbed: number;
  blocksChecked: number;
  /** Blocks that failed their checksum on some replica. */
  corruptFound: number;
  /** Blocks that verified everywhere but differed between replicas. */
  mismatchesFound: number;
  blocksRepaired: number;
  /** Bad blocks with no healthy copy anywhere. */
  unrepairable: number;
  /**
   * Blocks where the replicas differ and nothing says which holds the latest write (the primary's
   * block lost its latest write and no replica holds it either): reported, never guessed.
   */
  conflicts: number;
  lastPassAt?: string;
}

const CHUNK_BLOCKS = 1024; // 4 MiB compared per lock hold

export interface ScrubberContext {
  serverId: string;
  store: SegmentStore;
  view: ClusterView;
  peers: ConnectionPool;
  handler: RequestHandler;
  log: Logger;
}

export class Scrubber {
  readonly stats: ScrubStats = { passes: 0, segmentsScrubbed: 0, blocksChecked: 0, corruptFound: 0, mismatchesFound: 0, blocksRepaired: 0, unrepairable: 0, conflicts: 0 };
  private timer?: NodeJS.Timeout;
  private readonly urgent = new Set<string>();
  private busy: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly ctx: ScrubberContext) {}

  /** Scrubs every segment this server is primary of, one pass every `intervalMs`. */
  start(intervalMs: number): void {
    const tick = async () => {
      if (this.stopped) return;
      await this.scrubAll().catch((err) => this.ctx.log.warn({ err: (err as Error).message }, 'scrub pass failed'));
      if (!this.stopped) this.timer = setTimeout(tick, intervalMs);
    };
    this.timer = setTimeout(tick, intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** A read found corruption: scrub that segment soon rather than at the next pass. */
  repairSoon(segmentId: string): void {
    if (this.urgent.has(segmentId)) return;
    this.urgent.add(segmentId);
    setTimeout(() => {
      this.urgent.delete(segmentId);
      this.scrubSegment(segmentId).catch((err) => this.ctx.log.warn({ segmentId, err: (err as Error).message }, 'repair failed'));
    }, 10);
  }

  async scrubAll(): Promise<ScrubStats> {
    for (const id of this.ctx.store.list()) {
      if (this.stopped) break;
      if (this.ctx.view.entry(id)?.replicas[0] === this.ctx.serverId) await this.scrubSegment(id);
    }
    this.stats.passes++;
    this.stats.lastPassAt = new Date().toISOString();
    return { ...this.stats };
  }

  /** One segment, chunk by chunk; scrubs of the same server run one at a time. */
  scrubSegment(segmentId: string): Promise<void> {
    const run = this.busy.then(() => this.doSegment(segmentId));
    this.busy = run.catch(() => {});
    return run;
  }

  private async doSegment(segmentId: string): Promise<void> {
    const { view, store, handler } = this.ctx;
    const entry = view.entry(segmentId);
    if (!entry || entry.replicas[0] !== this.ctx.serverId || !store.has(segmentId)) return;
    const { volume, index } = parseSegmentId(segmentId);
    const vol = view.volumes.get(volume);
    if (!vol) return;
    const size = segmentLength(vol, index);
    const blocks = Math.ceil(size / BLOCK_SIZE);
    for (let first = 0; first < blocks; first += CHUNK_BLOCKS) {
      const count = Math.min(CHUNK_BLOCKS, blocks - first);
      const release = await handler.lock(segmentId, first, first + count, true);
      try {
        const cur = view.entry(segmentId);
        if (!cur || cur.replicas[0] !== this.ctx.serverId) return;
        await this.scrubChunk(segmentId, cur, first, count, size);
      } finally {
        release();
      }
    }
    this.stats.segmentsScrubbed++;
  }

  private async scrubChunk(segmentId: string, entry: SmtEntry, first: number, count: number, size: number): Promise<void> {
    const len = Math.min(count * BLOCK_SIZE, size - first * BLOCK_SIZE);
    const local = await this.ctx.store.checksums(segmentId, first, count);
    const others = entry.replicas.slice(1);
    const remote = await Promise.all(others.map(async (sid) => {
      const addr = this.ctx.view.servers.get(sid)?.dataAddr;
      if (!addr) return undefined;
      try {
        const res = await this.ctx.peers.get(addr).send({ op: Op.CHECKSUMS, flags: Flag.COPY, epoch: entry.epoch, segmentId, offset: first * BLOCK_SIZE, length: len, payload: EMPTY });
        return res.status === Status.OK ? { sid, addr, ...decodeChecksums(res.payload) } : undefined;
      } catch {
        return undefined; // an unreachable replica is the failover machinery's business, not scrub's
      }
    }));
    const localBad = new Set(local.corrupt);
    const localStale = new Map((local.stale ?? []).map((s) => [s.block, s.recorded]));
    this.stats.blocksChecked += count;
    for (let i = 0; i < count; i++) {
      const b = first + i;
      const peers = remote.filter((r): r is NonNullable<typeof r> => !!r);
      const peerBad = peers.filter((r) => r.corrupt.includes(b));
      if (localBad.has(b)) {
        this.stats.corruptFound++;
        const donor = peers.find((r) => !r.corrupt.includes(b));
        if (!donor) {
          this.stats.unrepairable++;
          this.ctx.log.error({ segmentId, block: b }, 'corrupt block with no healthy replica');
          continue;
        }
        await this.repairFrom(donor, entry, segmentId, b, 'repaired corrupt block from a replica');
        continue;
      }
      const differing = peers.filter((r) => r.corrupt.includes(b) || r.sums[i] !== local.sums[i]);
      if (differing.length === 0) continue;
      const recorded = localStale.get(b);
      if (recorded !== undefined) {
        // Our block lost its latest write (its data matches only the previous checksum). A replica
        // whose data is that latest write is the right copy: repair ours from it, never the reverse.
        const donor = peers.find((r) => !r.corrupt.includes(b) && r.sums[i] === recorded);
        if (!donor) {
          this.stats.conflicts++;
          this.ctx.log.error({ segmentId, block: b, replicas: differing.map((r) => r.sid) }, 'replicas differ and none holds the latest write the primary recorded: left as is (conflict)');
          continue;
        }
        if (await this.repairFrom(donor, entry, segmentId, b, 'repaired a primary block that had lost its latest write, from a replica holding it')) this.stats.mismatchesFound++;
        continue;
      }
      this.stats.corruptFound += peerBad.length;
      this.stats.mismatchesFound += differing.length - peerBad.length;
      const good = await this.ctx.store.read(segmentId, b * BLOCK_SIZE, BLOCK_SIZE);
      for (const r of differing) {
        const res = await this.ctx.peers.get(r.addr).send({ op: Op.WRITE, flags: Flag.FORWARDED | Flag.COPY, epoch: entry.epoch, segmentId, offset: b * BLOCK_SIZE, length: BLOCK_SIZE, payload: good });
        if (res.status === Status.OK) {
          this.stats.blocksRepaired++;
          this.ctx.log.warn({ segmentId, block: b, replica: r.sid }, 'repaired a replica block from the primary');
        } else {
          this.stats.unrepairable++;
        }
      }
    }
  }

  /** Overwrites our block `b` with the donor replica's; false (counted unrepairable) if it cannot answer. */
  private async repairFrom(donor: { sid: string; addr: string }, entry: SmtEntry, segmentId: string, b: number, what: string): Promise<boolean> {
    const res = await this.ctx.peers.get(donor.addr).send({ op: Op.READ, flags: Flag.COPY, epoch: entry.epoch, segmentId, offset: b * BLOCK_SIZE, length: BLOCK_SIZE, payload: EMPTY });
    if (res.status !== Status.OK) {
      this.stats.unrepairable++;
      return false;
    }
    await this.ctx.store.write(segmentId, b * BLOCK_SIZE, res.payload);
    this.stats.blocksRepaired++;
    this.ctx.log.warn({ segmentId, block: b, from: donor.sid }, what);
    return true;
  }
}

const EMPTY = Buffer.alloc(0);

