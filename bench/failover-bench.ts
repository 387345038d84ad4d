// Failover benchmark: what a client sees when the primary of its segments is SIGKILLed, and how
// fast the cluster restores the replication factor afterwards, next to a plain file copy.
//
//   npx tsx bench/failover-bench.ts [--trials 5] [--heartbeat-timeout 10000] [--size-mib 512]
//                                   [--segment-mib 32] [--out bench/results/failover-<date>.md | --out -]
//
// Every trial starts a fresh 4-server cluster (real processes on loopback, test/helpers/cluster.ts)
// so each one begins from the same balanced placement (re-replication only ever adds secondaries,
// so a reused cluster drifts towards one server leading everything). A trial:
//   1. creates a 2-replica volume and fills it through the client;
//   2. picks the server that is primary of the most segments (the victim) and starts a
//      closed-loop client (readers + writers, 4 KiB, no think time) on the segments it leads;
//   3. SIGKILLs the victim and records, from the kill, the first READ and the first WRITE that
//      completes among those issued after the process was seen to exit (so none of them can have
//      been served by the victim: an upper bound, by one op's service time, of the stall);
//   4. records when the orchestrator marked the victim down and failed its entries over (from its
//      log), and when the replication factor is back (polled every 50 ms); re-replication rate =
//      bytes of every segment that lost a replica / (restored − failed over);
//   5. copies a file of the same size with `cp --reflink=never` + `sync FILE` on the same
//      filesystem (the reference), then checks the data: replicas agree block by block and every
//      block of the victim's segments holds exactly its last acknowledged write;
//   6. stops the cluster and removes its directories.
//
// Every 4 KiB block is self-describing (volume offset, generation, a body derived from both), so
// a read that returns wrong, misplaced or rolled-back data fails the run instead of counting.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import type { SegmentView } from '../src/api/types.ts';
import { PresageClient, type Volume } from '../src/client/presage-client.ts';
import { Op, Status } from '../src/protocol/messages.ts';
import { REPO, TestCluster } from '../test/helpers/cluster.ts';
import { benchArgs } from './bench-args.ts';
import { loadAverage, machineLines } from './machine-info.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;
const MAGIC = 0x47535250; // "PRSG"
const VOLUME = 'failover-bench';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Self-describing blocks

