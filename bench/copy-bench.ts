// Copy-engine benchmark: how fast a drain empties a server, next to `cp` + sync of the same bytes.
//
//   npx tsx bench/copy-bench.ts [--size-mib 768] [--segment-mib 32] [--replicas 1] [--trials 3]
//                               [--max-copies 2] [--cpu-prof DIR] [--timeline] [--load]
//                               [--out bench/results/copy-<date>.md | --out -]
//
// A trial starts a fresh cluster (orchestrator + 3 storage servers, real processes on loopback,
// scrub off), creates a volume, fills it through the client with self-describing 4 KiB blocks,
// picks the server holding the most segments and drains it (POST /v1/servers/:id/drain, the same
// path a predictive drain takes: operators → join → verified copy → commit). Drain time = the
// drain call → the orchestrator's view shows the server holding nothing; throughput = the bytes
// of the segments it held / drain time. The reference copies a file of the same size with
// `cp --reflink=never` and `sync FILE` on the same filesystem, in the same run. Afterwards every
// byte of the volume is read back through the client and compared with what was written.
// --cpu-prof DIR: the servers run with node --cpu-prof into DIR (profiles written at shutdown),
// for the profile-before-optimising step; --timeline prints, per segment, when its operator was
// proposed, started and committed (from the decision log).
// --load: a client workload runs on the volume (4 KiB random reads and writes, 4 in flight, every
// read checked) for 5 s before the drain and all through it; the table adds its p99 latency
// without and during the drain and their ratio (issue #15's goal: <= 2x, drain unthrottled).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { REPO, TestCluster } from '../test/helpers/cluster.ts';
import { benchArgs } from './bench-args.ts';
import { loadAverage, machineLines, processCpuMs } from './machine-info.ts';

const MiB = 1024 * 1024;
const BLOCK = 4096;
const VOLUME = 'copybench';

const args = benchArgs('copy-bench', 'npx tsx bench/copy-bench.ts [--size-mib N] [--segment-mib N] [--replicas 1|2] [--trials N] [--max-copies N] [--cpu-prof DIR] [--timeline] [--load] [--out FILE|-]');
// Annotated so that a call narrows like a never-returning function declaration.
const usage: (msg?: string) => never = args.usage;
const intArg = args.intArg;

