// Parsers for the Linux telemetry files and a Sampler that turns two successive raw samples
// into rates. Every parser is a pure function over the file text so it can be tested on
// fixtures; the Sampler is the only part that touches the filesystem. A file that is
// missing or unparsable makes its metrics absent; nothing is ever invented.

import { promises as fsp, statSync, realpathSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** Kernel diskstats always count in 512-byte sectors, whatever the device's sector size. */
export const DISKSTATS_SECTOR_BYTES = 512;

export type Values = Record<string, number>;

// ---------------------------------------------------------------------------------------
// /proc/diskstats

export interface DiskCounters {
  major: number;
  minor: number;
  name: string;
  readsCompleted: number;
  readsMerged: number;
  sectorsRead: number;
  msReading: number;
  writesCompleted: number;
  writesMerged: number;
  sectorsWritten: number;
  msWriting: number;
  /** I/Os currently in flight: a gauge, not a counter. */
  inFlight: number;
  /** Milliseconds the device had at least one I/O in flight. */
  msIo: number;
  /** Sum over I/Os of their time in flight (ms): its rate is the average queue depth. */
  weightedMsIo: number;
}

/** Parses /proc/diskstats; lines with fewer than the 14 classic fields are skipped. */
export function parseDiskstats(text: string): Map<string, DiskCounters> {
  const out = new Map<string, DiskCounters>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 14) continue;
    const n = f.map(Number);
    const name = f[2]!;
    if (![0, 1, ...Array.from({ length: 11 }, (_, i) => i + 3)].every((i) => Number.isFinite(n[i]))) continue;
    out.set(name, {
      major: n[0]!, minor: n[1]!, name,
      readsCompleted: n[3]!, readsMerged: n[4]!, sectorsRead: n[5]!, msReading: n[6]!,
      writesCompleted: n[7]!, writesMerged: n[8]!, sectorsWritten: n[9]!, msWriting: n[10]!,
      inFlight: n[11]!, msIo: n[12]!, weightedMsIo: n[13]!,
    });
  }
  return out;
}

/** Counter delta; a counter that went backwards (wrap, device reset) gives no delta. */
function delta(cur: number, prev: number): number | undefined {
  const d = cur - prev;
  return d >= 0 ? d : undefined;
}

/**
 * Per-interval disk metrics from two samples of the same device taken `dtMs` apart.
 * Latency per op is absent in an interval with no ops of that kind (there is nothing to
 * average, and 0 would look like a fast disk).
 */
export function diskRates(prev: DiskCounters, cur: DiskCounters, dtMs: number): Values {
  const v: Values = { disk_inflight: cur.inFlight };
  if (!(dtMs > 0)) return v;
  const s = dtMs / 1000;
  const rd = delta(cur.readsCompleted, prev.readsCompleted);
  const wr = delta(cur.writesCompleted, prev.writesCompleted);
  const rsec = delta(cur.sectorsRead, prev.sectorsRead);
  const wsec = delta(cur.sectorsWritten, prev.sectorsWritten);
  const rms = delta(cur.msReading, prev.msReading);
  const wms = delta(cur.msWriting, prev.msWriting);
  const io = delta(cur.msIo, prev.msIo);
  const wio = delta(cur.weightedMsIo, prev.weightedMsIo);
  if (rd !== undefined) v.disk_read_iops = rd / s;
  if (wr !== undefined) v.disk_write_iops = wr / s;
  if (rsec !== undefined) v.disk_read_bytes_per_s = (rsec * DISKSTATS_SECTOR_BYTES) / s;
  if (wsec !== undefined) v.disk_write_bytes_per_s = (wsec * DISKSTATS_SECTOR_BYTES) / s;
  if (rd !== undefined && rd > 0 && rms !== undefined) v.disk_read_latency_ms = rms / rd;
  if (wr !== undefined && wr > 0 && wms !== undefined) v.disk_write_latency_ms = wms / wr;
  if (wio !== undefined) v.disk_queue_depth = wio / dtMs;
  // io_ticks can run slightly ahead of wall time between two reads; a ratio above 1 is noise.
  if (io !== undefined) v.disk_util_ratio = Math.min(1, io / dtMs);
  return v;
}

