// Fault injection for tests and demos: degradations that ramp up like real ones, injected
// through the real paths (the segment store's ioHook, the data-protocol boundary, the
// process's own memory), so telemetry, scores and clients see them exactly as they would see
// a failing disk, a lossy network or a leaking process. Nothing here runs unless the server
// was started with --allow-faults.
//
// Each active profile has an intensity (its full strength, in the profile's own unit) and a
// ramp: the level grows linearly from 0 to the intensity over rampSeconds, then stays.
// Several profiles may be active at once; posting a profile again restarts its ramp.

import { AsyncLocalStorage } from 'node:async_hooks';
import type { IoOp } from '../segment-store/segment-store.ts';
import { BLOCK_SIZE } from '../segment-store/types.ts';
import { Op, type Request, type Response } from '../protocol/messages.ts';

export const FAULT_PROFILES = ['slow-io', 'io-errors', 'sector-errors', 'net-loss', 'net-delay', 'mem-leak'] as const;
export type FaultProfile = (typeof FAULT_PROFILES)[number];

export interface ProfileInfo {
  description: string;
  /** What `intensity` measures. */
  unit: string;
  defaultIntensity: number;
  maxIntensity: number;
}

export const PROFILE_INFO: Record<FaultProfile, ProfileInfo> = {
  'slow-io': {
    description: 'every disk operation waits longer before it runs (uniform 0.5–1.5 × the level), like a disk retrying reads or a failing controller',
    unit: 'ms added per disk operation at full ramp', defaultIntensity: 50, maxIntensity: 60_000,
  },
  'io-errors': {
    description: 'a growing fraction of disk operations fail with EIO',
    unit: 'fraction of disk operations failing at full ramp', defaultIntensity: 0.05, maxIntensity: 1,
  },
  'sector-errors': {
    description: 'grown defects: pending sectors found by reads (those reads fail with EIO until the block is rewritten, which reallocates it), reported as SMART 5/197/187',
    unit: 'grown defects at full ramp', defaultIntensity: 32, maxIntensity: 1_000_000,
  },
  'net-loss': {
    description: 'responses on the data protocol hit by packet loss: delayed by TCP retransmission timeouts (200 ms, doubling), and 1 in 5 of them reset the connection',
    unit: 'fraction of responses affected at full ramp', defaultIntensity: 0.05, maxIntensity: 1,
  },
  'net-delay': {
    description: 'every data-protocol response is delayed (uniform 0.5–1.5 × the level)',
    unit: 'ms added per response at full ramp', defaultIntensity: 100, maxIntensity: 60_000,
  },
  'mem-leak': {
    description: 'the process allocates and holds memory (¾ in Buffers, ¼ on the V8 heap), growing to the level',
    unit: 'MiB held at full ramp', defaultIntensity: 256, maxIntensity: 16_384,
  },
};

export interface FaultSpec {
  profile: FaultProfile;
  /** Seconds from 0 to full intensity (default 60; 0 = at once). */
  rampSeconds?: number;
  /** Full strength in the profile's unit (PROFILE_INFO[profile].unit). */
  intensity?: number;
}

export interface FaultStatus {
  profile: FaultProfile;
  intensity: number;
  rampSeconds: number;
  unit: string;
  startedAt: string;
  elapsedSeconds: number;
  /** Current strength, 0..intensity. */
  level: number;
  /** level / intensity. */
  progress: number;
}

export interface FaultCounters {
  /** Disk operations slowed by slow-io, and the total delay added. */
  ioDelayed: number;
  ioDelayMs: number;
  /** Disk operations failed by io-errors. */
  ioErrors: number;
  /** Reads failed because they touched a pending sector. */
  sectorReadErrors: number;
  /** Responses delayed by net-delay / net-loss, connections reset by net-loss. */
  netDelayed: number;
  netResets: number;
}

/** A bad request to the fault API (unknown profile, intensity out of range). */
export class FaultSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FaultSpecError';
  }
}

/** Thrown at the data-server boundary to make it drop the connection (net-loss resets). */
export class DropConnectionError extends Error {
  readonly closeConnection = true;
  constructor() {
    super('connection reset (injected net-loss)');
    this.name = 'DropConnectionError';
  }
}

