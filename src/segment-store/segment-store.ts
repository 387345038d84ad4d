// A server's local segment store: one sparse data file per segment replica, 4 KiB blocks, and a
// checksum sidecar verified on every read.
//
// On-disk layout under <dir>:
//   segments/<volume>/<index>.dat   data, ftruncate'd to the segment size (sparse)
//   segments/<volume>/<index>.sum   sidecar: 8 bytes per block, two little-endian u32 slots
//                                   [cur, prev]; 0 means "all-zero block"
//   segments/<volume>/<index>.meta  small JSON record (replication/fencing), replaced atomically
//   segments/<volume>/<index>.damaged  present when open() found the files of this copy damaged
//                                   (a data file shorter than its checksums, a checksum file
//                                   missing or of the wrong size: ensure() never leaves either), with
//                                   the reason; such a copy must not be trusted (isDamaged)
//   clean-shutdown                  present only after a clean close() (see `known` below)
//   quarantine/<volume>/<index>[.<n>]/   copies set aside by quarantine(): their files, moved whole,
//                                   never read or deleted except by purgeQuarantine()
//
// Sidecars are also held in memory (the most recently used ones, up to `sidecarCacheBytes`), so a
// read is one disk operation (the data) and a write two (sidecar, then data), not two and three.
// A read of a segment whose files are open and sidecar cached, over a range nobody holds, takes
// a fast path with no await before the pread (the common case on a server's hot path).
// The memory copy is only ever what the file holds: it is loaded whole when no sidecar write of
// that segment is in flight (and dropped if one ran meanwhile), updated after each sidecar write
// succeeds, and dropped when one fails (the file's state is then unknown) or the files close.
//
// A block verifies iff its canonical checksum equals `cur` or `prev` (the canonical checksum of
// an all-zero block is 0). A write first stores (new, on-disk) in the sidecar and then writes
// the data, so a process killed between the two leaves a block that still verifies against its
// old data: a crash never turns good data into CORRUPT. Power loss before a FLUSH gives no such
// promise for the unflushed writes (a torn 4 KiB write cannot verify); their blocks read as
// CorruptBlockError, to be repaired from a replica, and are never returned.

import { constants as fsConstants, read as fsRead, write as fsWrite } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { Xxh64 } from '@node-rs/xxhash';
import type { Logger } from '../common/log.ts';
import { silentLogger } from '../common/log.ts';
import { RangeLock, type Release } from './range-lock.ts';
import { asNoSpace, BLOCK_SIZE, CorruptBlockError, OutOfRangeError, type BlockChecksums, type SegmentInfo } from './types.ts';

export type IoOp = 'read' | 'write' | 'flush' | 'trim';
export type IoHook = (op: IoOp, segmentId: string, bytes: number) => void | Promise<void>;

export interface SegmentStoreOptions {
  /**
   * Awaited before each disk operation (under the range lock, so a slow hook slows the real
   * I/O path); if it throws, the operation fails with that error. For fault injection.
   */
  ioHook?: IoHook;
  /** Warnings about damaged or leftover files found by open(). Silent by default. */
  logger?: Logger;
  /** Memory for in-memory sidecar copies (8 bytes per 4 KiB block; LRU by segment). Default 256 MiB; 0 = none. */
  sidecarCacheBytes?: number;
}

export const DEFAULT_SIDECAR_CACHE_BYTES = 256 * 1024 * 1024;

/** Bytes per sidecar entry: u32 cur + u32 prev. */
const SUM_ENTRY = 8;
/** Blocks per chunk for large scans and trims (1 MiB of data). */
const CHUNK_BLOCKS = 256;
const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
const ZERO_CHUNK = Buffer.alloc(CHUNK_BLOCKS * BLOCK_SIZE);
const ZERO_CRC = crc32c(ZERO_BLOCK);
const CLEAN_MARKER = 'clean-shutdown';
const VOLUME_RE = /^[A-Za-z0-9._-]{1,64}$/;
const INDEX_RE = /^(0|[1-9][0-9]{0,15})$/;

/** Canonical checksum of one 4 KiB block: 0 when it is all zeros, crc32c otherwise. */
export function blockChecksum(block: Uint8Array): number {
  if (block.length !== BLOCK_SIZE) throw new RangeError(`blockChecksum needs ${BLOCK_SIZE} bytes, got ${block.length}`);
  const c = crc32c(block);
  return c === ZERO_CRC && Buffer.from(block.buffer, block.byteOffset, block.byteLength).equals(ZERO_BLOCK) ? 0 : c;
}

/** Splits and validates `<volume>/<index>`; throws Error for anything else (no path tricks). */
export function parseSegmentId(segmentId: string): { volume: string; index: number } {
  if (typeof segmentId !== 'string') throw new Error(`invalid segment id: ${String(segmentId)}`);
  const slash = segmentId.indexOf('/');
  const volume = slash < 0 ? '' : segmentId.slice(0, slash);
  const indexStr = slash < 0 ? '' : segmentId.slice(slash + 1);
  if (!VOLUME_RE.test(volume) || volume === '.' || volume === '..' || !INDEX_RE.test(indexStr)) {
    throw new Error(`invalid segment id ${JSON.stringify(segmentId)}: expected <volume>/<index>, volume [A-Za-z0-9._-]{1,64}, index a non-negative integer`);
  }
  const index = Number(indexStr);
  if (!Number.isSafeInteger(index)) throw new Error(`invalid segment id ${JSON.stringify(segmentId)}: index too large`);
  return { volume, index };
}

interface Files {
  data: FileHandle;
  sum: FileHandle;
}