// ---------------------------------------------------------------------------------------
// Which block device holds a directory

export interface BlockDevice {
  /** major:minor of the device st_dev names (a partition, a dm device, or a whole disk). */
  major: number;
  minor: number;
  /** Kernel name of that device, e.g. `sda2`, `vda`, `dm-0`. */
  name: string;
  /** The whole disk whose /proc/diskstats line we report (the partition's parent). */
  disk: string;
  diskMajor: number;
  diskMinor: number;
  /**
   * A physical device for SMART: the disk itself, or for a dm/md device with exactly one
   * underlying disk, that disk. Absent when it cannot be told (e.g. a RAID of several).
   */
  smartDevice?: string;
}

/** Splits a Linux dev_t as glibc's gnu_dev_major / gnu_dev_minor do. */
export function splitDevT(dev: bigint): { major: number; minor: number } {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return { major, minor };
}

export interface MountInfoEntry {
  major: number;
  minor: number;
  mountPoint: string;
  fsType: string;
  source: string;
  superOptions: string;
}

/** Parses /proc/self/mountinfo (octal escapes such as `\040` in paths are decoded). */
export function parseMountinfo(text: string): MountInfoEntry[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const a = line.slice(0, sep).split(' ');
    const b = line.slice(sep + 3).split(' ');
    const mm = /^(\d+):(\d+)$/.exec(a[2] ?? '');
    if (!mm || a.length < 5 || b.length < 2) continue;
    out.push({
      major: Number(mm[1]), minor: Number(mm[2]), mountPoint: unescape(a[4]!),
      fsType: b[0]!, source: unescape(b[1]!), superOptions: b[2] ?? '',
    });
  }
  return out;
}

export interface ResolveOptions {
  sysRoot?: string;
  procRoot?: string;
  devRoot?: string;
}

/**
 * Finds the block device that holds `dir`. Filesystems with an anonymous st_dev (major 0:
 * overlayfs, btrfs subvolumes, tmpfs) are looked up in mountinfo: a `/dev/...` source is
 * followed to its device, an overlay to its upperdir. Returns undefined with no block device
 * behind the directory (tmpfs) or when sysfs is not there.
 */
export function resolveBlockDevice(dir: string, opts: ResolveOptions = {}, depth = 0): BlockDevice | undefined {
  const sys = opts.sysRoot ?? '/sys';
  const proc = opts.procRoot ?? '/proc';
  if (depth > 4) return undefined;
  let st;
  try {
    st = statSync(dir, { bigint: true });
  } catch {
    return undefined;
  }
  let { major, minor } = splitDevT(st.dev);
  if (major === 0) {
    let mounts: MountInfoEntry[];
    try {
      mounts = parseMountinfo(readFileSync(path.join(proc, 'self/mountinfo'), 'utf8'));
    } catch {
      return undefined;
    }
    const real = safeRealpath(dir);
    const m = mounts
      .filter((e) => e.major === major && e.minor === minor && isUnder(real, e.mountPoint))
      .sort((x, y) => y.mountPoint.length - x.mountPoint.length)[0];
    if (!m) return undefined;
    if (m.fsType === 'overlay') {
      const upper = /(?:^|,)upperdir=([^,]+)/.exec(m.superOptions)?.[1];
      return upper ? resolveBlockDevice(upper, opts, depth + 1) : undefined;
    }
    if (!m.source.startsWith('/dev/')) return undefined;
    try {
      const dst = statSync(m.source, { bigint: true });
      if (!dst.isBlockDevice()) return undefined;
      ({ major, minor } = splitDevT(dst.rdev));
    } catch {
      return undefined;
    }
  }
  return describeBlockDevice(major, minor, sys);
}