/** What the injector needs of the segment store (to place offline-found defects). */
export interface SegmentSource {
  list(): string[];
  info(segmentId: string): Promise<{ size: number }>;
}

export interface FaultInjectorOptions {
  segments?: () => SegmentSource | undefined;
  now?: () => number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Background tick (memory growth, offline defect discovery); default 250 ms. */
  tickMs?: number;
}

interface Active {
  profile: FaultProfile;
  intensity: number;
  rampMs: number;
  startedAt: number;
}

/** The data-protocol request being served, so the disk hook knows which blocks it touches. */
interface RequestContext {
  segmentId: string;
  offset: number;
  length: number;
}

const MiB = 1024 * 1024;
const RTO_MS = 200;

function eio(message: string): Error {
  return Object.assign(new Error(`EIO: i/o error, ${message} (injected)`), { code: 'EIO', errno: -5 });
}

/** Validates a fault request from the API or CLI; throws FaultSpecError with the reason. */
export function parseFaultSpec(body: unknown): Required<FaultSpec> {
  if (!body || typeof body !== 'object') throw new FaultSpecError('body must be a JSON object {profile, rampSeconds?, intensity?}');
  const b = body as Record<string, unknown>;
  if (typeof b.profile !== 'string' || !(FAULT_PROFILES as readonly string[]).includes(b.profile)) {
    throw new FaultSpecError(`profile must be one of ${FAULT_PROFILES.join(', ')} (got ${JSON.stringify(b.profile)})`);
  }
  const profile = b.profile as FaultProfile;
  const info = PROFILE_INFO[profile];
  const ramp = b.rampSeconds ?? 60;
  if (typeof ramp !== 'number' || !Number.isFinite(ramp) || ramp < 0 || ramp > 30 * 86400) {
    throw new FaultSpecError(`rampSeconds must be a number from 0 to ${30 * 86400} (got ${JSON.stringify(b.rampSeconds)})`);
  }
  const intensity = b.intensity ?? info.defaultIntensity;
  if (typeof intensity !== 'number' || !Number.isFinite(intensity) || intensity <= 0 || intensity > info.maxIntensity) {
    throw new FaultSpecError(`intensity for ${profile} (${info.unit}) must be a number > 0 and <= ${info.maxIntensity} (got ${JSON.stringify(b.intensity)})`);
  }
  return { profile, rampSeconds: ramp, intensity };
}

export class FaultInjector {
  private readonly active = new Map<FaultProfile, Active>();
  private readonly als = new AsyncLocalStorage<RequestContext>();
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  /** Pending sectors per segment (block indexes): reads touching them fail. */
  private readonly pending = new Map<string, Set<number>>();
  private pendingCount = 0;
  private reallocated = 0;
  private uncorrectable = 0;
  /** Memory held by mem-leak. */
  private leaked: (Buffer | number[])[] = [];
  private leakedBytes = 0;
  readonly counters: FaultCounters = { ioDelayed: 0, ioDelayMs: 0, ioErrors: 0, sectorReadErrors: 0, netDelayed: 0, netResets: 0 };

  constructor(private readonly opts: FaultInjectorOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.tickMs = opts.tickMs ?? 250;
  }

  /** Starts (or restarts, with a fresh ramp) one profile. */
  set(spec: FaultSpec): FaultStatus {
    const s = parseFaultSpec(spec);
    this.active.set(s.profile, { profile: s.profile, intensity: s.intensity, rampMs: s.rampSeconds * 1000, startedAt: this.now() });
    this.ensureTimer();
    return this.status().find((x) => x.profile === s.profile)!;
  }

