// Data-path benchmark: the same fio jobs (ioengine=nbd) against
//   presage-r1   `presage nbd` over a 3-server loopback cluster, a volume with 1 replica
//   presage-r2   the same, 2 replicas (every write goes primary -> secondary before the ack)
//   presage-local  the "beside a server" placement: `presage server --nbd-listen` (NBD served
//                from a storage server's own process), a 1-replica volume whose segments are all
//                on that server, so every request is handled in-process (no second process, no hop)
//   qemu-nbd     qemu-nbd serving a raw file (the reference every ratio is taken against)
//   nbdkit-mem   nbdkit's memory plugin (an upper bound: no disk, no page-cache file)
// Every target is prefilled with a sequential write before the jobs, so reads hit real data.
//
//   npx tsx bench/nbd-bench.ts [--runtime 10] [--ramp 2] [--size 1GiB] [--segment-size 64MiB]
//                              [--qemu-cache writeback|none] [--targets presage-r1,qemu-nbd,...]
//                              [--jobs 'name,name'] (a subset of the jobs, e.g. '4k randread qd32')
//                              [--cpu-prof DIR] (servers and the nbd process run with node --cpu-prof)
//                              [--save]     (writes bench/results/nbd-<date>.md, or -2, -3 … if taken)
//
// The peak resident memory (VmHWM) of each Presage process is printed after the table: the
// servers' and the nbd process's memory under the jobs is part of the result.
//
// Absolute numbers from a shared, noisy machine mean little; the ratios to qemu-nbd on the same
// machine, in the same run, are the result.

import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { parseSize } from '../src/common/size.ts';
import { freePort, REPO, spawnPresage, TestCluster, type Proc } from '../test/helpers/cluster.ts';
import { loadAverage, machineLines, processCpuMs } from './machine-info.ts';

const MiB = 1024 * 1024;

interface Job { name: string; rw: 'randread' | 'randwrite' | 'read' | 'write'; bs: string; iodepth: number }

export const JOBS: Job[] = [
  { name: '4k randread qd1', rw: 'randread', bs: '4k', iodepth: 1 },
  { name: '4k randread qd32', rw: 'randread', bs: '4k', iodepth: 32 },
  { name: '4k randwrite qd1', rw: 'randwrite', bs: '4k', iodepth: 1 },
  { name: '4k randwrite qd32', rw: 'randwrite', bs: '4k', iodepth: 32 },
  { name: '1M seqread qd8', rw: 'read', bs: '1M', iodepth: 8 },
  { name: '1M seqwrite qd8', rw: 'write', bs: '1M', iodepth: 8 },
];

const TARGETS = ['presage-r1', 'presage-r2', 'presage-local', 'qemu-nbd', 'nbdkit-mem'] as const;
type TargetName = (typeof TARGETS)[number];
const REFERENCE: TargetName = 'qemu-nbd';

export interface Result { target: string; job: string; iops: number; mbps: number; p50us: number; p99us: number }

/** CPU per I/O of each serving process during one job (µs of user + system time / I/Os done). */
interface CpuRow { target: string; job: string; perProcess: [string, number][] }

interface FioSide { iops: number; bw_bytes: number; clat_ns: { percentile?: Record<string, number> } }
interface FioJson { jobs: { error: number; read: FioSide; write: FioSide }[] }

/** Extracts IOPS, MB/s (10^6 bytes/s) and clat p50/p99 (µs) from fio's JSON for one job. */
export function parseFio(json: string, rw: Job['rw']): Omit<Result, 'target' | 'job'> {
  const doc = JSON.parse(json.slice(json.indexOf('{'))) as FioJson;
  const job = doc.jobs[0];
  if (!job) throw new Error('fio JSON has no jobs');
  if (job.error) throw new Error(`fio job failed with error ${job.error}`);
  const side = rw === 'randread' || rw === 'read' ? job.read : job.write;
  const pct = side.clat_ns.percentile ?? {};
  return {
    iops: side.iops,
    mbps: side.bw_bytes / 1e6,
    p50us: (pct['50.000000'] ?? NaN) / 1000,
    p99us: (pct['99.000000'] ?? NaN) / 1000,
  };
}