/** Names a block device and its parent disk from /sys/dev/block/MAJ:MIN. */
export function describeBlockDevice(major: number, minor: number, sysRoot = '/sys'): BlockDevice | undefined {
  const link = path.join(sysRoot, 'dev/block', `${major}:${minor}`);
  const real = safeRealpath(link);
  if (!existsSync(real)) return undefined;
  const name = path.basename(real);
  let diskDir = real;
  // A partition directory has a `partition` file and sits inside its disk's directory.
  if (existsSync(path.join(real, 'partition'))) diskDir = path.dirname(real);
  const disk = path.basename(diskDir);
  const dm = /^(\d+):(\d+)/.exec(readText(path.join(diskDir, 'dev')) ?? '');
  const dev: BlockDevice = {
    major, minor, name, disk,
    diskMajor: dm ? Number(dm[1]) : major,
    diskMinor: dm ? Number(dm[2]) : minor,
  };
  const phys = physicalDisk(diskDir, 0);
  if (phys) dev.smartDevice = `/dev/${phys}`;
  return dev;
}

/** Follows `slaves/` of dm and md devices down to one physical disk, if there is exactly one. */
function physicalDisk(diskDir: string, depth: number): string | undefined {
  if (depth > 4) return undefined;
  const slaves = readdirSyncSafe(path.join(diskDir, 'slaves'));
  if (slaves.length === 0) return path.basename(diskDir);
  if (slaves.length > 1) return undefined;
  let s = safeRealpath(path.join(diskDir, 'slaves', slaves[0]!));
  if (existsSync(path.join(s, 'partition'))) s = path.dirname(s);
  return physicalDisk(s, depth + 1);
}

function readdirSyncSafe(p: string): string[] {
  try {
    return readdirSync(p);
  } catch {
    return [];
  }
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function readText(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

function isUnder(p: string, mountPoint: string): boolean {
  if (mountPoint === '/') return true;
  return p === mountPoint || p.startsWith(mountPoint + '/');
}

// ---------------------------------------------------------------------------------------
// /proc/stat

export interface CpuTimes {
  user: number; nice: number; system: number; idle: number; iowait: number;
  irq: number; softirq: number; steal: number;
}

export interface StatSample {
  cpu?: CpuTimes;
  procsRunning?: number;
  procsBlocked?: number;
  contextSwitches?: number;
}

export function parseStat(text: string): StatSample {
  const out: StatSample = {};
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'cpu' && f.length >= 5) {
      const n = f.slice(1).map(Number);
      if (n.slice(0, 4).every(Number.isFinite)) {
        // guest and guest_nice (fields 9, 10) are already included in user and nice.
        out.cpu = {
          user: n[0]!, nice: n[1]!, system: n[2]!, idle: n[3]!, iowait: n[4] ?? 0,
          irq: n[5] ?? 0, softirq: n[6] ?? 0, steal: n[7] ?? 0,
        };
      }
    } else if (f[0] === 'procs_running') out.procsRunning = Number(f[1]);
    else if (f[0] === 'procs_blocked') out.procsBlocked = Number(f[1]);
    else if (f[0] === 'ctxt') out.contextSwitches = Number(f[1]);
  }
  return out;
}

function cpuTotal(c: CpuTimes): number {
  return c.user + c.nice + c.system + c.idle + c.iowait + c.irq + c.softirq + c.steal;
}