interface Segment {
  id: string;
  dataPath: string;
  sumPath: string;
  metaPath: string;
  damagedPath: string;
  size: number;
  blocks: number;
  lock: RangeLock;
  files?: Promise<Files>;
  /** The same files once open (the read fast path uses them without awaiting `files`). */
  opened?: Files;
  /** Written since the last successful flush. */
  dirty: boolean;
  /**
   * Blocks whose sidecar `cur` is known to match the data on disk (one bit per block); null
   * means all of them. After a crash (no clean-shutdown marker) nothing is known: an earlier
   * write may have stopped between sidecar and data, leaving data that matches only `prev`.
   * The first write of such a block reads the old data, so that the `prev` it stores is the
   * checksum of what is really on disk and a second crash still leaves a verifiable block.
   */
  known: Uint8Array | null;
  deleted: boolean;
  /** Flushes in progress (they do not take the range lock); delete waits for them. */
  flushes: Set<Promise<void>>;
  /** The whole sidecar, as the file holds it, when cached (see the header). */
  side?: Buffer;
  /** Sidecar writes in flight, and a count of those finished: a load installs only if neither moved. */
  sideBusy: number;
  sideGen: number;
}

export class SegmentStore {
  private readonly segmentsDir: string;
  private readonly ioHook?: IoHook;
  private readonly log: Logger;
  private readonly segments = new Map<string, Segment>();
  /** Copies open() found damaged, with the reason (see the .damaged file in the layout above). */
  private readonly damage = new Map<string, string>();
  /** Per-id queue serialising ensure/delete/writeMeta of the same segment. */
  private readonly lifecycle = new Map<string, Promise<unknown>>();
  /** Data operations in flight (close waits for them), and who waits for none. */
  private busy = 0;
  private idleWaiters: (() => void)[] = [];
  private state: 'new' | 'opening' | 'open' | 'closed' = 'new';
  /** Segments whose sidecar is cached, least recently used first (Map order). */
  private readonly sideLru = new Map<Segment, number>();
  private sideBytes = 0;
  private readonly sideBudget: number;

  constructor(private readonly dir: string, opts: SegmentStoreOptions = {}) {
    this.segmentsDir = join(dir, 'segments');
    this.ioHook = opts.ioHook;
    this.log = opts.logger ?? silentLogger;
    this.sideBudget = opts.sidecarCacheBytes ?? DEFAULT_SIDECAR_CACHE_BYTES;
  }

  /**
   * Sidecar entries of blocks [b0, b0 + n): a view of the cached sidecar (loaded whole on first
   * use if it fits the budget), else read from the file (into `into` when given). Caller holds
   * the range lock, so no write changes these entries while the view is in use.
   */
  private async sidecar(seg: Segment, files: Files, b0: number, n: number, into?: Buffer): Promise<Buffer> {
    if (!seg.side && seg.sideBusy === 0 && seg.blocks * SUM_ENTRY <= this.sideBudget) {
      const gen = seg.sideGen;
      const whole = await readAt(files.sum, 0, seg.blocks * SUM_ENTRY);
      if (!seg.side && seg.sideBusy === 0 && seg.sideGen === gen && seg.files && !seg.deleted) {
        seg.side = whole;
        this.sideBytes += whole.length;
        this.sideLru.set(seg, whole.length);
        for (const [old, bytes] of this.sideLru) {
          if (this.sideBytes <= this.sideBudget || old === seg) break;
          this.dropSidecar(old, bytes);
        }
      }
    }
    if (seg.side) {
      this.touchSidecar(seg, seg.side);
      return seg.side.subarray(b0 * SUM_ENTRY, (b0 + n) * SUM_ENTRY);
    }
    return readAt(files.sum, b0 * SUM_ENTRY, n * SUM_ENTRY, into);
  }

  /** Marks a cached sidecar most recently used (last in the LRU's order). */
  private touchSidecar(seg: Segment, side: Buffer): void {
    this.sideLru.delete(seg);
    this.sideLru.set(seg, side.length);
  }

  private dropSidecar(seg: Segment, bytes = seg.side?.length ?? 0): void {
    if (!this.sideLru.delete(seg)) return;
    this.sideBytes -= bytes;
    seg.side = undefined;
  }

  /** Creates the directory if needed and finds the segments already on disk. */
  async open(): Promise<void> {
    if (this.state !== 'new') throw new Error(`segment store ${this.dir} already ${this.state}`);
    this.state = 'opening';
    try {
      await mkdir(this.segmentsDir, { recursive: true });
      const markerPath = join(this.dir, CLEAN_MARKER);
      const cleanStart = await exists(markerPath);
      await this.scan(cleanStart);
      if (cleanStart) {
        // From now on a crash is possible again: the marker must go before the first write.
        await unlink(markerPath);
        await fsyncDir(this.dir);
      }
      this.state = 'open';
    } catch (err) {
      this.state = 'new';
      this.segments.clear();
      throw err;
    }
  }

  /** Why open() found this copy's files damaged (undefined when they are whole). */
  damageOf(segmentId: string): string | undefined {
    return this.damage.get(segmentId);
  }

  /** The damaged copies, by segment id, with the reason. */
  listDamaged(): Map<string, string> {
    return new Map(this.damage);
  }

  /** False for unknown segments and for strings that are not valid segment ids. */
  has(segmentId: string): boolean {
    return this.segments.has(segmentId);
  }

  list(): string[] {
    return [...this.segments.keys()].sort();
  }