  /** Stops one profile, or all; clears the state they built up (defects, held memory). */
  clear(profile?: FaultProfile): FaultProfile[] {
    const gone = profile ? (this.active.delete(profile) ? [profile] : []) : [...this.active.keys()];
    if (!profile) this.active.clear();
    if (!profile || profile === 'sector-errors') {
      this.pending.clear();
      this.pendingCount = 0;
      this.reallocated = 0;
      this.uncorrectable = 0;
    }
    if (!profile || profile === 'mem-leak') {
      this.leaked = [];
      this.leakedBytes = 0;
    }
    if (this.active.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    return gone;
  }

  status(): FaultStatus[] {
    const now = this.now();
    return [...this.active.values()].map((a) => {
      const level = this.levelOf(a, now);
      return {
        profile: a.profile, intensity: a.intensity, rampSeconds: a.rampMs / 1000, unit: PROFILE_INFO[a.profile].unit,
        startedAt: new Date(a.startedAt).toISOString(), elapsedSeconds: (now - a.startedAt) / 1000, level, progress: level / a.intensity,
      };
    });
  }

  get anyActive(): boolean {
    return this.active.size > 0;
  }

  private levelOf(a: Active, now: number): number {
    if (a.rampMs <= 0) return a.intensity;
    return a.intensity * Math.min(1, Math.max(0, now - a.startedAt) / a.rampMs);
  }

  /** Current strength of a profile (0 when not active). */
  level(profile: FaultProfile): number {
    const a = this.active.get(profile);
    return a ? this.levelOf(a, this.now()) : 0;
  }

  /**
   * The segment store's ioHook: awaited before each disk operation, under the store's range
   * lock, so a delay here is a slow disk and a throw is a failed disk operation.
   */
  readonly ioHook = async (op: IoOp, segmentId: string, _bytes: number): Promise<void> => {
    if (this.active.size === 0 && this.pendingCount === 0) return;
    const slow = this.level('slow-io');
    if (slow > 0) {
      const ms = slow * (0.5 + this.random());
      this.counters.ioDelayed++;
      this.counters.ioDelayMs += ms;
      await this.sleep(ms);
    }
    const p = this.level('io-errors');
    if (p > 0 && this.random() < p) {
      this.counters.ioErrors++;
      throw eio(`${op} of ${segmentId}`);
    }
    if (op === 'read' || op === 'write') this.sectorCheck(op, segmentId);
  };

  /** Which blocks the data-protocol request being served touches (undefined outside one). */
  private blocks(segmentId: string): [number, number] | undefined {
    const ctx = this.als.getStore();
    if (!ctx || ctx.segmentId !== segmentId || ctx.length <= 0) return undefined;
    return [Math.floor(ctx.offset / BLOCK_SIZE), Math.ceil((ctx.offset + ctx.length) / BLOCK_SIZE)];
  }

  private sectorCheck(op: 'read' | 'write', segmentId: string): void {
    const target = Math.floor(this.level('sector-errors'));
    if (target === 0 && this.pendingCount === 0) return;
    const range = this.blocks(segmentId);
    if (!range) return; // scrub and copy reads outside a request: no block range to judge
    const [b0, b1] = range;
    const bad = this.pending.get(segmentId);
    if (op === 'write') {
      // Rewriting a pending sector makes the drive remap it: pending → reallocated.
      if (!bad) return;
      for (const b of [...bad]) {
        if (b >= b0 && b < b1) {
          bad.delete(b);
          this.pendingCount--;
          this.reallocated++;
        }
      }
      if (bad.size === 0) this.pending.delete(segmentId);
      return;
    }
    if (bad) {
      for (const b of bad) {
        if (b >= b0 && b < b1) {
          this.uncorrectable++;
          this.counters.sectorReadErrors++;
          throw eio(`unreadable sector: block ${b} of ${segmentId}`);
        }
      }
    }
    if (this.pendingCount + this.reallocated < target) {
      // Defects are found by reading them: this read is the one that hits the next weak sector.
      const b = b0 + Math.floor(this.random() * (b1 - b0));
      this.addPending(segmentId, b);
      this.uncorrectable++;
      this.counters.sectorReadErrors++;
      throw eio(`unreadable sector: block ${b} of ${segmentId}`);
    }
  }

  private addPending(segmentId: string, block: number): void {
    let set = this.pending.get(segmentId);
    if (!set) this.pending.set(segmentId, (set = new Set()));
    if (!set.has(block)) {
      set.add(block);
      this.pendingCount++;
    }
  }

  /** Pending sectors (segment → blocks), for tests and the status API. */
  pendingSectors(): { segmentId: string; blocks: number[] }[] {
    return [...this.pending].map(([segmentId, s]) => ({ segmentId, blocks: [...s].sort((a, b) => a - b) }));
  }

  /**
   * Wraps one data-protocol request: runs the handler with the request's block range visible
   * to the disk hook, then applies network faults to the response (delay it, or reset the
   * connection: the data server closes it on DropConnectionError).
   */
  async aroundRequest(req: Request, run: () => Promise<Response>): Promise<Response> {
    if (this.active.size === 0 && this.pendingCount === 0) return run();
    const length = req.op === Op.WRITE ? req.payload.length : req.length;
    const res = await this.als.run({ segmentId: req.segmentId, offset: req.offset, length }, run);
    const delay = this.level('net-delay');
    let wait = delay > 0 ? delay * (0.5 + this.random()) : 0;
    const loss = this.level('net-loss');
    if (loss > 0 && this.random() < loss) {
      if (this.random() < 0.2) {
        this.counters.netResets++;
        if (wait > 0) await this.sleep(wait);
        throw new DropConnectionError();
      }
      // A lost segment costs a retransmission timeout; the retransmission may be lost too.
      let rto = RTO_MS;
      while (rto < 3200 && this.random() < loss) rto *= 2;
      wait += rto;
    }
    if (wait > 0) {
      this.counters.netDelayed++;
      await this.sleep(wait);
    }
    return res;
  }

  private ensureTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      this.growLeak();
      await this.offlineDefects();
    } catch {
      // a segment deleted under us: try again next tick
    } finally {
      this.ticking = false;
    }
  }

  private growLeak(): void {
    const want = Math.floor(this.level('mem-leak') * MiB);
    // At most 64 MiB per tick, so the event loop is not frozen by one huge allocation.
    for (let n = 0; this.leakedBytes + MiB <= want && n < 64; n++) {
      if (this.leaked.length % 4 === 3) {
        // ¼ on the V8 heap (packed doubles: 8 bytes each), so heap_used climbs like a JS leak.
        const a = new Array<number>(MiB / 8);
        for (let i = 0; i < a.length; i++) a[i] = i + 0.5;
        this.leaked.push(a);
      } else {
        // Filled, not zeroed: untouched pages would not count in RSS.
        const b = Buffer.allocUnsafe(MiB);
        for (let i = 0; i < MiB; i += 4096) b[i] = (i >> 12) & 0xff;
        this.leaked.push(b);
      }
      this.leakedBytes += MiB;
    }
  }

  /**
   * Defects also appear without reads (the drive's own background scan finds them). Each tick the
   * scan finds a tenth of the shortfall (at least one), so the count follows the fault's ramp
   * within a few ticks whatever the read load, and "intensity" really is the defects at full ramp;
   * reads still find the next weak sector first when they get there.
   */
  private async offlineDefects(): Promise<void> {
    const target = Math.floor(this.level('sector-errors'));
    const gap = target - (this.pendingCount + this.reallocated);
    if (gap <= 0) return;
    const src = this.opts.segments?.();
    const ids = src?.list() ?? [];
    if (!src || ids.length === 0) return;
    const sizes = new Map<string, number>();
    for (let n = Math.max(1, Math.ceil(gap / 10)); n > 0; n--) {
      const id = ids[Math.floor(this.random() * ids.length)]!;
      let size = sizes.get(id);
      if (size === undefined) sizes.set(id, (size = (await src.info(id)).size));
      this.addPending(id, Math.floor(this.random() * (size / BLOCK_SIZE)));
    }
  }

  /**
   * Values for the telemetry collector. The sector counters use the SMART catalogue's names so
   * that every consumer treats them like a real drive's; `fault_injected` = 1 says they are not.
   */
  metrics(): Record<string, number> {
    const out: Record<string, number> = {};
    if (this.active.size === 0 && this.pendingCount === 0 && this.reallocated === 0) return out;
    out.fault_injected = 1;
    out.fault_active_profiles = this.active.size;
    for (const p of FAULT_PROFILES) if (this.active.has(p)) out[`fault_${p.replace('-', '_')}_level`] = this.level(p);
    if (this.active.has('sector-errors') || this.pendingCount > 0 || this.reallocated > 0) {
      out.smart_5_reallocated_sectors = this.reallocated;
      out.smart_197_current_pending_sectors = this.pendingCount;
      out.smart_187_reported_uncorrectable = this.uncorrectable;
    }
    if (this.active.has('mem-leak')) out.fault_mem_held_bytes = this.leakedBytes;
    return out;
  }

  /** Memory held by mem-leak right now. */
  get heldBytes(): number {
    return this.leakedBytes;
  }

  /** Stops everything (server shutdown). */
  close(): void {
    this.clear();
  }
}