/** CPU fractions over the interval between two /proc/stat samples (all CPUs together). */
export function cpuRates(prev: StatSample, cur: StatSample, dtMs: number): Values {
  const v: Values = {};
  if (cur.procsRunning !== undefined && Number.isFinite(cur.procsRunning)) v.cpu_procs_running = cur.procsRunning;
  if (cur.procsBlocked !== undefined && Number.isFinite(cur.procsBlocked)) v.cpu_procs_blocked = cur.procsBlocked;
  if (prev.cpu && cur.cpu) {
    const total = cpuTotal(cur.cpu) - cpuTotal(prev.cpu);
    const idle = cur.cpu.idle - prev.cpu.idle;
    const iowait = cur.cpu.iowait - prev.cpu.iowait;
    const steal = cur.cpu.steal - prev.cpu.steal;
    if (total > 0 && idle >= 0 && iowait >= 0 && steal >= 0) {
      v.cpu_busy_ratio = clamp01((total - idle - iowait) / total);
      v.cpu_iowait_ratio = clamp01(iowait / total);
      v.cpu_steal_ratio = clamp01(steal / total);
    }
  }
  if (dtMs > 0 && prev.contextSwitches !== undefined && cur.contextSwitches !== undefined) {
    const d = delta(cur.contextSwitches, prev.contextSwitches);
    if (d !== undefined) v.cpu_context_switches_per_s = d / (dtMs / 1000);
  }
  return v;
}

function clamp01(x: number): number {
  return Math.min(1, Math.max(0, x));
}

// ---------------------------------------------------------------------------------------
// /proc/meminfo

/** Parses /proc/meminfo into bytes (lines in kB are multiplied by 1024). */
export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+(kB))?/.exec(line);
    if (m) out[m[1]!] = Number(m[2]) * (m[3] ? 1024 : 1);
  }
  return out;
}

export function memValues(mem: Record<string, number>): Values {
  const v: Values = {};
  const total = mem.MemTotal;
  const avail = mem.MemAvailable;
  if (total !== undefined && total > 0) {
    v.mem_total_bytes = total;
    if (avail !== undefined) {
      v.mem_available_bytes = avail;
      v.mem_used_ratio = clamp01(1 - avail / total);
    }
  }
  if (mem.SwapTotal !== undefined && mem.SwapFree !== undefined) v.mem_swap_used_bytes = mem.SwapTotal - mem.SwapFree;
  return v;
}

// ---------------------------------------------------------------------------------------
// /proc/net/dev

export interface NetCounters {
  rxBytes: number; rxPackets: number; rxErrs: number; rxDrop: number;
  txBytes: number; txPackets: number; txErrs: number; txDrop: number;
}

export function parseNetDev(text: string): Map<string, NetCounters> {
  const out = new Map<string, NetCounters>();
  for (const line of text.split('\n')) {
    const c = line.indexOf(':');
    if (c < 0 || line.includes('|')) continue;
    const name = line.slice(0, c).trim();
    const n = line.slice(c + 1).trim().split(/\s+/).map(Number);
    if (!name || n.length < 16 || !n.every(Number.isFinite)) continue;
    out.set(name, {
      rxBytes: n[0]!, rxPackets: n[1]!, rxErrs: n[2]!, rxDrop: n[3]!,
      txBytes: n[8]!, txPackets: n[9]!, txErrs: n[10]!, txDrop: n[11]!,
    });
  }
  return out;
}

const NET_FIELDS: [keyof NetCounters, string][] = [
  ['rxBytes', 'rx_bytes_per_s'], ['txBytes', 'tx_bytes_per_s'],
  ['rxPackets', 'rx_packets_per_s'], ['txPackets', 'tx_packets_per_s'],
  ['rxErrs', 'rx_errs_per_s'], ['txErrs', 'tx_errs_per_s'],
  ['rxDrop', 'rx_drops_per_s'], ['txDrop', 'tx_drops_per_s'],
];

/**
 * Network rates summed over every interface except `lo` (metrics `net_*`) and for `lo`
 * alone (`net_lo_*`). An interface that is only in one of the two samples (hot-plugged) is
 * left out of that interval's sum rather than counted as a jump.
 */