  /** Creates the segment (zero-filled, sparse) unless it exists; an existing one must have this size. */
  async ensure(segmentId: string, size: number): Promise<void> {
    const { volume, index } = parseSegmentId(segmentId);
    if (!Number.isSafeInteger(size) || size <= 0 || size % BLOCK_SIZE !== 0) {
      throw new Error(`segment size must be a positive multiple of ${BLOCK_SIZE}, got ${size}`);
    }
    this.checkOpen();
    return this.track(
      this.serial(segmentId, async () => {
        const existing = this.segments.get(segmentId);
        if (existing) {
          if (existing.size !== size) throw new Error(`segment ${segmentId} exists with size ${existing.size}, not ${size}`);
          return;
        }
        const volDir = join(this.segmentsDir, volume);
        const seg = this.makeSegment(segmentId, volDir, index, size, null);
        const newVolume = !(await exists(volDir));
        await mkdir(volDir, { recursive: true });
        await rm(seg.metaPath, { force: true });
        await rm(seg.damagedPath, { force: true });
        // Sidecar first, then the data file by rename: a .dat on disk always has its full size
        // and a sidecar, so scan() can trust it; a crash leaves at most an orphan it removes.
        await createSized(seg.sumPath, seg.blocks * SUM_ENTRY);
        const tmp = `${seg.dataPath}.tmp`;
        await createSized(tmp, size);
        await rename(tmp, seg.dataPath);
        await fsyncDir(volDir);
        if (newVolume) await fsyncDir(this.segmentsDir);
        this.segments.set(segmentId, seg);
      }).catch((err: unknown) => Promise.reject(asNoSpace(err, segmentId))),
    );
  }

  /** Reads verified data; throws CorruptBlockError (and returns nothing) if any block fails. */
  read(segmentId: string, offset: number, length: number): Promise<Buffer> {
    let seg: Segment;
    try {
      seg = this.lookup(segmentId);
      checkRange(seg, offset, length);
    } catch (err) {
      return Promise.reject(err);
    }
    if (length === 0) return Promise.resolve(Buffer.alloc(0));
    const b0 = Math.floor(offset / BLOCK_SIZE);
    const b1 = Math.ceil((offset + length) / BLOCK_SIZE);
    const n = b1 - b0;
    // Fast path (files open, sidecar cached, range free, no I/O hook): one pread, verified
    // against the cached sidecar, with no await and one promise reaction.
    const files = seg.opened;
    const side = seg.side;
    if (files && side && !this.ioHook && !seg.deleted) {
      const release = seg.lock.tryAcquire(b0, b1, false);
      if (release) {
        this.touchSidecar(seg, side);
        const sums = side.subarray(b0 * SUM_ENTRY, b1 * SUM_ENTRY);
        this.busy++;
        return readAt(files.data, b0 * BLOCK_SIZE, n * BLOCK_SIZE).then(
          (data) => {
            release();
            this.idle();
            return this.verifiedSlice(seg, data, sums, b0, offset, length);
          },
          (err: unknown) => {
            release();
            this.idle();
            throw err;
          },
        );
      }
    }
    return this.track(
      this.withRange(seg, b0, b1, false, async () => {
        await this.hook('read', seg.id, length);
        const files = await this.files(seg);
        const [data, sums] = await Promise.all([
          readAt(files.data, b0 * BLOCK_SIZE, n * BLOCK_SIZE),
          this.sidecar(seg, files, b0, n),
        ]);
        return this.verifiedSlice(seg, data, sums, b0, offset, length);
      }),
    );
  }

  /** Checks every block read against its sidecar entry; the bytes asked for, or CorruptBlockError. */
  private verifiedSlice(seg: Segment, data: Buffer, sums: Buffer, b0: number, offset: number, length: number): Buffer {
    const n = sums.length / SUM_ENTRY;
    let bad: number[] | undefined;
    for (let i = 0; i < n; i++) {
      const v = verify(data, i, sums);
      if (!acceptable(seg, b0 + i, v)) (bad ??= []).push(b0 + i);
      else if (v.matchesCur) markKnown(seg, b0 + i, b0 + i + 1);
    }
    if (bad) throw new CorruptBlockError(seg.id, bad);
    const start = offset - b0 * BLOCK_SIZE;
    return data.subarray(start, start + length);
  }