function seedOf(block: number, gen: number): number {
  let h = (Math.imul(block ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(gen + 1, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 16;
  return h || 1;
}

/** Writes block `block` at generation `gen` into buf[at, at+4096). */
function fillBlock(buf: Buffer, at: number, block: number, gen: number): void {
  buf.writeBigUInt64LE(BigInt(block * BLOCK), at);
  buf.writeUInt32LE(gen, at + 8);
  buf.writeUInt32LE(MAGIC, at + 12);
  let x = seedOf(block, gen);
  for (let o = at + 16; o < at + BLOCK; o += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeUInt32LE(x >>> 0, o);
  }
}

/** The generation a block holds, or an error string when it is not a well-formed block for that place. */
function blockGen(buf: Buffer, at: number, block: number): number | string {
  const off = buf.readBigUInt64LE(at);
  if (off !== BigInt(block * BLOCK)) return `holds the stamp of offset ${off}`;
  if (buf.readUInt32LE(at + 12) !== MAGIC) return 'has no block header (zeros or garbage)';
  const gen = buf.readUInt32LE(at + 8);
  let x = seedOf(block, gen);
  for (let o = at + 16; o < at + BLOCK; o += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    if (buf.readUInt32LE(o) !== x >>> 0) return `gen ${gen} body differs at byte ${o - at}`;
  }
  return gen;
}

// ---------------------------------------------------------------------------------------------
// Closed-loop workload on a set of blocks

interface OpRecord {
  op: 'read' | 'write';
  start: number;
  end: number;
}

/** Per-block knowledge of what the volume must hold. Each block has one writer, so it is exact. */
class Model {
  readonly acked: Uint32Array;
  readonly issued: Uint32Array;
  /** Blocks whose last write failed: either generation is acceptable. */
  readonly uncertain = new Map<number, Set<number>>();
  constructor(blocks: number) {
    this.acked = new Uint32Array(blocks);
    this.issued = new Uint32Array(blocks);
  }
  accepts(block: number, gen: number): boolean {
    return gen === this.acked[block] || (this.uncertain.get(block)?.has(gen) ?? false);
  }
}

class Workload {
  readonly ops: OpRecord[] = [];
  readonly errors: string[] = [];
  private stopped = false;
  private running?: Promise<void>;

  constructor(private readonly vol: Volume, private readonly model: Model, private readonly blocks: number[], private readonly rand: () => number) {}

  start(readers: number, writers: number): void {
    const loops: Promise<void>[] = [];
    for (let r = 0; r < readers; r++) loops.push(this.readLoop());
    for (let w = 0; w < writers; w++) {
      const mine = this.blocks.filter((_, i) => i % writers === w);
      loops.push(this.writeLoop(mine));
    }
    this.running = Promise.all(loops).then(() => {});
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private pick(list: number[]): number {
    return list[Math.floor(this.rand() * list.length)];
  }

  private async readLoop(): Promise<void> {
    while (!this.stopped) {
      const block = this.pick(this.blocks);
      const floor = this.model.acked[block];
      const start = performance.now();
      let buf: Buffer;
      try {
        buf = await this.vol.read(block * BLOCK, BLOCK);
      } catch (err) {
        this.errors.push(`read block ${block}: ${(err as Error).message}`);
        continue;
      }
      this.ops.push({ op: 'read', start, end: performance.now() });
      const gen = blockGen(buf, 0, block);
      // A read may see a write still in flight, never anything older than what was acknowledged before it began.
      if (typeof gen === 'string') this.errors.push(`read block ${block}: ${gen}`);
      else if (gen < floor && !this.model.uncertain.get(block)?.has(gen)) this.errors.push(`read block ${block}: gen ${gen} but gen ${floor} was acknowledged before the read began`);
      else if (gen > this.model.issued[block]) this.errors.push(`read block ${block}: gen ${gen} was never written`);
    }
  }

  private async writeLoop(mine: number[]): Promise<void> {
    const buf = Buffer.alloc(BLOCK);
    while (!this.stopped && mine.length) {
      const block = this.pick(mine);
      const gen = ++this.model.issued[block];
      fillBlock(buf, 0, block, gen);
      const start = performance.now();
      try {
        await this.vol.write(block * BLOCK, buf);
      } catch (err) {
        this.errors.push(`write block ${block}: ${(err as Error).message}`);
        const u = this.model.uncertain.get(block) ?? new Set<number>();
        u.add(gen);
        this.model.uncertain.set(block, u);
        continue;
      }
      this.ops.push({ op: 'write', start, end: performance.now() });
      this.model.acked[block] = gen;
      this.model.uncertain.delete(block);
    }
  }

  /**
   * The completion time of the first op of that kind to complete after `after`: only among ops
   * issued after it when `issuedAfter` (none of those can have been served by a server that was
   * dead by then), or among every op, in flight at that moment included (the victim may have
   * answered one of those just before it died, so this is a lower bound).
   */
  firstCompletion(op: 'read' | 'write', after: number, issuedAfter = true): number | undefined {
    let best: number | undefined;
    for (const r of this.ops) {
      if (r.op !== op || r.end < after || (issuedAfter && r.start < after)) continue;
      if (best === undefined || r.end < best) best = r.end;
    }
    return best;
  }
}

// ---------------------------------------------------------------------------------------------
// Cluster helpers

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Every segment has its full replica count on live servers, nothing joining, no operator. */
async function fullyReplicated(api: OrchestratorClient, want: number, servers: number): Promise<SegmentView[] | false> {
  const st = await api.status();
  const up = new Set(st.servers.filter((s) => s.state === 'up').map((s) => s.id));
  if (up.size < servers) return false;
  const segs = await api.segments(VOLUME);
  const ok = st.operators.length === 0 && segs.every((s) => s.replicas.length === want && s.replicas.every((r) => up.has(r)) && !s.joining?.length && s.state === 'ok');
  return ok ? segs : false;
}

/** The orchestrator's own timestamps (pino JSON on stderr) for a log message about a server. */
function logTime(stderr: string, msg: string, server: string, after: number): number | undefined {
  for (const line of stderr.split('\n')) {
    if (!line.includes(msg) || !line.includes(server)) continue;
    try {
      const j = JSON.parse(line) as { time?: number; msg?: string; server?: string };
      if (j.msg === msg && j.server === server && typeof j.time === 'number' && j.time >= after) return j.time;
    } catch {
      // not a JSON line
    }
  }
  return undefined;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${err.trim()}`))));
  });
}

// ---------------------------------------------------------------------------------------------
// Statistics and report

/** Nearest-rank percentile: with 5 trials, p99 is the largest value. */
function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

const f0 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(0));
const f1 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(1));
const f2 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(2));

interface Trial {
  victim: string;
  affectedSegments: number;
  exitMs: number;
  readStallMs?: number;
  writeStallMs?: number;
  readStallLoMs?: number;
  writeStallLoMs?: number;
  detectMs?: number;
  failoverMs: number;
  /** Where the failover time came from: the orchestrator's log, or (log line missing) the 25 ms poll. */
  failFrom: 'log' | 'poll';
  repairBytes: number;
  repairSegments: number;
  /** Distinct servers left holding the victim's segments: every copy reads from one of them. */
  sources: number;
  repairMs: number;
  repairMBps: number;
  cpMs: number;
  cpMBps: number;
  ratio: number;
  maxOpMs: number;
  /** Reads that completed between the fault and the failover commit, per reader per second. */
  outageReadRate: number;
}


// ---------------------------------------------------------------------------------------------

const args = benchArgs('failover-bench', 'npx tsx bench/failover-bench.ts [--trials N] [--heartbeat-timeout MS] [--size-mib N] [--segment-mib N] [--readers N] [--writers N] [--fault kill|hang] [--request-timeout MS] [--out FILE|-]');
// Annotated so that a call narrows like a never-returning function declaration.
const usage: (msg?: string) => never = args.usage;
const intArg = args.intArg;

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        trials: { type: 'string' },
        'heartbeat-timeout': { type: 'string' },
        fault: { type: 'string' },
        'request-timeout': { type: 'string' },
        'size-mib': { type: 'string' },
        'segment-mib': { type: 'string' },
        readers: { type: 'string' },
        writers: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    usage((err as Error).message);
  }
  if (parsed.help) usage();
  const trials = intArg(parsed.trials, 'trials', 5, 1);
  const hbTimeout = intArg(parsed['heartbeat-timeout'], 'heartbeat-timeout', 10000, 500);
  const sizeMiB = intArg(parsed['size-mib'], 'size-mib', 512, 8);
  const segMiB = intArg(parsed['segment-mib'], 'segment-mib', 32, 1);
  const readers = intArg(parsed.readers, 'readers', 4, 1);
  const writers = intArg(parsed.writers, 'writers', 4, 1);
  // kill: SIGKILL (the kernel resets its connections, so clients notice at once). hang: SIGSTOP
  // (connections stay open and nothing answers, like a frozen host or a partition; the process is
  // SIGKILLed once the stall has been measured).
  const fault = parsed.fault ?? 'kill';
  if (fault !== 'kill' && fault !== 'hang') usage('--fault must be kill or hang');
  const requestTimeoutMs = intArg(parsed['request-timeout'], 'request-timeout', 2000, 1);
  if ((segMiB & (segMiB - 1)) !== 0) usage('--segment-mib must be a power of two');
  if (sizeMiB % segMiB !== 0) usage('--size-mib must be a multiple of --segment-mib');
  const date = new Date().toISOString().slice(0, 10);
  const out = parsed.out ?? path.join(REPO, `bench/results/failover-${date}${fault === 'hang' ? '-hang' : ''}.md`);
  const size = sizeMiB * MiB;
  const segSize = segMiB * MiB;
  const blocksPerSeg = segSize / BLOCK;
  const header = machineLines({ notes: ['the machine is shared with other engineers\' builds and tests, so it is noisy: every Presage process, the client and `cp` share its cores'] });
  const t0 = Date.now();
  const log = (s: string) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);

  const results: Trial[] = [];
  const problems: string[] = [];
  const fillSecs: number[] = [];
  let clientStats = { requests: 0, redirects: 0, retries: 0, failovers: 0 };
  let cluster: TestCluster | undefined;
  let client: PresageClient | undefined;
  const cpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-failover-cp-')); // same filesystem as the clusters
  const cleanup = async () => {
    await client?.close().catch(() => {});
    client = undefined;
    await cluster?.stop();
    cluster = undefined;
  };
  const onSignal = () => {
    void cleanup().finally(() => {
      fs.rmSync(cpDir, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 4294967296;
  };
  let cpSrc = '';
  let cpSrcSize = -1;

  try {
    for (let t = 1; t <= trials; t++) {
      // A fresh cluster per trial: every trial starts from the same balanced placement.
      log(`trial ${t}/${trials}: starting 4 servers + orchestrator (heartbeat timeout ${hbTimeout} ms)`);
      cluster = await TestCluster.start({
        servers: 4,
        heartbeatTimeoutMs: hbTimeout,
        // Scrub off: it would compete for the disk mid-measurement.
        serverArgs: () => ['--scrub-interval', '0'],
      });
      const api = new OrchestratorClient(cluster.url);
      await api.createVolume({ name: VOLUME, size, segmentSize: segSize, replicas: 2 });
      client = await PresageClient.connect({ orchestratorUrl: cluster.url, requestTimeoutMs });
      const vol = await client.openVolume(VOLUME);
      const model = new Model(size / BLOCK);

      // Fill every block at generation 0, 1 MiB per write, 8 in flight.
      const fillStart = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        const buf = Buffer.alloc(MiB);
        for (;;) {
          const off = next;
          next += MiB;
          if (off >= size) return;
          for (let o = 0; o < MiB; o += BLOCK) fillBlock(buf, o, (off + o) / BLOCK, 0);
          await vol.write(off, buf);
        }
      }));
      await vol.flush();
      fillSecs.push((performance.now() - fillStart) / 1000);

      const segs = await waitFor('all segments fully replicated', () => fullyReplicated(api, 2, 4), 60000);
      const primaries = new Map<string, number>();
      for (const s of segs) primaries.set(s.replicas[0], (primaries.get(s.replicas[0]) ?? 0) + 1);
      const victim = [...primaries.entries()].sort((a, b) => b[1] - a[1])[0][0];
      const affected = segs.filter((s) => s.replicas[0] === victim);
      const lost = segs.filter((s) => s.replicas.includes(victim));
      const repairBytes = lost.length * segSize;
      const blocks: number[] = [];
      for (const s of affected) {
        const idx = Number(s.segmentId.slice(s.segmentId.lastIndexOf('/') + 1));
        for (let b = 0; b < blocksPerSeg; b++) blocks.push(idx * blocksPerSeg + b);
      }
      log(`  filled ${sizeMiB} MiB in ${fillSecs[fillSecs.length - 1].toFixed(1)} s; victim ${victim} leads ${affected.length} and holds ${lost.length} of ${segs.length} segments`);

      const wl = new Workload(vol, model, blocks, rand);
      wl.start(readers, writers);
      await sleep(1000); // warm: connections open, steady state

      const handle = cluster.serverById(victim);
      const killWall = Date.now();
      const tKill = performance.now();
      if (fault === 'kill') await cluster.killServer(handle.index, 'SIGKILL');
      else handle.proc!.child.kill('SIGSTOP');
      // A stopped process answers nothing more from the moment the signal lands.
      const tExit = fault === 'kill' ? performance.now() : tKill;

      // Failover: the orchestrator's log says when it marked the victim down and moved its entries.
      // The poll may see the new SMT before this process has read the log line from the pipe, so
      // after the poll wins, give the log a moment and prefer its timestamp.
      const orch = cluster.orchestrator!;
      const failedOverLog = () => logTime(orch.stderr, 'failed over: entries updated', victim, killWall);
      let failWall = await waitFor('failover', async () => failedOverLog()
        ?? ((await api.segments(VOLUME)).every((s) => !s.replicas.includes(victim)) ? Date.now() : undefined), hbTimeout * 4 + 30000, 25);
      let failFrom: 'log' | 'poll' = 'log';
      if (failedOverLog() === undefined) {
        await sleep(500);
        const fromLog = failedOverLog();
        if (fromLog !== undefined) failWall = fromLog;
        else failFrom = 'poll';
      }
      const detectWall = logTime(orch.stderr, 'marking server down', victim, killWall);
      const tFailover = tKill + (failWall - killWall);

      // The client's stall: the first read and write issued after the victim was gone to complete.
      await waitFor('the first read and write after the kill', async () => wl.firstCompletion('read', tExit) !== undefined && wl.firstCompletion('write', tExit) !== undefined, 60000, 20)
        .catch((err) => problems.push(`trial ${t}: ${(err as Error).message}`));
      await sleep(300);
      await wl.stop();
      const firstRead = wl.firstCompletion('read', tExit);
      const firstWrite = wl.firstCompletion('write', tExit);
      const during = wl.ops.filter((o) => o.end >= tKill);
      const maxOpMs = Math.max(0, ...during.map((o) => o.end - o.start));
      if (fault === 'hang') await cluster.killServer(handle.index, 'SIGKILL');

      // Re-replication: until every segment has 2 replicas again on the 3 survivors.
      const restored = await waitFor('replication factor restored', () => fullyReplicated(api, 2, 3), 300000, 50);
      const tRestored = performance.now();
      const repairMs = tRestored - tFailover;

      // Reference: the same bytes with cp on the same filesystem, made durable.
      if (cpSrcSize !== repairBytes) {
        if (cpSrc) fs.rmSync(cpSrc, { force: true });
        cpSrc = path.join(cpDir, `src-${repairBytes}`);
        const fd = fs.openSync(cpSrc, 'w');
        const chunk = Buffer.alloc(MiB);
        for (let o = 0; o < repairBytes; o += MiB) {
          for (let b = 0; b < MiB; b += BLOCK) fillBlock(chunk, b, (o + b) / BLOCK, 7);
          fs.writeSync(fd, chunk, 0, Math.min(MiB, repairBytes - o));
        }
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        cpSrcSize = repairBytes;
      }
      const dst = path.join(cpDir, `dst-${t}`);
      const cpStart = performance.now();
      await run('cp', ['--reflink=never', cpSrc, dst]);
      await run('sync', [dst]);
      const cpMs = performance.now() - cpStart;
      if (fs.statSync(dst).size !== repairBytes) problems.push(`trial ${t}: cp produced a file of the wrong size`);
      fs.rmSync(dst, { force: true });

      const sinceKill = (at: number | undefined) => (at === undefined ? undefined : at - tKill);
      const repairMBps = repairBytes / 1e6 / (repairMs / 1000);
      const cpMBps = repairBytes / 1e6 / (cpMs / 1000);
      const trial: Trial = {
        victim,
        affectedSegments: affected.length,
        exitMs: tExit - tKill,
        readStallMs: sinceKill(firstRead),
        writeStallMs: sinceKill(firstWrite),
        readStallLoMs: sinceKill(wl.firstCompletion('read', tExit, false)),
        writeStallLoMs: sinceKill(wl.firstCompletion('write', tExit, false)),
        detectMs: detectWall === undefined ? undefined : detectWall - killWall,
        failoverMs: failWall - killWall,
        failFrom,
        repairBytes,
        repairSegments: lost.length,
        sources: new Set(lost.flatMap((x) => x.replicas.filter((r) => r !== victim))).size,
        repairMs,
        repairMBps,
        cpMs,
        cpMBps,
        ratio: repairMBps / cpMBps,
        maxOpMs,
        outageReadRate: wl.ops.filter((o) => o.op === 'read' && o.end >= tKill && o.end < tFailover).length / readers / Math.max(0.001, (tFailover - tKill) / 1000),
      };
      results.push(trial);
      log(`  read stall ${f0(trial.readStallMs)} ms, write stall ${f0(trial.writeStallMs)} ms, failover at ${f0(trial.failoverMs)} ms; ` +
        `re-replicated ${repairBytes / MiB} MiB in ${(repairMs / 1000).toFixed(2)} s (${f1(repairMBps)} MB/s) vs cp ${f1(cpMBps)} MB/s`);

      // Data checks: the application saw no error; replicas agree; every block of the victim's
      // segments holds exactly its last acknowledged generation.
      for (const e of wl.errors.slice(0, 5)) problems.push(`trial ${t}: ${e}`);
      if (wl.errors.length > 5) problems.push(`trial ${t}: … ${wl.errors.length - 5} more errors`);
      for (const s of restored.filter((x) => lost.some((l) => l.segmentId === x.segmentId))) {
        const sums = await Promise.all(s.replicas.map(async (id) => {
          const res = await client!.pool.get(client!.view.servers.get(id)!.dataAddr).send({ op: Op.CHECKSUMS, flags: 0, epoch: s.epoch, segmentId: s.segmentId, offset: 0, length: segSize, payload: Buffer.alloc(0) });
          return res.status === Status.OK ? res.payload.toString('hex') : `status ${res.status}`;
        }));
        if (new Set(sums).size !== 1) problems.push(`trial ${t}: replicas of ${s.segmentId} differ (${s.replicas.join(', ')})`);
      }
      for (const s of affected) {
        const idx = Number(s.segmentId.slice(s.segmentId.lastIndexOf('/') + 1));
        for (let off = 0; off < segSize; off += 4 * MiB) {
          const base = idx * segSize + off;
          const buf = await vol.read(base, 4 * MiB);
          for (let o = 0; o < buf.length; o += BLOCK) {
            const block = (base + o) / BLOCK;
            const gen = blockGen(buf, o, block);
            if (typeof gen === 'string' || !model.accepts(block, gen)) {
              problems.push(`trial ${t}: block ${block} ${typeof gen === 'string' ? gen : `holds gen ${gen}, expected ${model.acked[block]}`}`);
              break;
            }
          }
        }
      }

      clientStats = { ...client.stats };
      await cleanup();
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
    fs.rmSync(cpDir, { recursive: true, force: true });
  }

  // Report.
  const col = (f: (t: Trial) => number | undefined) => results.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
  const summary = (name: string, unit: string, v: number[], fmt: (n: number) => string) =>
    `| ${name} | ${unit} | ${fmt(pct(v, 50))} | ${fmt(pct(v, 99))} | ${fmt(Math.max(...v))} | ${fmt(Math.min(...v))} |`;
  const lines: string[] = [];
  lines.push(`# Failover benchmark (${fault === "kill" ? "SIGKILL" : "hang"}), ${date}`, '', 'Machine:', '', ...header, `- load average at end: ${loadAverage()}`, '');
  lines.push(
    `Setup: orchestrator + 4 storage servers on loopback (real processes), fault **${fault === 'kill' ? 'SIGKILL' : 'hang (SIGSTOP, SIGKILL after the stall is measured)'}**, heartbeat timeout **${hbTimeout} ms** ` +
    `(client request timeout ${requestTimeoutMs} ms) ` +
    `(servers heartbeat every ${Math.max(100, Math.min(1000, Math.floor(hbTimeout / 5)))} ms), default copy limits (2 copies per server, no bandwidth cap); ` +
    `volume ${sizeMiB} MiB, ${segMiB} MiB segments, 2 replicas; ` +
    `${trials} trials, each on a fresh cluster with the volume filled first (fill p50 ${f1(pct(fillSecs, 50))} s, ${f1(size / 1e6 / pct(fillSecs, 50))} MB/s through the client); the victim is the server that leads the most segments; closed loop of ${readers} readers + ${writers} writers, 4 KiB, on the segments whose primary is the victim. ` +
    `Stall = SIGKILL → first completion of an op issued after the victim was seen to exit (none of those can have been served by it; an upper bound by one op's service time); ` +
    `the per-trial lower bound in parentheses also counts ops in flight at the fault (one of those may have been answered by the victim just before the signal landed, so it can read near 0). Re-replication = orchestrator's failover commit → replication factor restored (polled every 50 ms), over every segment that lost a replica; ` +
    `reference = \`cp --reflink=never\` of a file of the same size + \`sync FILE\`, same filesystem.`,
    '',
  );
  lines.push('| metric | unit | p50 | p99 | max | min |', '|---|---|---:|---:|---:|---:|');
  const sig = fault === 'kill' ? 'SIGKILL' : 'SIGSTOP';
  lines.push(summary(`**first READ after ${sig}**`, 'ms', col((t) => t.readStallMs), f0));
  lines.push(summary(`**first WRITE after ${sig}**`, 'ms', col((t) => t.writeStallMs), f0));
  lines.push(summary('reads completed per reader until failover', 'reads/s', col((t) => t.outageReadRate), f1));
  lines.push(summary('marked down (orchestrator)', 'ms', col((t) => t.detectMs), f0));
  lines.push(summary('entries failed over (orchestrator)', 'ms', col((t) => t.failoverMs), f0));
  lines.push(summary('re-replication time', 's', col((t) => t.repairMs / 1000), f2));
  lines.push(summary('re-replication throughput', 'MB/s', col((t) => t.repairMBps), f1));
  lines.push(summary('cp + sync throughput (same bytes)', 'MB/s', col((t) => t.cpMBps), f1));
  lines.push(summary('re-replication / cp', 'ratio', col((t) => t.ratio), f2));
  lines.push('', `p99 is nearest-rank over ${results.length} trial(s): with fewer than 100 trials it is the largest value. MB = 10^6 bytes.`, '');
  lines.push('Per trial:', '');
  lines.push('| # | victim | segs led | exited ms | first read ms (lower) | first write ms (lower) | down ms | failed over ms | reads/s/reader until failover | max op ms | re-replicated MiB | sources | time s | MB/s | cp MB/s | ratio |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  results.forEach((r, i) => lines.push(
    `| ${i + 1} | ${r.victim.slice(0, 12)} | ${r.affectedSegments} | ${f0(r.exitMs)} | ${f0(r.readStallMs)} (${f0(r.readStallLoMs)}) | ${f0(r.writeStallMs)} (${f0(r.writeStallLoMs)}) | ${f0(r.detectMs)} | ${f0(r.failoverMs)}${r.failFrom === 'poll' ? ' (poll)' : ''} | ${f1(r.outageReadRate)} | ${f0(r.maxOpMs)} | ${r.repairBytes / MiB} | ${r.sources} | ${f2(r.repairMs / 1000)} | ${f1(r.repairMBps)} | ${f1(r.cpMBps)} | ${f2(r.ratio)} |`,
  ));
  lines.push('', `Data checks: ${problems.length === 0 ? 'passed — no I/O error reached the client, every read was well-formed and never older than an acknowledged write, replicas of every re-replicated segment agree block by block, and every block of the victim\'s segments holds its last acknowledged write.' : 'FAILED:'}`);
  for (const p of problems) lines.push(`- ${p}`);
  const cmd = ['npx tsx bench/failover-bench.ts', ...process.argv.slice(2)].join(' ');
  lines.push('', `Client stats (last trial): ${JSON.stringify(clientStats)}`, '', `Command: \`${cmd}\``, '');
  const text = lines.join('\n');
  console.log(text);
  if (out !== '-') {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, text);
    log(`wrote ${path.relative(process.cwd(), out)}`);
  }
  if (problems.length) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
});
