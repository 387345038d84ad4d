// Predictive drain against reactive failover, side by side (issue #8): the same degradation and the
// same SIGKILL, once with the orchestrator draining the degrading server before it dies, once with
// prediction off so only reactive failover + re-replication can help.
//
//   npx tsx bench/predictive-vs-reactive.ts [--trials 1] [--warmup 15] [--tail 3] [--failure crash|hang]
//                                           [--out bench/results/predictive-vs-reactive-<date>.md | --out -]
//
// Each run is test/helpers/degrade-scenario.ts on a fresh cluster (5 real server processes on
// loopback scoring themselves on a compressed clock, 3 volumes of different criticality with hot
// regions, a verifying workload through the client). Trials alternate A, B, A, B, …:
//   A (predictive): warm-up, ramping slow-I/O fault on the victim, wait until the orchestrator has
//     drained it (nothing left on it, no migration running), SIGKILL it, wait until the
//     orchestrator has marked it down and every segment has 2 live replicas, then a short tail.
//   B (reactive, --no-predictive): the same, except that after the fault it waits exactly as long
//     as A's fault → kill took (both see the degradation equally long), then SIGKILL.
// Everything is derived from what the scenario records: per-op client latencies (completion time
// and duration), the decision log, the orchestrator's degraded-segment count every 200 ms, and the
// Failure Scores every 1 s. --failure hang replaces the SIGKILL by a SIGSTOP: the victim's port
// still accepts connections but nothing answers (a frozen host, one cut off behind the network),
// so reactive failover cannot use the connection-refused shortcut and waits for the heartbeat
// timeout. The report goes to predictive-vs-reactive-<date>-hang.md then.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Decision } from '../src/orchestrator/decision-log.ts';
import { REPO } from '../test/helpers/cluster.ts';
import { DegradeScenario } from '../test/helpers/degrade-scenario.ts';
import { sleep } from '../test/helpers/settle.ts';
import { loadAverage, machineLines } from './machine-info.ts';

type Mode = 'predictive' | 'reactive';

interface WindowStats {
  ops: number;
  opsPerSec: number;
  p50: number;
  p99: number;
  max: number;
}

interface RunResult {
  mode: Mode;
  trial: number;
  victim: string;
  /** Segments the victim held when the fault started, and still held (replica or joining) at the kill. */
  victimSegments: number;
  onVictimAtKill: number;
  before: WindowStats;
  degradation: WindowStats;
  failure: WindowStats;
  /** Longest time with no client op completing, any volume / on one volume, from 2 s before the kill to the end. */
  stallMs: number;
  stallOneVolumeMs: number;
  /** The same two measures over the window before the fault: the noise floor of this machine. */
  gapBeforeMs: number;
  gapBeforeOneVolumeMs: number;
  errors: number;
  verified: boolean;
  problems: string[];
  /** The orchestrator's own view (200 ms samples): it only counts a segment once the victim is marked down. */
  belowRfS: number;
  belowRfSegS: number;
  /** From the kill itself: every segment still on the victim is below RF until its repair commits. */
  exposureS: number;
  exposureSegS: number;
  migrateOps: number;
  repairOps: number;
  /** Operators committed after the kill (reactive repair, or anything the kill set off). */
  opsAfterKill: number;
  scoreAbove70S?: number;
  drainStartedS?: number;
  drainedS?: number;
  faultToKillS: number;
  failoverS?: number;
  killToReplicatedS: number;
  victimMaxScore: number;
  healthyMaxScore: number;
  /** The scenario's shape, for the report's setup line. */
  scenario: ScenarioShape;
}

