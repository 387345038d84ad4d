// An in-memory BlockDevice / BlockDeviceProvider for tests and demos. Sparse: data lives in
// 64 KiB chunks in a Map, and a chunk that was never written (or was fully trimmed) reads as zeros.
// Tests can inject errors for a byte range and latency per operation.

import type { BlockDevice, BlockDeviceProvider } from '../client/block-device.ts';

export const MEMORY_CHUNK_SIZE = 64 * 1024;

export type MemoryOp = 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes';

export interface InjectedError {
  offset: number;
  length: number;
  /** Which operations fail; all that touch the range when omitted. */
  ops?: MemoryOp[];
  /** Thrown as is; a generic "injected I/O error" when omitted. */
  error?: Error;
}

export interface MemoryDeviceStats {
  reads: number;
  writes: number;
  fuaWrites: number;
  flushes: number;
  trims: number;
  writeZeroes: number;
  inFlight: number;
  /** Highest number of operations running at once, for concurrency assertions. */
  maxInFlight: number;
}

export class MemoryBlockDevice implements BlockDevice {
  readonly name: string;
  readonly size: number;
  readonly description?: string;
  readonly stats: MemoryDeviceStats = { reads: 0, writes: 0, fuaWrites: 0, flushes: 0, trims: 0, writeZeroes: 0, inFlight: 0, maxInFlight: 0 };
  private readonly chunks = new Map<number, Buffer>();
  private errors: InjectedError[] = [];
  private latency: ((op: MemoryOp, offset: number, length: number) => number) | undefined;

  constructor(name: string, size: number, description?: string) {
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`invalid device size ${size} for "${name}"`);
    this.name = name;
    this.size = size;
    this.description = description;
  }

  /** Makes operations touching [offset, offset+length) fail until clearErrors(). */
  injectError(e: InjectedError): void { this.errors.push(e); }
  clearErrors(): void { this.errors = []; }
  /** Delays each operation by the returned number of milliseconds (0 = none). */
  setLatency(fn: ((op: MemoryOp, offset: number, length: number) => number) | undefined): void { this.latency = fn; }

  /** Bytes held in memory (sparse footprint). */
  get allocatedBytes(): number { return this.chunks.size * MEMORY_CHUNK_SIZE; }

  async read(offset: number, length: number): Promise<Buffer> {
    return this.op('read', offset, length, () => {
      this.stats.reads++;
      return this.readSync(offset, length);
    });
  }

  async write(offset: number, data: Buffer, opts?: { fua?: boolean }): Promise<void> {
    return this.op('write', offset, data.length, () => {
      this.stats.writes++;
      if (opts?.fua) this.stats.fuaWrites++;
      this.writeSync(offset, data);
    });
  }

  async flush(): Promise<void> {
    return this.op('flush', 0, 0, () => { this.stats.flushes++; });
  }

  async trim(offset: number, length: number): Promise<void> {
    return this.op('trim', offset, length, () => { this.stats.trims++; this.zeroSync(offset, length); });
  }

  async writeZeroes(offset: number, length: number, opts?: { fua?: boolean }): Promise<void> {
    return this.op('writeZeroes', offset, length, () => {
      this.stats.writeZeroes++;
      if (opts?.fua) this.stats.fuaWrites++;
      this.zeroSync(offset, length);
    });
  }

  /** Synchronous read for test assertions (no latency, no injected errors). */
  readSync(offset: number, length: number): Buffer {
    this.checkRange(offset, length);
    const out = Buffer.alloc(length);
    this.forEachChunk(offset, length, (idx, start, end, outPos) => {
      this.chunks.get(idx)?.copy(out, outPos, start, end);
    });
    return out;
  }

  /** Synchronous write for test setup. */
  writeSync(offset: number, data: Buffer): void {
    this.checkRange(offset, data.length);
    this.forEachChunk(offset, data.length, (idx, start, end, srcPos) => {
      let c = this.chunks.get(idx);
      if (!c) { c = Buffer.alloc(MEMORY_CHUNK_SIZE); this.chunks.set(idx, c); }
      data.copy(c, start, srcPos, srcPos + (end - start));
    });
  }

  private zeroSync(offset: number, length: number): void {
    this.checkRange(offset, length);
    this.forEachChunk(offset, length, (idx, start, end) => {
      if (start === 0 && end === MEMORY_CHUNK_SIZE) this.chunks.delete(idx); // whole chunk: free it
      else this.chunks.get(idx)?.fill(0, start, end);
    });
  }

  /** Calls fn(chunkIndex, startInChunk, endInChunk, positionInRange) for each chunk the range covers. */
  private forEachChunk(offset: number, length: number, fn: (idx: number, start: number, end: number, pos: number) => void): void {
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const idx = Math.floor(abs / MEMORY_CHUNK_SIZE);
      const start = abs - idx * MEMORY_CHUNK_SIZE;
      const end = Math.min(MEMORY_CHUNK_SIZE, start + (length - pos));
      fn(idx, start, end, pos);
      pos += end - start;
    }
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`range [${offset}, +${length}) outside device "${this.name}" of size ${this.size}`);
    }
  }

  private async op<T>(op: MemoryOp, offset: number, length: number, body: () => T): Promise<T> {
    this.stats.inFlight++;
    this.stats.maxInFlight = Math.max(this.stats.maxInFlight, this.stats.inFlight);
    try {
      const ms = this.latency?.(op, offset, length) ?? 0;
      if (ms > 0) await new Promise((r) => setTimeout(r, ms));
      for (const e of this.errors) {
        const hits = op === 'flush' ? true : offset < e.offset + e.length && e.offset < offset + length;
        if (hits && (!e.ops || e.ops.includes(op))) throw e.error ?? new Error(`injected I/O error on ${op} [${offset}, +${length})`);
      }
      return body();
    } finally {
      this.stats.inFlight--;
    }
  }
}

export class MemoryBlockDeviceProvider implements BlockDeviceProvider {
  private readonly devices = new Map<string, MemoryBlockDevice>();

  constructor(devices: { name: string; size: number; description?: string }[] = []) {
    for (const d of devices) this.create(d.name, d.size, d.description);
  }

  create(name: string, size: number, description?: string): MemoryBlockDevice {
    if (this.devices.has(name)) throw new Error(`device "${name}" already exists`);
    const d = new MemoryBlockDevice(name, size, description);
    this.devices.set(name, d);
    return d;
  }

  get(name: string): MemoryBlockDevice | undefined { return this.devices.get(name); }

  delete(name: string): boolean { return this.devices.delete(name); }

  async list(): Promise<{ name: string; size: number; description?: string }[]> {
    return [...this.devices.values()].map((d) => ({ name: d.name, size: d.size, ...(d.description !== undefined ? { description: d.description } : {}) }));
  }

  /** Every open of a name returns the same device, so all connections share its data. */
  async open(name: string): Promise<BlockDevice | undefined> { return this.devices.get(name); }
}