function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, timeout: opts.timeoutMs ?? 600_000, maxBuffer: 64 * MiB }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function ensureTools(tools: string[]): void {
  const missing = () => tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
  if (missing().length) spawnSync('bash', ['scripts/install-deps.sh'], { cwd: REPO, stdio: 'inherit', env: { ...process.env, PRESAGE_SKIP_BROWSER: '1' } });
  const still = missing();
  if (still.length) throw new Error(`missing after scripts/install-deps.sh: ${still.join(', ')}`);
}

/** Spawns a plain (non-presage) server and waits until its TCP port accepts connections. */
async function spawnDaemon(cmd: string, args: string[], uri: string): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${cmd} exited with ${child.exitCode}: ${stderr}`);
    const r = await run('nbdinfo', ['--size', uri], { timeoutMs: 5000 });
    if (r.code === 0) return child;
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`${cmd} not ready at ${uri}: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

async function fio(uri: string, args: string[], cwd: string): Promise<string> {
  const r = await run('fio', ['--ioengine=nbd', `--uri=${uri}`, '--output-format=json', ...args], { cwd });
  if (r.code !== 0) throw new Error(`fio ${args.join(' ')} on ${uri} failed (${r.code}): ${r.stderr}${r.stdout.slice(-1000)}`);
  return r.stdout;
}

/** A process's peak resident set (VmHWM) in MiB, from /proc; '?' where it cannot be read. */
function peakRssMiB(pid: number): string {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? (Number(m[1]) / 1024).toFixed(0) : '?';
  } catch {
    return '?';
  }
}

function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-';
  return n >= 100 || digits === 0 ? Math.round(n).toLocaleString('en-US') : n.toFixed(digits);
}