  /**
   * Writes `data` at `offset`. Unaligned edges are read-modify-written under the lock (a corrupt
   * edge block fails the write with CorruptBlockError). `data` must not be modified until the
   * returned promise settles. With `fua`, data and sidecar are fsynced before it resolves.
   */
  async write(segmentId: string, offset: number, data: Uint8Array, opts: { fua?: boolean } = {}): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new TypeError('write data must be a Buffer or Uint8Array');
    const seg = this.lookup(segmentId);
    checkRange(seg, offset, data.length);
    if (data.length > 0) {
      const b0 = Math.floor(offset / BLOCK_SIZE);
      const b1 = Math.ceil((offset + data.length) / BLOCK_SIZE);
      const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      await this.track(
        this.withRange(seg, b0, b1, true, async () => {
          await this.hook('write', seg.id, data.length);
          await this.writeBlocks(seg, b0, b1, offset, buf);
        }),
      );
    }
    if (opts.fua) await this.flush(segmentId);
  }

  /**
   * Makes the range read back as zeros. Whole blocks are stored like a write of zeros (sidecar
   * (0, on-disk) then zero data) rather than setting both slots to 0 at once, so a crash in the
   * middle still leaves the old data verifiable. Space is not returned to the filesystem
   * (Node has no hole punching).
   */
  async trim(segmentId: string, offset: number, length: number): Promise<void> {
    const seg = this.lookup(segmentId);
    checkRange(seg, offset, length);
    if (length === 0) return;
    const b0 = Math.floor(offset / BLOCK_SIZE);
    const b1 = Math.ceil((offset + length) / BLOCK_SIZE);
    return this.track(
      this.withRange(seg, b0, b1, true, async () => {
        await this.hook('trim', seg.id, length);
        // In 1 MiB pieces so a large trim needs no large buffer.
        const end = offset + length;
        const chunk = CHUNK_BLOCKS * BLOCK_SIZE;
        for (let pos = offset; pos < end; ) {
          const pieceEnd = Math.min(end, (Math.floor(pos / chunk) + 1) * chunk);
          await this.writeBlocks(seg, Math.floor(pos / BLOCK_SIZE), Math.ceil(pieceEnd / BLOCK_SIZE), pos, ZERO_CHUNK.subarray(0, pieceEnd - pos));
          pos = pieceEnd;
        }
      }),
    );
  }

  /** fsyncs data and sidecar of one segment, or of every segment written since its last flush. */
  async flush(segmentId?: string): Promise<void> {
    if (segmentId !== undefined) {
      await this.track(this.flushSegment(this.lookup(segmentId), true));
      return;
    }
    this.checkOpen();
    const dirty = [...this.segments.values()].filter((s) => s.dirty);
    await this.track(Promise.all(dirty.map((s) => this.flushSegment(s, false))));
  }

  /**
   * Canonical checksums of blocks [firstBlock, firstBlock + count) computed from the data on
   * disk, and which of them fail verification. Reads 1 MiB at a time.
   */
  async checksums(segmentId: string, firstBlock = 0, count?: number, opts: { recorded?: boolean } = {}): Promise<BlockChecksums> {
    const seg = this.lookup(segmentId);
    const n = count ?? seg.blocks - firstBlock;
    if (!Number.isSafeInteger(firstBlock) || !Number.isSafeInteger(n) || firstBlock < 0 || n < 0 || firstBlock + n > seg.blocks) {
      throw new OutOfRangeError(`segment ${segmentId}: blocks [${firstBlock}, +${count}) outside 0..${seg.blocks}`);
    }
    return this.track(opts.recorded ? this.recordedChecksums(seg, firstBlock, n) : this.scanChecksums(seg, firstBlock, n));
  }

  /**
   * The `cur` checksums the sidecar records for [firstBlock, +count), without reading data, when
   * every block's record is known to match its data (see `known`); otherwise a full scan. A
   * block that rotted on disk since it was written is not noticed here (reads and scrub are
   * what notice it); nothing else can differ from what a scan would report.
   */
  private async recordedChecksums(seg: Segment, firstBlock: number, count: number): Promise<BlockChecksums> {
    for (let b = firstBlock; b < firstBlock + count; b++) if (!isKnown(seg, b)) return this.scanChecksums(seg, firstBlock, count);
    return this.withRange(seg, firstBlock, firstBlock + count, false, async () => {
      const files = await this.files(seg);
      const side = await this.sidecar(seg, files, firstBlock, count);
      const sums = new Uint32Array(count);
      for (let i = 0; i < count; i++) sums[i] = side.readUInt32LE(i * SUM_ENTRY);
      return { sums, corrupt: [] };
    });
  }

  /**
   * Hex xxh64 over the canonical checksum array (u32 little-endian each): equal digests mean
   * equal data. Throws CorruptBlockError if any block fails verification, since a digest of
   * unverifiable data would vouch for it.
   */
  async digest(segmentId: string): Promise<string> {
    const { sums, corrupt } = await this.checksums(segmentId);
    if (corrupt.length > 0) throw new CorruptBlockError(segmentId, corrupt);
    const bytes = Buffer.allocUnsafe(sums.length * 4);
    for (let i = 0; i < sums.length; i++) bytes.writeUInt32LE(sums[i]!, i * 4);
    return new Xxh64(0n).update(bytes).digest().toString(16).padStart(16, '0');
  }

  async info(segmentId: string): Promise<SegmentInfo> {
    const seg = this.lookup(segmentId);
    const st = await this.track(stat(seg.dataPath));
    return { segmentId: seg.id, size: seg.size, allocatedBytes: st.blocks * 512, dirty: seg.dirty };
  }

  /** Removes the segment's files once in-flight I/O on it has finished; no error if absent. */
  async delete(segmentId: string): Promise<void> {
    const { volume, index } = parseSegmentId(segmentId);
    this.checkOpen();
    return this.track(
      this.serial(segmentId, async () => {
        const seg = this.segments.get(segmentId);
        let release: Release | undefined;
        if (seg) {
          // New operations no longer find it; queued ones finish before we get the lock.
          this.segments.delete(segmentId);
          release = await seg.lock.acquire(0, seg.blocks, true);
          seg.deleted = true;
          await Promise.allSettled([...seg.flushes]);
          this.dropSidecar(seg);
          await closeFiles(seg);
        }
        try {
          const volDir = join(this.segmentsDir, volume);
          const { dataPath, sumPath, metaPath, damagedPath } = this.makeSegment(segmentId, volDir, index, BLOCK_SIZE, null);
          // .dat first: once it is gone the segment is gone, and scan() sweeps the rest.
          await rm(dataPath, { force: true });
          await rm(sumPath, { force: true });
          await rm(metaPath, { force: true });
          await rm(damagedPath, { force: true });
          this.damage.delete(segmentId);
          if (await exists(volDir)) await fsyncDir(volDir);
        } finally {
          release?.();
        }
      }),
    );
  }

  /**
   * Moves a copy's files out of the store into quarantine/ (the segment is then unknown here),
   * once in-flight I/O on it has finished: for copies nobody can vouch for either way, which an
   * operator inspects and purges. Returns where the files went.
   */
  async quarantine(segmentId: string): Promise<string> {
    const { volume, index } = parseSegmentId(segmentId);
    this.checkOpen();
    return this.track(
      this.serial(segmentId, async () => {
        const seg = this.segments.get(segmentId);
        if (!seg) throw new OutOfRangeError(`unknown segment ${segmentId}`);
        this.segments.delete(segmentId);
        const release = await seg.lock.acquire(0, seg.blocks, true);
        try {
          seg.deleted = true;
          await Promise.allSettled([...seg.flushes]);
          this.dropSidecar(seg);
          await closeFiles(seg);
          const parent = join(this.dir, 'quarantine', volume);
          await mkdir(parent, { recursive: true });
          let dest = join(parent, String(index));
          for (let n = 1; await exists(dest); n++) dest = join(parent, `${index}.${n}`);
          await mkdir(dest);
          // .dat last: until it has moved, scan() still finds the segment in place.
          for (const p of [seg.sumPath, seg.metaPath, seg.damagedPath, seg.dataPath]) {
            if (await exists(p)) await rename(p, join(dest, p.slice(p.lastIndexOf('/') + 1)));
          }
          await fsyncDir(dest);
          await fsyncDir(join(seg.dataPath, '..'));
          this.damage.delete(segmentId);
          return dest;
        } finally {
          release();
        }
      }),
    );
  }

  /** Copies in quarantine: segment id, folder, bytes of data. */
  async listQuarantine(): Promise<{ segmentId: string; path: string; bytes: number }[]> {
    const root = join(this.dir, 'quarantine');
    if (!(await exists(root))) return [];
    const out: { segmentId: string; path: string; bytes: number }[] = [];
    for (const vol of await readdir(root)) {
      for (const name of await readdir(join(root, vol))) {
        const m = /^(0|[1-9][0-9]{0,15})(\.[0-9]+)?$/.exec(name);
        if (!m) continue;
        const path = join(root, vol, name);
        const dat = join(path, `${m[1]}.dat`);
        out.push({ segmentId: `${vol}/${m[1]}`, path, bytes: (await exists(dat)) ? (await stat(dat)).size : 0 });
      }
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  /** Deletes quarantined copies (of one segment, or all); returns how many. */
  async purgeQuarantine(segmentId?: string): Promise<number> {
    const victims = (await this.listQuarantine()).filter((q) => segmentId === undefined || q.segmentId === segmentId);
    for (const q of victims) await rm(q.path, { recursive: true, force: true });
    return victims.length;
  }

  /** Stores a small JSON record for the segment atomically (tmp file, fsync, rename). */
  async writeMeta(segmentId: string, meta: Record<string, unknown>): Promise<void> {
    const seg = this.lookup(segmentId);
    if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw new TypeError('segment meta must be a plain object');
    const json = JSON.stringify(meta); // throws for cycles and BigInt: bad input, not a crash
    return this.track(
      this.serial(segmentId, async () => {
        if (seg.deleted || this.segments.get(segmentId) !== seg) throw new OutOfRangeError(`unknown segment ${segmentId}`);
        const tmp = `${seg.metaPath}.tmp`;
        const fh = await open(tmp, 'w');
        try {
          await fh.writeFile(json);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, seg.metaPath);
        await fsyncDir(join(seg.metaPath, '..'));
      }),
    );
  }

  /** The record stored by writeMeta, or undefined if there is none (or no such segment). */
  async readMeta(segmentId: string): Promise<Record<string, unknown> | undefined> {
    parseSegmentId(segmentId);
    this.checkOpen();
    const seg = this.segments.get(segmentId);
    if (!seg) return undefined;
    let text: string;
    try {
      const fh = await open(seg.metaPath, 'r');
      try {
        text = await fh.readFile('utf8');
      } finally {
        await fh.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new Error(`segment ${segmentId}: meta file ${seg.metaPath} is not valid JSON`);
    }
  }

  /**
   * Waits for operations in flight, flushes, closes every file and records a clean shutdown.
   * Later calls fail. If a flush fails the files are still closed and the error is rethrown.
   */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state !== 'open') {
      this.state = 'closed';
      return;
    }
    this.state = 'closed';
    while (this.busy > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    let failure: unknown;
    for (const seg of this.segments.values()) {
      try {
        if (seg.dirty) await this.flushSegment(seg, false);
      } catch (err) {
        failure ??= err;
      }
      try {
        this.dropSidecar(seg);
        await closeFiles(seg);
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
    const marker = join(this.dir, CLEAN_MARKER);
    const fh = await open(marker, 'w');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsyncDir(this.dir);
  }

  // ---------------------------------------------------------------------------------------

  /**
   * The write path for blocks [b0, b1) covering `data` at byte `offset`. Caller holds the
   * exclusive range lock. One sidecar read, one sidecar write, one data write (plus reads of
   * partial edge blocks and of blocks whose on-disk checksum is not known).
   */
  private async writeBlocks(seg: Segment, b0: number, b1: number, offset: number, data: Buffer): Promise<void> {
    const files = await this.files(seg);
    const n = b1 - b0;
    const sums = await this.sidecar(seg, files, b0, n);
    // Checksum of the data now on disk for each block, or undefined while unknown.
    const onDisk: (number | undefined)[] = new Array(n);
    let buf: Buffer;
    if (offset % BLOCK_SIZE === 0 && data.length % BLOCK_SIZE === 0) {
      buf = data;
    } else {
      buf = Buffer.allocUnsafe(n * BLOCK_SIZE);
      const edges = new Set<number>();
      if (offset % BLOCK_SIZE !== 0) edges.add(0);
      if ((offset + data.length) % BLOCK_SIZE !== 0) edges.add(n - 1);
      const bad: number[] = [];
      const olds = await Promise.all([...edges].map((i) => readAt(files.data, (b0 + i) * BLOCK_SIZE, BLOCK_SIZE)));
      for (const [k, i] of [...edges].entries()) {
        const old = olds[k]!;
        const v = verify(old, 0, sums.subarray(i * SUM_ENTRY, (i + 1) * SUM_ENTRY));
        if (!acceptable(seg, b0 + i, v)) bad.push(b0 + i);
        onDisk[i] = v.canonical;
        old.copy(buf, i * BLOCK_SIZE);
      }
      if (bad.length > 0) throw new CorruptBlockError(seg.id, bad);
      data.copy(buf, offset - b0 * BLOCK_SIZE);
    }
    let firstUnknown = -1;
    let lastUnknown = -1;
    for (let i = 0; i < n; i++) {
      if (onDisk[i] !== undefined) continue;
      if (isKnown(seg, b0 + i)) onDisk[i] = sums.readUInt32LE(i * SUM_ENTRY);
      else {
        if (firstUnknown < 0) firstUnknown = i;
        lastUnknown = i;
      }
    }
    if (firstUnknown >= 0) {
      const old = await readAt(files.data, (b0 + firstUnknown) * BLOCK_SIZE, (lastUnknown - firstUnknown + 1) * BLOCK_SIZE);
      for (let i = firstUnknown; i <= lastUnknown; i++) {
        if (onDisk[i] !== undefined) continue;
        const v = verify(old, i - firstUnknown, sums.subarray(i * SUM_ENTRY, (i + 1) * SUM_ENTRY), 0);
        // A corrupt block keeps its old `cur` as `prev`: it must not start verifying by accident.
        onDisk[i] = v.ok ? v.canonical : sums.readUInt32LE(i * SUM_ENTRY);
      }
    }
    const side = Buffer.allocUnsafe(n * SUM_ENTRY);
    for (let i = 0; i < n; i++) {
      side.writeUInt32LE(blockChecksum(buf.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)), i * SUM_ENTRY);
      side.writeUInt32LE(onDisk[i]!, i * SUM_ENTRY + 4);
    }
    seg.dirty = true;
    try {
      seg.sideBusy++;
      try {
        await writeAt(files.sum, side, b0 * SUM_ENTRY);
        seg.side && side.copy(seg.side, b0 * SUM_ENTRY);
      } catch (err) {
        this.dropSidecar(seg); // the file may hold part of it: only the file is the truth now
        throw err;
      } finally {
        seg.sideBusy--;
        seg.sideGen++;
      }
      await writeAt(files.data, buf, b0 * BLOCK_SIZE);
    } catch (err) {
      // Sidecar and data may now disagree on `cur`: re-learn these blocks before trusting it.
      forget(seg, b0, b1);
      throw asNoSpace(err, seg.id);
    }
    // Again after the data landed: a flush that ran meanwhile may have cleared it too early.
    seg.dirty = true;
    markKnown(seg, b0, b1);
  }

  private async scanChecksums(seg: Segment, firstBlock: number, count: number): Promise<BlockChecksums> {
    const sums = new Uint32Array(count);
    const corrupt: number[] = [];
    const stale: { block: number; recorded: number }[] = [];
    // One scratch pair per scan, reused for every chunk: nothing of the data outlives the loop,
    // and a 32 MiB scan no longer allocates 32 fresh MiB for the GC to sweep.
    const dataBuf = Buffer.allocUnsafe(Math.min(CHUNK_BLOCKS, count) * BLOCK_SIZE);
    const sideBuf = Buffer.allocUnsafe(Math.min(CHUNK_BLOCKS, count) * SUM_ENTRY);
    for (let done = 0; done < count; ) {
      const b0 = firstBlock + done;
      const n = Math.min(CHUNK_BLOCKS, count - done);
      await this.withRange(seg, b0, b0 + n, false, async () => {
        await this.hook('read', seg.id, n * BLOCK_SIZE);
        const files = await this.files(seg);
        const [data, side] = await Promise.all([
          readAt(files.data, b0 * BLOCK_SIZE, n * BLOCK_SIZE, dataBuf),
          // From the file, never the memory copy: scans are how scrub finds a rotten sidecar.
          readAt(files.sum, b0 * SUM_ENTRY, n * SUM_ENTRY, sideBuf),
        ]);
        for (let i = 0; i < n; i++) {
          const v = verify(data, i, side);
          sums[done + i] = v.canonical;
          if (!acceptable(seg, b0 + i, v)) corrupt.push(b0 + i);
          else if (!v.matchesCur) {
            const recorded = side.readUInt32LE(i * SUM_ENTRY);
            stale.push({ block: b0 + i, recorded: recorded === ZERO_CRC ? 0 : recorded });
          }
        }
      });
      done += n;
    }
    return { sums, corrupt, stale };
  }

  private async flushSegment(seg: Segment, explicit: boolean): Promise<void> {
    if (!explicit && !seg.dirty) return;
    const p = (async () => {
      await this.hook('flush', seg.id, 0);
      if (seg.deleted) throw new OutOfRangeError(`unknown segment ${seg.id}`);
      if (!seg.files) return; // never opened since open(): nothing of ours to sync
      const files = await seg.files;
      // Cleared before syncing: a write completing during the fsync marks it dirty again.
      const wasDirty = seg.dirty;
      seg.dirty = false;
      try {
        await Promise.all([files.data.sync(), files.sum.sync()]);
      } catch (err) {
        seg.dirty ||= wasDirty;
        throw asNoSpace(err, seg.id);
      }
    })();
    seg.flushes.add(p);
    try {
      await p;
    } finally {
      seg.flushes.delete(p);
    }
  }

  private async withRange<T>(seg: Segment, b0: number, b1: number, exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    const release = await seg.lock.acquire(b0, b1, exclusive);
    try {
      if (seg.deleted) throw new OutOfRangeError(`unknown segment ${seg.id}`);
      return await fn();
    } finally {
      release();
    }
  }

  private files(seg: Segment): Promise<Files> {
    if (!seg.files) {
      const p = (async () => {
        const data = await open(seg.dataPath, fsConstants.O_RDWR);
        try {
          return { data, sum: await open(seg.sumPath, fsConstants.O_RDWR) };
        } catch (err) {
          await data.close();
          throw err;
        }
      })();
      seg.files = p;
      p.then((files) => {
        if (seg.files === p && !seg.deleted) seg.opened = files;
      }, () => {
        if (seg.files === p) seg.files = undefined; // let a later operation retry
      });
    }
    return seg.files;
  }

  private async hook(op: IoOp, segmentId: string, bytes: number): Promise<void> {
    if (this.ioHook) await this.ioHook(op, segmentId, bytes);
  }

  private lookup(segmentId: string): Segment {
    this.checkOpen();
    const seg = this.segments.get(segmentId);
    if (seg) return seg; // only valid ids are ever stored
    parseSegmentId(segmentId);
    throw new OutOfRangeError(`unknown segment ${segmentId}`);
  }

  private checkOpen(): void {
    if (this.state !== 'open') throw new Error(`segment store ${this.dir} is not open (${this.state})`);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.busy++;
    p.then(this.idle, this.idle);
    return p;
  }

  private readonly idle = (): void => {
    if (--this.busy > 0 || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  };

  private serial<T>(segmentId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.lifecycle.get(segmentId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.lifecycle.set(segmentId, tail);
    void tail.then(() => {
      if (this.lifecycle.get(segmentId) === tail) this.lifecycle.delete(segmentId);
    });
    return next;
  }

  private makeSegment(id: string, volDir: string, index: number, size: number, known: Uint8Array | null): Segment {
    return {
      id,
      dataPath: join(volDir, `${index}.dat`),
      sumPath: join(volDir, `${index}.sum`),
      metaPath: join(volDir, `${index}.meta`),
      damagedPath: join(volDir, `${index}.damaged`),
      size,
      blocks: size / BLOCK_SIZE,
      lock: new RangeLock(),
      dirty: false,
      known,
      deleted: false,
      flushes: new Set(),
      sideBusy: 0,
      sideGen: 0,
    };
  }

  /** Finds segments on disk, repairs short sidecars, sweeps leftovers of interrupted ensure/delete. */
  private async scan(cleanStart: boolean): Promise<void> {
    for (const vol of await readdir(this.segmentsDir, { withFileTypes: true })) {
      if (!vol.isDirectory() || !VOLUME_RE.test(vol.name) || vol.name === '.' || vol.name === '..') {
        this.log.warn({ path: join(this.segmentsDir, vol.name) }, 'ignoring unexpected entry in segments directory');
        continue;
      }
      const volDir = join(this.segmentsDir, vol.name);
      const names = new Set(await readdir(volDir));
      for (const name of names) {
        const path = join(volDir, name);
        const m = /^(0|[1-9][0-9]{0,15})\.(dat|sum|meta|damaged)(\.tmp)?$/.exec(name);
        if (!m) {
          this.log.warn({ path }, 'ignoring unexpected file in segment directory');
          continue;
        }
        const [, indexStr, kind, tmp] = m;
        if (tmp || (kind !== 'dat' && !names.has(`${indexStr}.dat`))) {
          // An interrupted ensure, delete or writeMeta.
          await rm(path, { force: true });
          continue;
        }
        if (kind !== 'dat') continue;
        const id = `${vol.name}/${indexStr}`;
        const sumFile = join(volDir, `${indexStr}.sum`);
        const sumSize = names.has(`${indexStr}.sum`) ? (await stat(sumFile)).size : -1;
        let size = (await stat(path)).size;
        const problems: string[] = [];
        if (names.has(`${indexStr}.damaged`)) problems.push((await readFile(join(volDir, `${indexStr}.damaged`), 'utf8')).trim() || 'marked damaged');
        // ensure() leaves a full-size data file beside a sidecar of exactly one entry per block, so
        // any other shape is damage (a truncated file, a lost sidecar), never a crash of ours.
        const sumBlocks = sumSize > 0 && sumSize % SUM_ENTRY === 0 ? sumSize / SUM_ENTRY : 0;
        if (size % BLOCK_SIZE !== 0 || size < sumBlocks * BLOCK_SIZE) {
          if (sumBlocks === 0) {
            this.log.warn({ path, size }, `ignoring segment ${id}: data file size is not a positive multiple of ${BLOCK_SIZE} and there is no checksum file to size it by`);
            continue;
          }
          problems.push(`data file of ${size} bytes is shorter than its checksums (${sumBlocks * BLOCK_SIZE} bytes)`);
          size = sumBlocks * BLOCK_SIZE;
          const fh = await open(path, fsConstants.O_RDWR);
          try {
            await fh.truncate(size); // the segment keeps its geometry; the lost part reads as a hole
            await fh.sync();
          } finally {
            await fh.close();
          }
        }
        if (size <= 0) {
          this.log.warn({ path, size }, `ignoring segment ${id}: empty data file`);
          continue;
        }
        const blocks = size / BLOCK_SIZE;
        const seg = this.makeSegment(id, volDir, Number(indexStr), size, cleanStart ? null : new Uint8Array(Math.ceil(blocks / 8)));
        if (sumSize !== blocks * SUM_ENTRY) {
          problems.push(sumSize < 0 ? 'checksum file missing' : `checksum file of ${sumSize} bytes, expected ${blocks * SUM_ENTRY}`);
          // Missing slots read as "zero block": zero blocks stay readable, anything else reports
          // CorruptBlockError (to be repaired from a replica) rather than being returned unverified.
          this.log.warn({ path: seg.sumPath, sumSize, expected: blocks * SUM_ENTRY }, `segment ${id}: sidecar has the wrong size, resizing`);
          const fh = await open(seg.sumPath, fsConstants.O_RDWR | fsConstants.O_CREAT);
          try {
            await fh.truncate(blocks * SUM_ENTRY);
            await fh.sync();
          } finally {
            await fh.close();
          }
        }
        if (problems.length > 0) {
          const reason = problems.join('; ');
          // Persisted first: once resized, the files no longer show what happened to them.
          if (!names.has(`${indexStr}.damaged`)) {
            await writeFile(seg.damagedPath, `${reason}\n`);
            await fsyncDir(volDir);
          }
          this.damage.set(id, reason);
          this.log.error({ segment: id, reason }, 'damaged segment copy: it will not be served or used as a source');
        }
        this.segments.set(id, seg);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

interface Verdict {
  ok: boolean;
  /** Canonical checksum of the data as it is. */
  canonical: number;
  /** The data matches the `cur` slot (so `cur` describes what is on disk). */
  matchesCur: boolean;
}

/** Verifies block `i` of `data` against sidecar entry `j` (default `i`) of `sums`. */
function verify(data: Buffer, i: number, sums: Buffer, j = i): Verdict {
  const block = data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
  const cur = sums.readUInt32LE(j * SUM_ENTRY);
  const prev = sums.readUInt32LE(j * SUM_ENTRY + 4);
  const c = crc32c(block);
  const canonical = c === ZERO_CRC && block.equals(ZERO_BLOCK) ? 0 : c;
  const matchesCur = canonical === cur || c === cur;
  return { ok: matchesCur || canonical === prev || c === prev, canonical, matchesCur };
}

/**
 * Whether a block's data may be served. Matching the previous checksum is allowed only while the
 * block's state is unknown (after a crash: a write interrupted between sidecar and data was never
 * acknowledged, so the old data is right). A block known to match its latest checksum that now
 * matches only the previous one changed behind our back (a hole, a file restored from a backup):
 * that is damage, reported as corruption and repaired from a replica, never served.
 */
function acceptable(seg: Segment, b: number, v: Verdict): boolean {
  return v.ok && (v.matchesCur || !isKnown(seg, b));
}

function isKnown(seg: Segment, b: number): boolean {
  return seg.known === null || (seg.known[b >> 3]! & (1 << (b & 7))) !== 0;
}

function markKnown(seg: Segment, b0: number, b1: number): void {
  const k = seg.known;
  if (k === null) return;
  for (let b = b0; b < b1; b++) k[b >> 3]! |= 1 << (b & 7);
}

function forget(seg: Segment, b0: number, b1: number): void {
  if (seg.known === null) seg.known = new Uint8Array(Math.ceil(seg.blocks / 8)).fill(0xff);
  const k = seg.known;
  for (let b = b0; b < b1; b++) k[b >> 3]! &= ~(1 << (b & 7));
}

function checkRange(seg: Segment, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > seg.size) {
    throw new OutOfRangeError(`segment ${seg.id}: range offset ${offset} length ${length} outside 0..${seg.size}`);
  }
}

/**
 * Reads length bytes at position (zeros past the end) into `into` when given (reused scratch),
 * else a new buffer. The callback API on the handle's fd: one threadpool request and one promise
 * per call, where FileHandle.read cost 1.6-3x the CPU (fsCall, refcounts, a result object). The
 * handle stays open meanwhile: every caller holds the segment's range lock or is counted in
 * `busy`, and files close only under the whole-segment lock or after `busy` drains.
 */
function readAt(fh: FileHandle, position: number, length: number, into?: Buffer): Promise<Buffer> {
  const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (err: Error | null, bytesRead: number) => {
      if (err) return reject(err);
      done += bytesRead;
      if (bytesRead === 0 || done >= length) {
        if (done < length) buf.fill(0, done);
        return resolve(buf);
      }
      fsRead(fh.fd, buf, done, length - done, position + done, step);
    };
    fsRead(fh.fd, buf, 0, length, position, step);
  });
}

function writeAt(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (err: Error | null, bytesWritten: number) => {
      if (err) return reject(err);
      done += bytesWritten;
      if (done >= buf.length) return resolve();
      fsWrite(fh.fd, buf, done, buf.length - done, position + done, step);
    };
    fsWrite(fh.fd, buf, 0, buf.length, position, step);
  });
}

async function createSized(path: string, size: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(size);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function closeFiles(seg: Segment): Promise<void> {
  const p = seg.files;
  seg.files = undefined;
  seg.opened = undefined;
  if (!p) return;
  let files: Files;
  try {
    files = await p;
  } catch {
    return; // never opened
  }
  await Promise.allSettled([files.data.close(), files.sum.close()]);
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
