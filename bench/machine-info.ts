// The machine a benchmark ran on, described the same way in every result file: numbers from a
// shared VM only mean something next to its CPU, core count, memory and load.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

export interface MachineInfo {
  /** ISO time the description was taken. */
  date: string;
  platform: string;
  kernel: string;
  node: string;
  cpuModel: string;
  /** Logical cores the OS shows. */
  logicalCores: number;
  /** Cores this process may use (cgroup / affinity aware). */
  nproc: number;
  memTotalGiB: number;
  memFreeGiB: number;
  /** 1, 5 and 15 minute load averages. */
  loadavg: number[];
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    platform: os.platform(),
    kernel: os.release(),
    node: process.version,
    cpuModel: cpus[0]?.model.trim() || 'unknown CPU',
    logicalCores: cpus.length,
    nproc: os.availableParallelism(),
    memTotalGiB: os.totalmem() / 2 ** 30,
    memFreeGiB: os.freemem() / 2 ** 30,
    loadavg: os.loadavg(),
  };
}

/** The load averages now, e.g. `1.52 1.31 1.20`: for the "at end" line next to the header's "at start". */
export function loadAverage(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(' ');
}

/** First line of `cmd --version` (or of `args`); says so when the tool is missing rather than throwing. */
export function toolVersion(cmd: string, args: string[] = ['--version']): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return `${cmd}: not available`;
  return (r.stdout || r.stderr).split('\n')[0]!.trim() || `${cmd}: no version printed`;
}

/**
 * The machine as Markdown list items, taken now (call it when the run starts: the load line says
 * "at start"). `tools`: commands whose version to list; `notes`: extra items, e.g. what shares the
 * machine.
 */
export function machineLines(opts: { tools?: string[]; notes?: string[] } = {}, m: MachineInfo = machineInfo()): string[] {
  return [
    `- date: ${m.date}`,
    `- host: ${m.platform} ${m.kernel}, node ${m.node}`,
    `- CPU: ${m.cpuModel}; nproc ${m.nproc} of ${m.logicalCores} logical cores`,
    `- memory: ${m.memTotalGiB.toFixed(1)} GiB total, ${m.memFreeGiB.toFixed(1)} GiB free at start`,
    `- load average at start: ${m.loadavg.map((l) => l.toFixed(2)).join(' ')}`,
    ...(opts.tools?.length ? [`- tools: ${opts.tools.map((t) => toolVersion(t)).join('; ')}`] : []),
    ...(opts.notes ?? []).map((n) => `- ${n}`),
  ];
}

/** The machine in one line, for a single "machine:" item or log line. */
export function machineSummary(m: MachineInfo = machineInfo()): string {
  return `${m.cpuModel}, nproc ${m.nproc} of ${m.logicalCores} logical cores, ${m.memTotalGiB.toFixed(1)} GiB RAM, `
    + `${m.platform} ${m.kernel}, node ${m.node}, load average ${m.loadavg.map((l) => l.toFixed(2)).join(' ')}`;
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

/**
 * CPU time (user + system, ms, all threads) a process has used so far, from /proc/PID/stat
 * (fields 14 and 15); NaN when it cannot be read (no such process, not Linux).
 */
export function processCpuMs(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) / CLOCK_TICKS) * 1000;
  } catch {
    return NaN;
  }
}