/** The results table in Markdown, with each Presage figure's ratio to the reference target's. */
export function renderTable(results: Result[], reference = REFERENCE): string {
  const ref = new Map(results.filter((r) => r.target === reference).map((r) => [r.job, r]));
  const ratio = (a: number, b: number | undefined) => (b && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '-');
  const head = ['target', 'job', 'IOPS', 'MB/s', 'p50 µs', 'p99 µs', `IOPS vs ${reference}`, `p50 vs ${reference}`, `p99 vs ${reference}`];
  const order = (r: Result) => [...new Set(results.map((x) => x.target))].indexOf(r.target) * 1000 + JOBS.findIndex((j) => j.name === r.job);
  const rows = [...results].sort((a, b) => order(a) - order(b)).map((r) => {
    const q = ref.get(r.job);
    const showRatio = r.target !== reference;
    return [r.target, r.job, fmt(r.iops), fmt(r.mbps, 1), fmt(r.p50us, 1), fmt(r.p99us, 1),
      showRatio ? ratio(r.iops, q?.iops) : '1', showRatio ? ratio(r.p50us, q?.p50us) : '1', showRatio ? ratio(r.p99us, q?.p99us) : '1'];
  });
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map((_, i) => (i < 2 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

/** One row per (target, job): µs of CPU per I/O, in total and for each serving process. */
function renderCpuTable(rows: CpuRow[]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const out = [line(['target', 'job', 'CPU µs / I/O (all)', 'by process']), line(['---', '---', '---:', '---'])];
  for (const r of rows) {
    const total = r.perProcess.reduce((a, [, v]) => a + v, 0);
    out.push(line([r.target, r.job, fmt(total, 1), r.perProcess.map(([n, v]) => `${n} ${fmt(v, 1)}`).join(', ')]));
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runtime: { type: 'string', default: '10' },
      ramp: { type: 'string', default: '2' },
      size: { type: 'string', default: '1GiB' },
      'segment-size': { type: 'string', default: '64MiB' },
      'qemu-cache': { type: 'string', default: 'writeback' },
      targets: { type: 'string', default: TARGETS.join(',') },
      save: { type: 'boolean', default: false },
      jobs: { type: 'string' },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(fs.readFileSync(new URL(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n') + '\n');
    return;
  }
  const runtime = Number(values.runtime);
  const ramp = Number(values.ramp);
  if (!(runtime > 0) || !(ramp >= 0)) throw new Error('--runtime must be > 0 and --ramp >= 0 (seconds)');
  const size = parseSize(values.size!);
  const segmentSize = parseSize(values['segment-size']!);
  const qemuCache = values['qemu-cache']!;
  if (!['writeback', 'none', 'writethrough', 'directsync', 'unsafe'].includes(qemuCache)) throw new Error(`unknown --qemu-cache ${qemuCache}`);
  const targets = values.targets!.split(',').map((t) => t.trim()) as TargetName[];
  for (const t of targets) if (!TARGETS.includes(t)) throw new Error(`unknown target "${t}" (known: ${TARGETS.join(', ')})`);

  const jobs = values.jobs ? values.jobs.split(',').map((n) => n.trim()) : JOBS.map((j) => j.name);
  for (const n of jobs) if (!JOBS.some((j) => j.name === n)) throw new Error(`unknown job "${n}" (known: ${JOBS.map((j) => j.name).join(', ')})`);
  const prof = values['cpu-prof'] ? path.resolve(values['cpu-prof']) : undefined;
  const profArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];

  ensureTools(['fio', 'qemu-nbd', 'nbdkit', 'nbdinfo']);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-nbd-bench-'));
  const results: Result[] = [];
  const cpuRows: CpuRow[] = [];
  /** The serving processes of each target, whose CPU is measured around every job. */
  const servingPids = new Map<TargetName, [string, number][]>();
  const peakRss: string[] = [];
  const started = Date.now();
  const machine = machineLines({
    tools: ['fio', 'qemu-nbd', 'nbdkit'],
    notes: ['the machine is a shared VM with other work running at the same time: absolute figures are noisy, compare ratios taken in the same run'],
  });
  let cluster: TestCluster | undefined;
  let nbd: Proc | undefined;
  const daemons: ChildProcess[] = [];
  const log = (m: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${m}\n`);
  try {
    const uris = new Map<TargetName, string>();
    if (targets.some((t) => t.startsWith('presage'))) {
      log('starting a 3-server Presage cluster on loopback');
      const localPort = await freePort();
      const withLocal = targets.includes('presage-local');
      cluster = await TestCluster.start({ servers: 3, serverNodeArgs: profArgs, serverArgs: (i) => (i === 0 && withLocal ? ['--nbd-listen', `127.0.0.1:${localPort}`] : []) });
      for (const [t, replicas] of [['presage-r1', 1], ['presage-r2', 2], ['presage-local', 1]] as const) {
        if (!targets.includes(t)) continue;
        const r = await cluster.cli(['volume', 'create', t, '--size', String(size), '--segment-size', String(segmentSize), '--replicas', String(replicas)]);
        if (r.code !== 0) throw new Error(`volume create ${t}: ${r.stderr}`);
      }
      const port = await freePort();
      nbd = await spawnPresage(['nbd', '--orchestrator', cluster.url, '--listen', `127.0.0.1:${port}`], /nbd export listening on/, {}, 30000, profArgs);
      for (const t of ['presage-r1', 'presage-r2'] as const) if (targets.includes(t)) uris.set(t, `nbd://127.0.0.1:${port}/${t}`);
      const pids: [string, number][] = [['nbd', nbd.child.pid!], ['orchestrator', cluster.orchestrator!.child.pid!], ...cluster.servers.map((s) => [`server-${s.index}`, s.proc!.child.pid!] as [string, number])];
      servingPids.set('presage-r1', pids);
      servingPids.set('presage-r2', pids);
      if (withLocal) {
        // Every segment of presage-local onto server-0, whose process serves the export.
        const api = new OrchestratorClient(cluster.url);
        const home = cluster.servers[0]!.id;
        for (const seg of await api.segments('presage-local')) if (!seg.replicas.includes(home)) await api.migrate({ segmentId: seg.segmentId, to: home });
        const t0 = Date.now();
        while ((await api.segments('presage-local')).some((x) => x.replicas.length !== 1 || x.replicas[0] !== home || (x.joining?.length ?? 0) > 0)) {
          if (Date.now() - t0 > 300_000) throw new Error('presage-local: segments did not all move to server-0 in 5 minutes');
          await new Promise((r) => setTimeout(r, 200));
        }
        log(`presage-local: every segment on ${home}, exported from its process`);
        uris.set('presage-local', `nbd://127.0.0.1:${localPort}/presage-local`);
        servingPids.set('presage-local', pids);
      }
    }
    if (targets.includes('qemu-nbd')) {
      const file = path.join(work, 'qemu.raw');
      fs.writeFileSync(file, '');
      fs.truncateSync(file, size);
      const port = await freePort();
      // -t: keep serving after a client disconnects; --shared: fio may reconnect before the old one is gone.
      const q = await spawnDaemon('qemu-nbd', ['-f', 'raw', '-x', 'bench', '-b', '127.0.0.1', '-p', String(port), '-t', '--shared=8', `--cache=${qemuCache}`, file], `nbd://127.0.0.1:${port}/bench`);
      daemons.push(q);
      servingPids.set('qemu-nbd', [['qemu-nbd', q.pid!]]);
      uris.set('qemu-nbd', `nbd://127.0.0.1:${port}/bench`);
    }
    if (targets.includes('nbdkit-mem')) {
      const port = await freePort();
      const k = await spawnDaemon('nbdkit', ['-f', '-i', '127.0.0.1', '-p', String(port), 'memory', String(size)], `nbd://127.0.0.1:${port}`);
      daemons.push(k);
      servingPids.set('nbdkit-mem', [['nbdkit', k.pid!]]);
      uris.set('nbdkit-mem', `nbd://127.0.0.1:${port}`);
    }

    for (const t of targets) {
      log(`${t}: prefilling ${size / MiB} MiB`);
      await fio(uris.get(t)!, ['--name=prefill', '--rw=write', '--bs=1M', '--iodepth=8', `--size=${size}`], work);
    }
    // Job-major order: each job runs on every target back to back, so the load that other work
    // puts on a shared machine drifts less between the figures that a ratio compares.
    for (const j of JOBS.filter((x) => jobs.includes(x.name))) {
      for (const t of targets) {
        const pids = servingPids.get(t) ?? [];
        const cpu0 = pids.map(([, pid]) => processCpuMs(pid) * 1000);
        const out = await fio(uris.get(t)!, [
          `--name=${j.name.replace(/\s+/g, '-')}`, `--rw=${j.rw}`, `--bs=${j.bs}`, `--iodepth=${j.iodepth}`, `--size=${size}`,
          '--time_based', `--runtime=${runtime}`, `--ramp_time=${ramp}`, '--randrepeat=0', '--norandommap',
        ], work);
        const cpu1 = pids.map(([, pid]) => processCpuMs(pid) * 1000);
        const r = { target: t, job: j.name, ...parseFio(out, j.rw) };
        results.push(r);
        // fio's runtime plus ramp; the ramp's I/O is not in r.iops, so this slightly overstates.
        const ios = r.iops * (runtime + ramp);
        cpuRows.push({ target: t, job: j.name, perProcess: pids.map(([name], i) => [name, (cpu1[i]! - cpu0[i]!) / ios]) });
        log(`${t} ${j.name}: ${fmt(r.iops)} IOPS, ${fmt(r.mbps, 1)} MB/s, p50 ${fmt(r.p50us, 1)} µs, p99 ${fmt(r.p99us, 1)} µs`);
      }
    }
    if (cluster) {
      const procs: [string, Proc | undefined][] = [['nbd', nbd], ['orchestrator', cluster.orchestrator], ...cluster.servers.map((s) => [`server-${s.index}`, s.proc] as [string, Proc | undefined])];
      for (const [name, p] of procs) if (p?.child.pid) peakRss.push(`${name} ${peakRssMiB(p.child.pid)} MiB`);
    }
  } finally {
    if (cluster) {
      await cluster.kill(nbd, 'SIGTERM');
      // SIGTERM first: a clean exit is when node writes a --cpu-prof profile.
      if (prof) for (const s of cluster.servers) await cluster.kill(s.proc, 'SIGTERM');
      await cluster.stop();
    }
    for (const d of daemons) await stopChild(d);
    fs.rmSync(work, { recursive: true, force: true });
  }

  const table = renderTable(results);
  const cpuTable = renderCpuTable(cpuRows);
  const rssLine = `Peak resident memory (VmHWM) of the Presage processes over the whole run: ${peakRss.join(', ')}.`;
  process.stdout.write(`\n${table}\n\n${cpuTable}\n\n${rssLine}\n`);
  if (values.save) {
    const date = new Date().toISOString().slice(0, 10);
    // Never over an earlier run's file (it may carry notes written since): nbd-<date>-2.md, -3, …
    let file = path.join(REPO, 'bench/results', `nbd-${date}.md`);
    for (let n = 2; fs.existsSync(file); n++) file = path.join(REPO, 'bench/results', `nbd-${date}-${n}.md`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const doc = [
      `# NBD data path: Presage vs qemu-nbd vs nbdkit memory (${date})`,
      '',
      `Command: \`npx tsx bench/nbd-bench.ts ${process.argv.slice(2).join(' ')}\` (total ${((Date.now() - started) / 1000).toFixed(0)} s)`,
      '',
      '## Machine',
      ...machine,
      `- load average at end: ${loadAverage()}`,
      '',
      '## Setup',
      `- fio ioengine=nbd, one job per line, ${runtime} s time_based after a ${ramp} s ramp, over the whole ${size / MiB} MiB device, prefilled by a sequential 1 MiB write first.`,
      '- presage-local: `presage server --nbd-listen` on server-0, a 1-replica volume with every segment on server-0 (moved there by migrations before the prefill): requests are answered inside that server\'s process.',
      `- presage-r1 / presage-r2: \`presage nbd\` in front of a 3-server cluster on loopback (orchestrator, servers and the nbd process all on this machine), volumes of ${size / MiB} MiB in ${segmentSize / MiB} MiB segments with 1 and 2 replicas.`,
      `- qemu-nbd: \`qemu-nbd -f raw -x bench -t --shared=8 --cache=${qemuCache}\` on a raw file on the same filesystem as the Presage servers' data.${qemuCache === 'writeback' ? ' writeback, like Presage\'s servers, leaves writes in the page cache until a flush, so the comparison is like for like.' : ''}`,
      '- nbdkit-mem: `nbdkit memory SIZE` (RAM only; an upper bound for an NBD server on this machine).',
      '- Ratios are Presage (or nbdkit) divided by qemu-nbd: IOPS above 1× is faster, latency above 1× is slower.',
      '',
      '## Results',
      table,
      '',
      '### CPU per I/O',
      'User + system CPU of each serving process during the job (from /proc/PID/stat), divided by the I/Os fio completed in the job\'s runtime + ramp (the ramp\'s I/Os are not counted, so figures are slightly high). fio\'s own CPU is not included.',
      '',
      cpuTable,
      '',
      rssLine,
      '',
    ].join('\n');
    fs.writeFileSync(file, doc);
    process.stderr.write(`saved ${path.relative(REPO, file)}\n`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  main().catch((err) => {
    process.stderr.write(`nbd-bench: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