export function netRates(prev: Map<string, NetCounters>, cur: Map<string, NetCounters>, dtMs: number): Values {
  const v: Values = {};
  if (!(dtMs > 0)) return v;
  const s = dtMs / 1000;
  const sum = (lo: boolean) => {
    const acc: Partial<Record<keyof NetCounters, number>> = {};
    let any = false;
    for (const [name, c] of cur) {
      if ((name === 'lo') !== lo) continue;
      const p = prev.get(name);
      if (!p) continue;
      for (const [k] of NET_FIELDS) {
        const d = delta(c[k], p[k]);
        if (d === undefined) continue;
        acc[k] = (acc[k] ?? 0) + d;
      }
      any = true;
    }
    return any ? acc : undefined;
  };
  const ext = sum(false);
  const lo = sum(true);
  for (const [k, suffix] of NET_FIELDS) {
    if (ext) v[`net_${suffix}`] = (ext[k] ?? 0) / s;
    if (lo) v[`net_lo_${suffix}`] = (lo[k] ?? 0) / s;
  }
  return v;
}

// ---------------------------------------------------------------------------------------
// /proc/net/snmp

/** Parses /proc/net/snmp: pairs of lines `Proto: names…` / `Proto: values…`. */
export function parseNetSnmp(text: string): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  const lines = text.split('\n');
  for (let i = 0; i + 1 < lines.length; i++) {
    const h = lines[i]!.split(/\s+/).filter(Boolean);
    const d = lines[i + 1]!.split(/\s+/).filter(Boolean);
    if (h.length < 2 || h[0] !== d[0] || !h[0]!.endsWith(':')) continue;
    const vals = d.slice(1).map(Number);
    if (!vals.every(Number.isFinite) || vals.length !== h.length - 1) continue;
    const proto = h[0]!.slice(0, -1);
    out[proto] = Object.fromEntries(h.slice(1).map((k, j) => [k, vals[j]!]));
    i++;
  }
  return out;
}

/** TCP retransmission ratio = ΔRetransSegs / ΔOutSegs; absent when nothing was sent. */
export function tcpRates(prev: Record<string, Record<string, number>>, cur: Record<string, Record<string, number>>, dtMs: number): Values {
  const v: Values = {};
  const p = prev.Tcp;
  const c = cur.Tcp;
  if (c?.CurrEstab !== undefined) v.net_tcp_established = c.CurrEstab;
  if (!p || !c || !(dtMs > 0)) return v;
  const s = dtMs / 1000;
  const out = c.OutSegs !== undefined && p.OutSegs !== undefined ? delta(c.OutSegs, p.OutSegs) : undefined;
  const re = c.RetransSegs !== undefined && p.RetransSegs !== undefined ? delta(c.RetransSegs, p.RetransSegs) : undefined;
  const inErr = c.InErrs !== undefined && p.InErrs !== undefined ? delta(c.InErrs, p.InErrs) : undefined;
  if (out !== undefined) v.net_tcp_out_segs_per_s = out / s;
  if (re !== undefined) v.net_tcp_retrans_per_s = re / s;
  if (inErr !== undefined) v.net_tcp_in_errs_per_s = inErr / s;
  if (out !== undefined && re !== undefined && out > 0) v.net_tcp_retrans_ratio = re / out;
  return v;
}

// ---------------------------------------------------------------------------------------
// This process

export interface ProcessRaw {
  cpu: NodeJS.CpuUsage;
  mem: NodeJS.MemoryUsage;
}

export function processValues(prev: ProcessRaw | undefined, cur: ProcessRaw, dtMs: number): Values {
  const v: Values = {
    process_rss_bytes: cur.mem.rss,
    process_heap_used_bytes: cur.mem.heapUsed,
    process_heap_total_bytes: cur.mem.heapTotal,
    process_external_bytes: cur.mem.external,
  };
  if (prev && dtMs > 0) {
    const us = cur.cpu.user + cur.cpu.system - prev.cpu.user - prev.cpu.system;
    if (us >= 0) v.process_cpu_ratio = us / 1000 / dtMs;
  }
  return v;
}