interface ScenarioShape {
  servers: number;
  volumeMiB: number;
  segmentMiB: number;
  rampSeconds: number;
  intensityMs: number;
}

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile. */
function pct(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function median(values: number[]): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

type Op = { at: number; ms: number; op: 'read' | 'write' };

/** Latencies of the ops that completed in [from, to) (ms timestamps), and their rate. */
function windowStats(ops: Op[], from: number, to: number): WindowStats {
  const ms = ops.filter((o) => o.at >= from && o.at < to).map((o) => o.ms);
  const secs = Math.max(0.001, (to - from) / 1000);
  return { ops: ms.length, opsPerSec: ms.length / secs, p50: pct(ms, 50), p99: pct(ms, 99), max: ms.length ? Math.max(...ms) : NaN };
}

/** Longest stretch in [from, to] with no op completing (the window's edges count as boundaries). */
function longestGap(ops: Op[], from: number, to: number): number {
  const t = ops.map((o) => o.at).filter((x) => x >= from && x <= to).sort((a, b) => a - b);
  let prev = from;
  let gap = 0;
  for (const x of [...t, to]) {
    gap = Math.max(gap, x - prev);
    prev = x;
  }
  return gap;
}

/** Integral of the degraded-segment count over time (left rule, like DegradeScenario.belowRfSeconds). */
function segmentSeconds(samples: { t: number; degraded: number }[]): number {
  let total = 0;
  for (let i = 1; i < samples.length; i++) total += samples[i - 1].degraded * (samples[i].t - samples[i - 1].t);
  return total / 1000;
}

const fmt = (digits: number) => (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(digits));
const f0 = fmt(0);
const f1 = fmt(1);
const f2 = fmt(2);

// ---------------------------------------------------------------------------------------------
// One scenario run

interface RunOptions {
  mode: Mode;
  trial: number;
  warmupMs: number;
  tailMs: number;
  /** Reactive runs: how long after the fault to kill (the paired predictive run's fault → kill). */
  faultToKillMs?: number;
  log: (line: string) => void;
  failure: 'crash' | 'hang';
}

let current: DegradeScenario | undefined; // for Ctrl-C

async function runOnce(o: RunOptions): Promise<RunResult> {
  const s = (current = await DegradeScenario.start({ predictive: o.mode === 'predictive', log: o.log }));
  try {
    s.startWorkload();
    const workloadAt = Date.now();
    const victim = await s.chooseVictim();
    await sleep(o.warmupMs);
    const victimSegments = await s.onVictim();
    o.log(`victim ${victim} holds ${victimSegments} segments; injecting the fault`);
    await s.injectFault();

    let drainedAt: number | undefined;
    if (o.mode === 'predictive') {
      drainedAt = await s.waitDrained();
      o.log(`drained ${((drainedAt - s.faultAt) / 1000).toFixed(1)} s after the fault`);
    } else {
      const until = s.faultAt + (o.faultToKillMs ?? 0);
      o.log(`prediction off: waiting ${((until - Date.now()) / 1000).toFixed(1)} s more, as long as the predictive run's fault → kill`);
      await sleep(Math.max(0, until - Date.now()));
    }

    // What is still on the victim is about to lose a replica.
    const atKill = (await s.allSegments()).filter((x) => x.replicas.includes(victim) || (x.joining ?? []).includes(victim)).map((x) => x.segmentId);
    await s.killVictim(o.failure);
    const recoveredAt = await s.waitRecovered();
    o.log(`recovered ${((recoveredAt - s.killedAt) / 1000).toFixed(1)} s after the kill (${atKill.length} segments were still on the victim)`);
    await sleep(o.tailMs);
    const endAt = Date.now();

    const events = await s.events();
    const problems = await s.finish();
    const ops = s.loads.flatMap((w) => w.stats.latencies);
    const errors = s.loads.reduce((n, w) => n + w.stats.errors.length, 0);
    const wrongData = s.loads.some((w) => w.stats.errors.some((e) => e.includes('wrong data'))) || problems.some((p) => p.includes('wrong byte'));

    const at = (d: Decision) => Date.parse(d.at);
    const committed = events.filter((e) => e.type === 'committed' && e.operator);
    const repairCommit = new Map<string, number>();
    for (const e of committed) {
      if (e.operator!.kind === 'repair' && at(e) >= s.killedAt && !repairCommit.has(e.segmentId)) repairCommit.set(e.segmentId, at(e));
    }
    // A segment with no repair commit in the log (it should not happen) counts until the orchestrator said recovered.
    const restored = atKill.map((id) => (repairCommit.get(id) ?? recoveredAt) - s.killedAt);
    const after = (t: number | undefined, from: number) => (t === undefined ? undefined : (t - from) / 1000);
    const firstEvent = (pred: (e: Decision) => boolean) => {
      const e = events.find(pred);
      return e ? at(e) : undefined;
    };
    const victimScores = s.scores.filter((p) => p.server === victim);
    const healthyScores = s.scores.filter((p) => p.server !== victim && p.t < endAt);
    const gapAcrossVolumes = (from: number, to: number) => ({
      any: longestGap(ops, from, to),
      one: Math.max(...s.loads.map((w) => longestGap(w.stats.latencies, from, to))),
    });
    const stall = gapAcrossVolumes(s.killedAt - 2000, endAt);
    const quiet = gapAcrossVolumes(workloadAt + 3000, s.faultAt);

    return {
      mode: o.mode,
      trial: o.trial,
      victim,
      victimSegments,
      onVictimAtKill: atKill.length,
      before: windowStats(ops, workloadAt + 3000, s.faultAt),
      degradation: windowStats(ops, s.faultAt, s.killedAt),
      failure: windowStats(ops, s.killedAt, endAt),
      stallMs: stall.any,
      stallOneVolumeMs: stall.one,
      gapBeforeMs: quiet.any,
      gapBeforeOneVolumeMs: quiet.one,
      errors,
      verified: !wrongData,
      problems,
      belowRfS: s.belowRfSeconds(),
      belowRfSegS: segmentSeconds(s.degradedSamples),
      exposureS: restored.length ? Math.max(...restored) / 1000 : 0,
      exposureSegS: restored.reduce((a, b) => a + b, 0) / 1000,
      migrateOps: committed.filter((e) => e.operator!.kind === 'migrate').length,
      repairOps: committed.filter((e) => e.operator!.kind === 'repair').length,
      opsAfterKill: committed.filter((e) => at(e) >= s.killedAt).length,
      scoreAbove70S: after(victimScores.find((p) => p.t >= s.faultAt && p.score > 70)?.t, s.faultAt),
      drainStartedS: after(firstEvent((e) => e.type === 'drain-started' && e.server === victim && at(e) >= s.faultAt), s.faultAt),
      drainedS: after(drainedAt, s.faultAt),
      faultToKillS: (s.killedAt - s.faultAt) / 1000,
      failoverS: after(firstEvent((e) => e.type === 'failover' && e.server === victim && at(e) >= s.killedAt), s.killedAt),
      killToReplicatedS: (recoveredAt - s.killedAt) / 1000,
      victimMaxScore: Math.max(0, ...victimScores.map((p) => p.score)),
      healthyMaxScore: Math.max(0, ...healthyScores.map((p) => p.score)),
      scenario: { servers: s.opts.servers, volumeMiB: s.opts.volumeMiB, segmentMiB: s.opts.segmentMiB, rampSeconds: s.opts.rampSeconds, intensityMs: s.opts.intensityMs },
    };
  } finally {
    await s.stop().catch(() => {});
    current = undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Report

interface Row {
  name: string;
  unit: string;
  get: (r: RunResult) => number | undefined;
  fmt: (n: number | undefined) => string;
  /** Whether predictive / reactive means something for this row. */
  ratio: boolean;
}

function ratioCell(a: number, b: number): string {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return 'n/a';
  if (a === 0 && b === 0) return '—';
  if (b === 0) return 'n/a (B = 0)';
  return `${(a / b).toFixed(2)}×`;
}

function buildRows(segmentMiB: number): Row[] {
  const w = (name: string, key: 'before' | 'degradation' | 'failure'): Row[] => [
    { name: `${name}: ops/s`, unit: 'ops/s', get: (r) => r[key].opsPerSec, fmt: f0, ratio: true },
    { name: `${name}: latency p50`, unit: 'ms', get: (r) => r[key].p50, fmt: f1, ratio: true },
    { name: `${name}: latency p99`, unit: 'ms', get: (r) => r[key].p99, fmt: f0, ratio: true },
    { name: `${name}: latency max`, unit: 'ms', get: (r) => r[key].max, fmt: f0, ratio: true },
  ];
  return [
    { name: 'segments on the victim at the fault', unit: 'count', get: (r) => r.victimSegments, fmt: f0, ratio: false },
    { name: 'fault → victim\'s score > 70', unit: 's', get: (r) => r.scoreAbove70S, fmt: f1, ratio: false },
    { name: 'fault → drain started (decision log)', unit: 's', get: (r) => r.drainStartedS, fmt: f1, ratio: false },
    { name: 'fault → drain complete', unit: 's', get: (r) => r.drainedS, fmt: f1, ratio: false },
    { name: 'fault → SIGKILL (B waits as long as A)', unit: 's', get: (r) => r.faultToKillS, fmt: f1, ratio: false },
    { name: 'segments still on the victim at the kill', unit: 'count', get: (r) => r.onVictimAtKill, fmt: f0, ratio: false },
    ...w('before the fault', 'before'),
    ...w('fault → kill (degradation)', 'degradation'),
    ...w('kill → recovered + tail (failure)', 'failure'),
    { name: '**stall around the kill: longest gap with no op completing (all volumes)**', unit: 'ms', get: (r) => r.stallMs, fmt: f0, ratio: true },
    { name: 'stall around the kill, worst single volume', unit: 'ms', get: (r) => r.stallOneVolumeMs, fmt: f0, ratio: true },
    { name: 'reference: longest gap before the fault (all volumes)', unit: 'ms', get: (r) => r.gapBeforeMs, fmt: f0, ratio: false },
    { name: 'reference: longest gap before the fault, worst single volume', unit: 'ms', get: (r) => r.gapBeforeOneVolumeMs, fmt: f0, ratio: false },
    { name: 'client I/O errors', unit: 'count', get: (r) => r.errors, fmt: f0, ratio: false },
    { name: '**time with a segment below RF, from the kill (until its repair commits)**', unit: 's', get: (r) => r.exposureS, fmt: f2, ratio: true },
    { name: 'segment-seconds below RF, from the kill', unit: 'seg·s', get: (r) => r.exposureSegS, fmt: f1, ratio: true },
    { name: 'time with a segment below RF, orchestrator\'s view (200 ms samples)', unit: 's', get: (r) => r.belowRfS, fmt: f2, ratio: true },
    { name: 'segment-seconds below RF, orchestrator\'s view', unit: 'seg·s', get: (r) => r.belowRfSegS, fmt: f1, ratio: true },
    { name: 'kill → failover (decision log)', unit: 's', get: (r) => r.failoverS, fmt: f2, ratio: false },
    { name: 'kill → orchestrator confirms fully replicated', unit: 's', get: (r) => r.killToReplicatedS, fmt: f2, ratio: true },
    { name: 'bytes moved: migrations (operators)', unit: 'MiB', get: (r) => r.migrateOps * segmentMiB, fmt: f0, ratio: false },
    { name: 'bytes moved: repairs (operators)', unit: 'MiB', get: (r) => r.repairOps * segmentMiB, fmt: f0, ratio: false },
    { name: '**bytes moved: total**', unit: 'MiB', get: (r) => (r.migrateOps + r.repairOps) * segmentMiB, fmt: f0, ratio: true },
    { name: 'operators committed after the kill', unit: 'count', get: (r) => r.opsAfterKill, fmt: f0, ratio: false },
    { name: 'highest score: victim', unit: '0-100', get: (r) => r.victimMaxScore, fmt: f0, ratio: false },
    { name: 'highest score: any healthy server', unit: '0-100', get: (r) => r.healthyMaxScore, fmt: f0, ratio: false },
  ];
}

function report(results: RunResult[], failures: string[], o: { trials: number; warmupMs: number; tailMs: number; header: string[]; date: string; failure: 'crash' | 'hang' } & ScenarioShape): string {
  const KILL = o.failure === 'hang' ? 'SIGSTOP (the victim hangs: its port accepts connections, nothing answers)' : 'SIGKILL';
  const A = results.filter((r) => r.mode === 'predictive');
  const B = results.filter((r) => r.mode === 'reactive');
  const agg = (rs: RunResult[], get: Row['get']) => median(rs.map(get).filter((x): x is number => x !== undefined && Number.isFinite(x)));
  const rows = buildRows(o.segmentMiB);
  const many = A.length > 1 || B.length > 1;
  const lines: string[] = [];
  lines.push(`# Predictive drain vs reactive failover (${o.failure === 'hang' ? 'the victim hangs' : 'the victim crashes'}), ${o.date}`, '', 'Machine:', '', ...o.header, `- load average at end: ${loadAverage()}`, '');
  lines.push(
    `Setup: test/helpers/degrade-scenario.ts on a fresh cluster per run: orchestrator + ${o.servers} storage servers (real processes, loopback, 3 zones), ` +
    `heartbeat timeout 3 s, servers scoring every 1 s on a compressed clock (\`--score-time-scale 60\`: one model minute per second), ` +
    `drain after the score stays above the threshold for 4 s; 3 volumes (critical, normal, low) of ${o.volumeMiB} MiB in ${o.segmentMiB} MiB segments, 2 replicas; ` +
    `a verifying workload through the client on each (2 workers, 50 % reads, up to 64 KiB per op, 85 % of the I/O on the first 25 % of the volume). ` +
    `The victim is the server holding the most hot critical segments. Warm-up ${o.warmupMs / 1000} s, then a slow-I/O fault ramping to +${o.intensityMs} ms per disk op over ${o.rampSeconds} s. ` +
    `**A (predictive)**: ${KILL} once the drain is complete. **B (reactive, \`--no-predictive\`)**: the same after exactly A's fault → kill time. ` +
    `Both then wait until the orchestrator has marked the victim down and every segment has 2 live replicas, plus ${o.tailMs / 1000} s. ` +
    `${o.trials} trial(s) of each, alternating A, B${many ? '; each cell is the median over trials (per-trial rows below)' : ''}.`,
    '',
    'Windows (by op completion time): *before the fault* = workload start + 3 s → fault; *degradation* = fault → kill; *failure* = kill → recovered + tail. ' +
    'Latency is per client op (read or write) from issue to completion, over all three volumes. The stall is the longest stretch, from 2 s before the kill to the end, in which no client op completed. ' +
    '"Below RF from the kill" counts every segment still on the victim at the kill as below its replication factor until the decision log shows its repair committed; ' +
    'the orchestrator\'s own count only starts once it has marked the victim down (heartbeat timeout). Bytes moved = committed operators × segment size (nominal: a copy of a sparse segment may move less).',
    '',
  );
  lines.push('| metric | unit | predictive (A) | reactive (B) | A / B |', '|---|---|---:|---:|---:|');
  for (const row of rows) {
    const a = agg(A, row.get);
    const b = agg(B, row.get);
    lines.push(`| ${row.name} | ${row.unit} | ${row.fmt(a)} | ${row.fmt(b)} | ${row.ratio ? ratioCell(a, b) : ''} |`);
  }
  const verified = (rs: RunResult[]) => `${rs.every((r) => r.verified) ? 'yes' : 'NO'} (${rs.filter((r) => r.verified).length}/${rs.length})`;
  lines.push(`| all data verified (every read checked, whole volumes re-read at the end) | | ${verified(A)} | ${verified(B)} | |`);
  lines.push('', 'p99 is nearest-rank over every client op in the window. MiB = 2^20 bytes.', '');

  lines.push('Per run:', '');
  lines.push('| trial | mode | victim | segs | on victim at kill | fault→kill s | kill→replicated s | degr. p99 / max ms | failure p99 / max ms | stall ms | errors | verified | below RF from kill s (seg·s) | moved MiB (migrate + repair) |');
  lines.push('|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|');
  for (const r of results) {
    lines.push(`| ${r.trial} | ${r.mode} | ${r.victim.slice(0, 12)} | ${r.victimSegments} | ${r.onVictimAtKill} | ${f1(r.faultToKillS)} | ${f2(r.killToReplicatedS)} | ${f0(r.degradation.p99)} / ${f0(r.degradation.max)} | ${f0(r.failure.p99)} / ${f0(r.failure.max)} | ${f0(r.stallMs)} | ${r.errors} | ${r.verified ? 'yes' : 'NO'} | ${f2(r.exposureS)} (${f1(r.exposureSegS)}) | ${(r.migrateOps + r.repairOps) * o.segmentMiB} (${r.migrateOps * o.segmentMiB} + ${r.repairOps * o.segmentMiB}) |`);
  }
  const problems = [...failures, ...results.flatMap((r) => r.problems.map((p) => `trial ${r.trial} ${r.mode}: ${p}`))];
  lines.push('', `Data checks: ${problems.length === 0 ? 'passed — no I/O error reached the client and every byte of every volume matches the workload\'s model of its acknowledged writes, in every run.' : 'FAILED:'}`);
  for (const p of problems) lines.push(`- ${p}`);
  lines.push(
    '',
    'Caveats (read before quoting a number):',
    '',
    '- The scoring clock is compressed ×60 (one model minute per second) so a degradation that takes an hour plays out in a minute; real lead times are minutes to days, and the drain here races a 20 s ramp.',
    '- Everything runs on loopback on one shared VM (2 cores, other people\'s builds and tests running alongside): the orchestrator, five servers, the client and this script compete for the CPU, so latencies include scheduling noise — compare with the "longest gap before the fault" reference rows.',
    '- The volumes are small (3 × ' + `${o.volumeMiB} MiB in ${o.segmentMiB} MiB segments): a real drain or repair moves gigabytes per segment, so the time below RF in B scales with segment size and copy bandwidth while A\'s drain time scales with it before the failure, where it costs no redundancy.`,
    '- The fault is an injected slow-I/O ramp that the fail-slow model recognises; a failure with no warning (or a missed prediction) gives A exactly B\'s numbers, and a false alarm costs A a drain with nothing to show for it.',
    '- B waits the same fault → kill time as A, so both suffer the slow disk equally long; in A the client stops paying for it once a segment has moved, which shows in the degradation window.',
    '',
  );
  lines.push(`Command: \`${['npx tsx bench/predictive-vs-reactive.ts', ...process.argv.slice(2)].join(' ')}\``, '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

function usage(msg?: string): never {
  if (msg) console.error(`error: ${msg}`);
  console.error('usage: npx tsx bench/predictive-vs-reactive.ts [--trials N] [--warmup S] [--tail S] [--failure crash|hang] [--out FILE|-]');
  process.exit(2);
}

function numArg(v: string | undefined, name: string, def: number, min: number, integer: boolean): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) usage(`--${name} must be a ${integer ? 'whole ' : ''}number >= ${min} (got ${JSON.stringify(v)})`);
  return n;
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        trials: { type: 'string' },
        warmup: { type: 'string' },
        tail: { type: 'string' },
        out: { type: 'string' },
        failure: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    usage((err as Error).message);
  }
  if (parsed.help) usage();
  const trials = numArg(parsed.trials, 'trials', 1, 1, true);
  // The warm-up lets heat averages and the fleet's per-minute reference form (≥ 10 compressed minutes).
  const warmupMs = numArg(parsed.warmup, 'warmup', 15, 12, false) * 1000;
  const tailMs = numArg(parsed.tail, 'tail', 3, 0, false) * 1000;
  const failure = parsed.failure ?? 'crash';
  if (failure !== 'crash' && failure !== 'hang') usage(`--failure must be crash or hang (got ${JSON.stringify(failure)})`);
  const date = new Date().toISOString().slice(0, 10);
  const out = parsed.out ?? path.join(REPO, `bench/results/predictive-vs-reactive-${date}${failure === 'hang' ? '-hang' : ''}.md`);
  const header = machineLines({ notes: ['the machine is shared with other engineers\' builds and tests, so it is noisy: every Presage process, the client and this script share its cores'] });
  const t0 = Date.now();
  const log = (s: string) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);

  const onSignal = () => {
    void (current?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const results: RunResult[] = [];
  const failures: string[] = [];
  try {
    for (let t = 1; t <= trials; t++) {
      let a: RunResult;
      try {
        log(`trial ${t}/${trials}: A (predictive drain on)`);
        a = await runOnce({ mode: 'predictive', trial: t, warmupMs, tailMs, failure, log: (l) => log(`  A${t}: ${l}`) });
        results.push(a);
      } catch (err) {
        // Without A's fault → kill time there is nothing fair to give B: skip this trial's B.
        failures.push(`trial ${t} predictive: ${(err as Error).message}`);
        log(`  A${t} failed: ${(err as Error).message}`);
        continue;
      }
      try {
        log(`trial ${t}/${trials}: B (prediction off), killing ${a.faultToKillS.toFixed(1)} s after the fault`);
        results.push(await runOnce({ mode: 'reactive', trial: t, warmupMs, tailMs, failure, faultToKillMs: a.faultToKillS * 1000, log: (l) => log(`  B${t}: ${l}`) }));
      } catch (err) {
        failures.push(`trial ${t} reactive: ${(err as Error).message}`);
        log(`  B${t} failed: ${(err as Error).message}`);
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  // The scenario's defaults, as every run reports them (the fallback only matters when no run finished).
  const shape = results[0]?.scenario ?? { servers: 5, volumeMiB: 32, segmentMiB: 4, rampSeconds: 20, intensityMs: 40 };
  const text = report(results, failures, { trials, warmupMs, tailMs, header, date, failure, ...shape });
  console.log(text);
  if (out !== '-') {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, text);
    log(`wrote ${path.relative(process.cwd(), out)}`);
  }
  const bad = failures.length > 0 || results.some((r) => r.problems.length > 0 || !r.verified || r.errors > 0);
  if (bad) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
});