/** Block b of the volume: its index in every u32 and a byte derived from it (misplaced or stale data fails the check). */
function fillBlock(buf: Buffer, at: number, block: number): void {
  for (let o = 0; o < BLOCK; o += 4) buf.writeUInt32LE((block * 2654435761 + o) >>> 0, at + o);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'ignore' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

interface Trial {
  segments: number; bytes: number; drainS: number; drainMBs: number; cpMBs: number; ratio: number;
  /** With --load: the workload's p99 (ms) before and during the drain, and the ops done in each. */
  load?: { p99Before: number; p99During: number; opsBefore: number; opsDuring: number };
  /** CPU (user + system) of the servers, the orchestrator and this process (client) during the drain, in cores. */
  cores: { servers: number; orchestrator: number; client: number };
}

/**
 * The --load workload: 4 KiB random reads and writes (half each), `depth` in flight, over the
 * whole volume. Writes store the block's own pattern again, so the data check after the drain
 * still holds; every read is compared with the pattern. Latencies (ms) go to `sink()`'s current
 * array, so the caller can split them into phases.
 */
function startLoad(vol: { read(o: number, n: number): Promise<Buffer>; write(o: number, d: Buffer): Promise<void> }, size: number, depth: number, sink: () => number[]): { stop(): Promise<void> } {
  let running = true;
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const blocks = size / BLOCK;
  const workers = Array.from({ length: depth }, async () => {
    const buf = Buffer.alloc(BLOCK);
    const want = Buffer.alloc(BLOCK);
    while (running) {
      const b = Math.floor(rnd() * blocks);
      const t = performance.now();
      if (rnd() < 0.5) {
        const got = await vol.read(b * BLOCK, BLOCK);
        fillBlock(want, 0, b);
        if (!got.equals(want)) throw new Error(`load: block ${b} read back wrong during the drain`);
      } else {
        fillBlock(buf, 0, b);
        await vol.write(b * BLOCK, buf);
      }
      sink().push(performance.now() - t);
    }
  });
  return { stop: async () => { running = false; await Promise.all(workers); } };
}

function p99(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string' }, 'segment-mib': { type: 'string' }, replicas: { type: 'string' },
      trials: { type: 'string' }, 'cpu-prof': { type: 'string' }, timeline: { type: 'boolean' }, load: { type: 'boolean' }, 'max-copies': { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) usage();
  const sizeMiB = intArg(values['size-mib'], 'size-mib', 768, 1);
  const segMiB = intArg(values['segment-mib'], 'segment-mib', 32, 1);
  const replicas = intArg(values.replicas, 'replicas', 1, 1);
  const trials = intArg(values.trials, 'trials', 3, 1);
  // Copies one server takes part in at once (the orchestrator's --max-copies-per-server and each
  // server's --max-copies); 2 is the default of both.
  const maxCopies = intArg(values['max-copies'], 'max-copies', 2, 1);
  if (replicas > 2) usage('--replicas must be 1 or 2 (3 servers, one drained)');
  if (sizeMiB % segMiB !== 0) usage('--size-mib must be a multiple of --segment-mib');
  const timeline = values.timeline === true;
  const withLoad = values.load === true;
  const prof = values['cpu-prof'] ? path.resolve(values['cpu-prof']) : undefined;
  if (prof) fs.mkdirSync(prof, { recursive: true });
  const date = new Date().toISOString().slice(0, 10);
  const out = values.out ?? path.join(REPO, `bench/results/copy-${date}.md`);
  const size = sizeMiB * MiB;
  const header = machineLines({ notes: ['the machine is shared with other engineers\' builds and tests, so it is noisy: every Presage process, the client and `cp` share its cores'] });
  const t0 = Date.now();
  const log = (s: string) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);
  const cpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-copy-cp-'));
  const results: Trial[] = [];
  let cluster: TestCluster | undefined;
  let client: PresageClient | undefined;
  try {
    const cpSrc = path.join(cpDir, 'src');
    await run('dd', ['if=/dev/urandom', `of=${cpSrc}`, 'bs=1M', `count=${sizeMiB}`, 'status=none']);
    for (let t = 1; t <= trials; t++) {
      log(`trial ${t}/${trials}: 3 servers + orchestrator`);
      cluster = await TestCluster.start({
        servers: 3,
        serverArgs: () => ['--scrub-interval', '0', '--max-copies', String(maxCopies)],
        orchestratorArgs: ['--max-copies-per-server', String(maxCopies)],
        serverNodeArgs: prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [],
      });
      const api = new OrchestratorClient(cluster.url);
      await api.createVolume({ name: VOLUME, size, segmentSize: segMiB * MiB, replicas });
      client = await PresageClient.connect({ orchestratorUrl: cluster.url });
      const vol = await client.openVolume(VOLUME);
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        const buf = Buffer.alloc(MiB);
        for (;;) {
          const off = next;
          next += MiB;
          if (off >= size) return;
          for (let o = 0; o < MiB; o += BLOCK) fillBlock(buf, o, (off + o) / BLOCK);
          await vol.write(off, buf);
        }
      }));
      await vol.flush();
      const segs = await api.segments(VOLUME);
      const held = new Map<string, number>();
      for (const s of segs) for (const r of s.replicas) held.set(r, (held.get(r) ?? 0) + 1);
      const [victim, count] = [...held.entries()].sort((a, b) => b[1] - a[1])[0]!;
      const bytes = count * segMiB * MiB;
      log(`  filled ${sizeMiB} MiB; draining ${victim} (${count} of ${segs.length} segments, ${bytes / MiB} MiB)`);
      let phase: number[] = [];
      const before = phase;
      const load = withLoad ? startLoad(vol, size, 4, () => phase) : undefined;
      if (load) await new Promise((r) => setTimeout(r, 5000));
      const during: number[] = [];
      phase = during;
      const serverPids = cluster.servers.map((x) => x.proc?.child.pid);
      const cpu0 = { servers: serverPids.reduce<number>((a, p) => a + (processCpuMs(p) || 0), 0), orchestrator: processCpuMs(cluster.orchestrator?.child.pid), client: processCpuMs(process.pid) };
      const d0 = performance.now();
      await api.drain(victim, 'copy benchmark');
      for (;;) {
        const now = await api.segments(VOLUME);
        if (!now.some((s) => s.replicas.includes(victim) || s.joining?.includes(victim))) break;
        if (performance.now() - d0 > 600_000) throw new Error('the drain did not finish in 10 minutes');
        await new Promise((r) => setTimeout(r, 20));
      }
      const drainS = (performance.now() - d0) / 1000;
      const cores = {
        servers: (serverPids.reduce<number>((a, p) => a + (processCpuMs(p) || 0), 0) - cpu0.servers) / 1000 / drainS,
        orchestrator: (processCpuMs(cluster.orchestrator?.child.pid) - cpu0.orchestrator) / 1000 / drainS,
        client: (processCpuMs(process.pid) - cpu0.client) / 1000 / drainS,
      };
      log(`  CPU during the drain (cores of ${os.cpus().length}): servers ${cores.servers.toFixed(2)}, orchestrator ${cores.orchestrator.toFixed(2)}, client/bench ${cores.client.toFixed(2)}`);
      await load?.stop();
      if (load) log(`  load: p99 ${p99(before).toFixed(2)} ms before (${before.length} ops), ${p99(during).toFixed(2)} ms during the drain (${during.length} ops)`);
      if (timeline) {
        // Where the time went, per segment: the decision log's proposed → started (joined) → committed.
        const wall0 = Date.now() - drainS * 1000;
        const per = new Map<string, Record<string, number>>();
        for (const e of await api.events(0)) {
          if (!e.segmentId || Date.parse(e.at) < wall0 - 1000) continue;
          const r = per.get(e.segmentId) ?? {};
          r[e.type] ??= (Date.parse(e.at) - wall0) / 1000;
          per.set(e.segmentId, r);
        }
        // ... and inside each copy (the target's copy-job phases).
        const phases = new Map<string, string>();
        for (const s of cluster.servers) {
          const jobs = await fetch(`http://127.0.0.1:${s.adminPort}/v1/copy-jobs`).then((r) => r.json() as Promise<{ segmentId: string; phaseMs?: Record<string, number> }[]>);
          for (const j of jobs) if (j.phaseMs) phases.set(j.segmentId, Object.entries(j.phaseMs).map(([k, v]) => `${k} ${v}`).join(' '));
        }
        for (const [seg, r] of [...per].sort((a, b) => (a[1].started ?? 0) - (b[1].started ?? 0))) {
          log(`    ${seg}: ${Object.entries(r).map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ')}; copy ms: ${phases.get(seg) ?? '?'}`);
        }
      }
      // Every byte back, compared with what was written.
      const want = Buffer.alloc(MiB);
      for (let off = 0; off < size; off += MiB) {
        const got = await vol.read(off, MiB);
        for (let o = 0; o < MiB; o += BLOCK) fillBlock(want, o, (off + o) / BLOCK);
        if (!got.equals(want)) throw new Error(`data check failed in the MiB at ${off}`);
      }
      // The reference: the same number of bytes, cp + sync, same filesystem.
      const dst = path.join(cpDir, 'dst');
      fs.rmSync(dst, { force: true });
      await run('sync', []);
      const c0 = performance.now();
      await run('cp', ['--reflink=never', cpSrc, dst]);
      await run('sync', [dst]);
      const cpMBs = size / 1e6 / ((performance.now() - c0) / 1000);
      const drainMBs = bytes / 1e6 / drainS;
      results.push({
        segments: count, bytes, drainS, drainMBs, cpMBs, ratio: drainMBs / cpMBs, cores,
        load: load ? { p99Before: p99(before), p99During: p99(during), opsBefore: before.length, opsDuring: during.length } : undefined,
      });
      log(`  drain ${drainS.toFixed(2)} s = ${drainMBs.toFixed(1)} MB/s; cp + sync ${cpMBs.toFixed(1)} MB/s; ratio ${(drainMBs / cpMBs).toFixed(3)}; data verified`);
      await client.close();
      client = undefined;
      // SIGTERM first: a clean exit is when node writes a --cpu-prof profile.
      if (prof) await Promise.all(cluster.servers.map((_, i) => cluster!.killServer(i, 'SIGTERM')));
      await cluster.stop();
      cluster = undefined;
    }
  } finally {
    await client?.close().catch(() => {});
    await cluster?.stop();
    fs.rmSync(cpDir, { recursive: true, force: true });
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const lines = [
    `# Copy benchmark (drain), ${date}`,
    '',
    'Machine:',
    '',
    ...header,
    `- load average at end: ${loadAverage()}`,
    '',
    `Setup: orchestrator + 3 storage servers on loopback (real processes, scrub off, ${maxCopies} copies per server at once); volume ${sizeMiB} MiB, ${segMiB} MiB segments, ${replicas} replica(s), filled through the client; the server holding the most segments is drained (operators: join → verified copy → commit). Drain time = drain call → no segment lists it; reference = \`cp --reflink=never\` + \`sync FILE\` of ${sizeMiB} MiB on the same filesystem, in the same trial. Every byte read back through the client and compared after each drain.${prof ? ' Servers ran with --cpu-prof (slower).' : ''}`,
    '',
    ...(withLoad ? ['With --load: a client runs 4 KiB random reads and writes (4 in flight, reads checked) for 5 s before the drain and all through it; p99 is of its operations in each phase.', ''] : []),
    `| trial | segments drained | MiB | drain s | drain MB/s | cp + sync MB/s | drain / cp | CPU cores in use during the drain (servers + orchestrator + client) |${withLoad ? ' load p99 ms, no drain | load p99 ms, drain | p99 ratio |' : ''}`,
    `|---:|---:|---:|---:|---:|---:|---:|---:|${withLoad ? '---:|---:|---:|' : ''}`,
    ...results.map((r, i) => `| ${i + 1} | ${r.segments} | ${r.bytes / MiB} | ${r.drainS.toFixed(2)} | ${r.drainMBs.toFixed(1)} | ${r.cpMBs.toFixed(1)} | ${r.ratio.toFixed(3)} | ${(r.cores.servers + r.cores.orchestrator + r.cores.client).toFixed(2)} (${r.cores.servers.toFixed(2)} + ${r.cores.orchestrator.toFixed(2)} + ${r.cores.client.toFixed(2)}) |${r.load ? ` ${r.load.p99Before.toFixed(2)} (${r.load.opsBefore} ops) | ${r.load.p99During.toFixed(2)} (${r.load.opsDuring} ops) | ${(r.load.p99During / r.load.p99Before).toFixed(2)} |` : ''}`),
    `| **median** | | | ${med(results.map((r) => r.drainS)).toFixed(2)} | ${med(results.map((r) => r.drainMBs)).toFixed(1)} | ${med(results.map((r) => r.cpMBs)).toFixed(1)} | **${med(results.map((r) => r.ratio)).toFixed(3)}** | ${med(results.map((r) => r.cores.servers + r.cores.orchestrator + r.cores.client)).toFixed(2)} |${withLoad ? ` ${med(results.map((r) => r.load!.p99Before)).toFixed(2)} | ${med(results.map((r) => r.load!.p99During)).toFixed(2)} | **${med(results.map((r) => r.load!.p99During / r.load!.p99Before)).toFixed(2)}** |` : ''}`,
    '',
    `Command: \`npx tsx bench/copy-bench.ts ${process.argv.slice(2).join(' ')}\`. MB = 10^6 bytes.`,
    '',
  ];
  const text = lines.join('\n');
  if (out === '-') console.log(text);
  else {
    fs.writeFileSync(out, text);
    console.log(text);
    log(`wrote ${out}`);
  }
}

main().catch((err) => {
  console.error(`copy-bench: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