// ---------------------------------------------------------------------------------------
// Sampler

export interface SamplerOptions {
  procRoot?: string;
  sysRoot?: string;
  /** Directory whose block device is reported as `disk_*`; none → no disk metrics. */
  dataDir?: string;
  /** Override the device (kernel name in /proc/diskstats, e.g. `vda`) instead of resolving dataDir. */
  diskName?: string;
  now?: () => number;
  /** Include this process's CPU and memory (default true). */
  processMetrics?: boolean;
}

interface RawSample {
  ts: number;
  disk?: DiskCounters;
  stat?: StatSample;
  net?: Map<string, NetCounters>;
  snmp?: Record<string, Record<string, number>>;
  proc?: ProcessRaw;
}

/**
 * Keeps the previous raw counters and turns each new reading into rates. The first call
 * returns only gauges (memory, in-flight I/O); rates appear from the second call on.
 */
export class Sampler {
  private prev: RawSample | undefined;
  private readonly procRoot: string;
  private readonly sysRoot: string;
  private readonly now: () => number;
  private device: BlockDevice | undefined;
  private deviceResolved = false;

  constructor(private readonly opts: SamplerOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.sysRoot = opts.sysRoot ?? '/sys';
    this.now = opts.now ?? Date.now;
  }

  /** The block device behind dataDir (resolved once, on first use). */
  blockDevice(): BlockDevice | undefined {
    if (!this.deviceResolved) {
      this.deviceResolved = true;
      if (this.opts.dataDir) this.device = resolveBlockDevice(this.opts.dataDir, { sysRoot: this.sysRoot, procRoot: this.procRoot });
    }
    return this.device;
  }

  private diskName(): string | undefined {
    return this.opts.diskName ?? this.blockDevice()?.disk;
  }

  private async read(rel: string): Promise<string | undefined> {
    try {
      return await fsp.readFile(path.join(this.procRoot, rel), 'utf8');
    } catch {
      return undefined;
    }
  }

  async sample(): Promise<{ ts: number; values: Values }> {
    const [diskstats, stat, meminfo, netdev, snmp] = await Promise.all([
      this.read('diskstats'), this.read('stat'), this.read('meminfo'), this.read('net/dev'), this.read('net/snmp'),
    ]);
    const ts = this.now();
    const cur: RawSample = { ts };
    const values: Values = {};
    const prev = this.prev;
    const dt = prev ? ts - prev.ts : 0;

    const dname = this.diskName();
    if (diskstats !== undefined && dname) cur.disk = parseDiskstats(diskstats).get(dname);
    if (cur.disk) {
      Object.assign(values, prev?.disk && prev.disk.name === cur.disk.name ? diskRates(prev.disk, cur.disk, dt) : { disk_inflight: cur.disk.inFlight });
    }
    if (stat !== undefined) {
      cur.stat = parseStat(stat);
      Object.assign(values, cpuRates(prev?.stat ?? {}, cur.stat, dt));
    }
    if (meminfo !== undefined) Object.assign(values, memValues(parseMeminfo(meminfo)));
    if (netdev !== undefined) {
      cur.net = parseNetDev(netdev);
      if (prev?.net) Object.assign(values, netRates(prev.net, cur.net, dt));
    }
    if (snmp !== undefined) {
      cur.snmp = parseNetSnmp(snmp);
      Object.assign(values, tcpRates(prev?.snmp ?? {}, cur.snmp, prev?.snmp ? dt : 0));
    }
    if (this.opts.processMetrics !== false) {
      cur.proc = { cpu: process.cpuUsage(), mem: process.memoryUsage() };
      Object.assign(values, processValues(prev?.proc, cur.proc, dt));
    }
    this.prev = cur;
    for (const [k, x] of Object.entries(values)) if (!Number.isFinite(x)) delete values[k];
    return { ts, values };
  }
}
