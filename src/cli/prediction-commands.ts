// `presage eval`, `presage train`, `presage score`: offline evaluation on the shared data,
// rebuilding the default model, and reading Failure Scores from the orchestrator.

import { InvalidArgumentError, type Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { statSync } from 'node:fs';
import { FAILURE_MODES, type FailureScoreReport } from '../api/types.ts';
import { ApiError, httpJson } from '../api/http.ts';
import { runEvaluation } from '../prediction/evaluate.ts';
import { trainDefaultBundle } from '../prediction/train.ts';
import { evalJson, evalMarkdown, runLiveEvaluation } from '../prediction/live-eval-run.ts';
import { replayDrains } from '../replay/replay.ts';
import { parseDuration } from '../server/telemetry.ts';
import { saveBundle } from '../prediction/model-bundle.ts';
import { action, apiFor, intArg, isTty, orchestratorOption, orchestratorUrl, printJson } from './common.ts';
import { colour, table } from './table.ts';
import type { OrchestratorClient } from '../api/orchestrator-client.ts';
import { retrainBarState, StageProgress } from './progress.ts';

/** Time between reads of GET /v1/models while `presage model retrain` waits. */
const RETRAIN_POLL_MS = 500;

/**
 * Waits for `work` (api.retrain()); meanwhile, on a terminal, polls GET /v1/models and draws
 * the running retrain's stage. A poll that fails is ignored: the bar is a courtesy, the POST's
 * answer is what counts. A poll still in flight at the end is cancelled when the command's
 * connections close (action()).
 */
async function withRetrainBar<T>(api: OrchestratorClient, work: Promise<T>): Promise<T> {
  if (!isTty(process.stderr)) return work;
  const bar = new StageProgress();
  let finished = false;
  let polling = false;
  const timer = setInterval(() => {
    if (polling) return;
    polling = true;
    api.retrainProgress()
      .then((running) => {
        const v = finished ? undefined : retrainBarState(running);
        if (v) bar.update(v.label, v.fraction);
      }, () => {})
      .finally(() => {
        polling = false;
      });
  }, RETRAIN_POLL_MS);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    finished = true;
    bar.stop();
  }
}

/** A duration option ("10m", "1d") within [min, max] ms. */
export function durationArg(name: string, min: number, max: number) {
  return (text: string): number => {
    let ms = NaN;
    try {
      ms = parseDuration(text);
    } catch {
      // reported below
    }
    if (!(ms >= min && ms <= max)) throw new InvalidArgumentError(`${name} must be a duration between ${min / 60_000} min and ${max / 86_400_000} d (e.g. 10m, 1h, 1d)`);
    return ms;
  };
}

const fmt = (v: number | null | undefined, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(d));

/** The options `presage eval` and `presage replay` share: which data, which model, how it is streamed. */
function liveDatasetOptions(cmd: Command, cadenceDefault: number): Command {
  return cmd
    .requiredOption('--dataset <path>', 'Backblaze or Perseus .csv.gz (e.g. ../shared/data/backblaze_2013_dev.csv.gz), recognised by its header; or a folder of server telemetry exports (<unit>.csv from GET /v1/metrics/export) with --labels')
    .option('--model <file>', 'model bundle (default: the bundled default model servers start with)')
    .option('--cadence <duration>', 'how often daily SMART rows are streamed as readings (Backblaze; e.g. 10m, 1h, 1d)', durationArg('--cadence', 60_000, 86_400_000), cadenceDefault)
    .option('--score-every <duration>', 'time between scores for minute-level data (Perseus, generic)', durationArg('--score-every', 60_000, 86_400_000), 600_000)
    .option('--split <which>', '"test": when the bundle was trained on this Backblaze file, score only its held-out test drives; "all": every unit', 'test')
    .option('--labels <file>', 'generic format: CSV unit,failed_at,group (failed_at an ISO time or empty)');
}

interface LiveCliOptions {
  dataset: string;
  model?: string;
  cadence: number;
  scoreEvery: number;
  split: string;
  labels?: string;
  maxRows?: number;
}

/** Runs the live-path scoring for either command, drawing its progress on `bar`. */
function runLive(opts: LiveCliOptions, bar: StageProgress) {
  if (opts.split !== 'test' && opts.split !== 'all') throw new InvalidArgumentError('--split must be "test" or "all"');
  return runLiveEvaluation({
    dataset: resolve(opts.dataset), model: opts.model ? resolve(opts.model) : undefined, cadenceMs: opts.cadence, scoreEveryMs: opts.scoreEvery,
    split: opts.split, labels: opts.labels ? resolve(opts.labels) : undefined, maxRows: opts.maxRows,
    progress: (stage, done, total) => bar.update(stage === 'scoring' ? `scoring ${done}/${total} groups` : stage, total ? done / total : 0),
  });
}

export function registerPredictionCommands(program: Command): void {
  registerModelCommands(program);
  registerReplayCommand(program);
  liveDatasetOptions(program
    .command('eval')
    .description('score a dataset with a model bundle through the live path (real TimeSeriesStore, FailureScorer.score(), the peer reference servers use) and report recall, false alarms, lead time and AUC against baselines; nothing is trained'), 600_000)
    .option('--out <file>', 'also write the Markdown report here')
    .option('--max-rows <n>', 'read only the first N rows (smoke runs)', intArg('--max-rows', 1, Number.MAX_SAFE_INTEGER))
    .option('--json', 'print { units, failed, auc, thresholds: { "70": { recall, far, medianLeadDays }, "50": … }, recallAtFar: { "0.01", "0.001" }, baselines, ci, … }')
    .option('--retrain-splits', 'instead: the research protocol that trains candidate models on splits of the file and reports them (the old offline evaluation)')
    .option('--seed <n>', 'with --retrain-splits: split seed', intArg('--seed', 0, 2 ** 31 - 1), 1)
    .action(action(async (opts: { dataset: string; model?: string; cadence: number; scoreEvery: number; split: string; labels?: string; out?: string; maxRows?: number; json?: boolean; retrainSplits?: boolean; seed: number }) => {
      const t0 = Date.now();
      if (opts.retrainSplits) {
        const report = await runEvaluation({
          dataset: resolve(opts.dataset),
          out: opts.out ? resolve(opts.out) : undefined,
          seed: opts.seed,
          maxRows: opts.maxRows,
          log: (m) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}\n`),
        });
        if (opts.json) return printJson({ dataset: report.dataset, kind: report.kind, seed: report.seed, seconds: report.seconds, metrics: report.metrics });
        if (opts.out) {
          process.stdout.write(`wrote ${opts.out} (${report.kind}, ${report.seconds.toFixed(1)} s)\n`);
          for (const [k, v] of Object.entries(report.metrics)) process.stdout.write(`  ${k}: ${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : v}\n`);
        } else {
          process.stdout.write(report.markdown + '\n');
        }
        return;
      }
      const bar = new StageProgress();
      let result;
      try {
        result = await runLive(opts, bar);
      } finally {
        bar.stop();
      }
      const md = evalMarkdown(result);
      if (opts.out) await writeFile(resolve(opts.out), md);
      if (opts.json) return printJson(evalJson(result));
      process.stdout.write(md);
    }));

  program
    .command('train')
    .description('rebuild the default failure model from ../shared/data (seeded, reproducible) and print its validation metrics')
    .option('--data <dir>', 'folder with backblaze_2013_dev.csv.gz and perseus_A_dev_1min.csv.gz', '../shared/data')
    .option('--out <file>', 'where to write the model bundle', 'presage-model.json')
    .option('--seed <n>', 'seed', intArg('--seed', 0, 2 ** 31 - 1), 1)
    .option('--json', 'print the bundle\'s version and validation as JSON')
    .action(action(async (opts: { data: string; out: string; seed: number; json?: boolean }) => {
      const bar = new StageProgress();
      const t0 = Date.now();
      let bundle;
      try {
        bundle = await trainDefaultBundle({
          dataDir: resolve(opts.data),
          seed: opts.seed,
          progress: (stage, f) => bar.update(stage, f),
          log: (m) => {
            if (!isTty(process.stderr)) process.stderr.write(`${m}\n`);
          },
        });
      } finally {
        bar.stop();
      }
      const out = resolve(opts.out);
      await saveBundle(out, bundle);
      if (opts.json) return printJson({ out, version: bundle.version, seconds: (Date.now() - t0) / 1000, validation: bundle.validation });
      process.stdout.write(`wrote ${out} (${(statSync(out).size / 1024).toFixed(0)} KiB), model ${bundle.version}, ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      process.stdout.write(table(
        ['MODE', 'KIND', 'HORIZON', 'VALIDATED', 'AUC', 'RECALL@1%FA', 'BRIER', 'BRIER (BASE RATE)', 'POS/NEG', 'UNIT'],
        FAILURE_MODES.map((m) => {
          const v = bundle.validation[m];
          const spec = bundle.modes[m];
          return [m, spec.kind, spec.horizon, spec.validated ? 'yes' : 'no (heuristic)', fmt(v?.auc), fmt(v?.recallAt1pctFA), v?.brier != null ? v.brier.toExponential(2) : 'n/a', v?.brierBaseRate != null ? v.brierBaseRate.toExponential(2) : 'n/a', v ? `${v.positives}/${v.negatives}` : '-', v?.unit.split(';')[0] ?? '-'];
        }),
      ) + '\n');
    }));

  program
    .command('score [server]')
    .description('show Failure Scores (0 healthy … 100 critical) of one server or of all, from the orchestrator')
    .addOption(orchestratorOption())
    .option('--json', 'print JSON')
    .action(action(async (server: string | undefined, opts: { orchestrator: string; json?: boolean }) => {
      const base = orchestratorUrl(opts);
      const path = server ? `/v1/servers/${encodeURIComponent(server)}/failure-score` : '/v1/failure-scores';
      let data: unknown;
      try {
        data = await httpJson<unknown>(base, 'GET', path);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          throw new Error(server
            ? `no Failure Score for server '${server}' (unknown server, or none computed yet): ${err.message}`
            : `the orchestrator at ${base} does not serve Failure Scores (GET ${path}: 404)`);
        }
        throw err;
      }
      const reports = toReports(data, server !== undefined);
      if (opts.json) return printJson(server ? reports[0] : reports);
      process.stdout.write((server ? detail(reports[0]) : overview(reports)) + '\n');
    }));
}

/** `presage model status|retrain`: the orchestrator's model, retraining and distribution. */
function registerModelCommands(program: Command): void {
  const model = program.command('model').description('the failure model: status across the cluster, retraining');
  model
    .command('status')
    .description('the orchestrator\'s model, its last retrain, and the model each server runs')
    .addOption(orchestratorOption())
    .option('--json', 'print JSON')
    .action(action(async (opts: { orchestrator: string; json?: boolean }) => {
      const s = await apiFor(opts).models();
      if (opts.json) return printJson(s);
      const busy = retrainBarState(s.running);
      const lines = [`model ${s.version} (created ${s.createdAt})${s.running ? `, retraining now${busy ? ` (${busy.label})` : ''}` : ''}`];
      lines.push(s.intervalMs > 0 ? `retrains every ${(s.intervalMs / 86_400_000).toFixed(1)} days${s.nextRetrainAt ? `, next at ${s.nextRetrainAt}` : ''}` : 'scheduled retraining is off (presage model retrain runs one)');
      if (s.lastRetrain) lines.push(`last retrain ${s.lastRetrain.at}: ${s.lastRetrain.replaced ? 'replaced' : 'kept'}: ${s.lastRetrain.warning ?? s.lastRetrain.reason}`);
      lines.push(table(['SERVER', 'STATE', 'MODEL', 'SYNC', 'LAST PUSH'], s.servers.map((x) => [
        x.server, x.state, x.version ?? '?', x.sync, x.lastPush ? `${x.lastPush.ok ? 'ok' : `failed: ${x.lastPush.error}`} ${x.lastPush.at}` : '',
      ])));
      process.stdout.write(lines.join('\n') + '\n');
    }));
  model
    .command('retrain')
    .description('retrain now from the servers\' history; the model is replaced (and pushed) only if it validates at least as well')
    .addOption(orchestratorOption())
    .option('--json', 'print JSON')
    .action(action(async (opts: { orchestrator: string; json?: boolean }) => {
      const api = apiFor(opts);
      const r = await withRetrainBar(api, api.retrain());
      if (opts.json) return printJson(r);
      const lines = [`${r.replaced ? 'replaced' : 'kept'} (${r.days} days, ${r.servers.length} server(s), ${r.seconds.toFixed(1)} s): ${r.reason}`];
      if (r.warning) lines.push(`warning: ${r.warning}`);
      for (const s of r.skipped) lines.push(`skipped ${s.server}: ${s.reason}`);
      for (const [mode, c] of Object.entries(r.comparison)) {
        lines.push(c.evaluated ? `${mode}: AUC ${c.current!.auc.toFixed(3)} → ${c.candidate!.auc.toFixed(3)}, Brier ${c.current!.brier.toExponential(2)} → ${c.candidate!.brier.toExponential(2)} (${c.positives} positive snapshots)` : `${mode}: not evaluated (${c.reason})`);
      }
      for (const p of r.pushes) lines.push(`pushed to ${p.server}: ${p.ok ? 'ok' : `failed: ${p.error}`}`);
      process.stdout.write(lines.join('\n') + '\n');
    }));
}

/** Accepts a report, an array of reports, or `{ scores | reports | servers: [...] }`. */
export function toReports(data: unknown, single: boolean): FailureScoreReport[] {
  const list = Array.isArray(data)
    ? data
    : data && typeof data === 'object' && !('score' in data)
      ? ((data as Record<string, unknown>).scores ?? (data as Record<string, unknown>).reports ?? (data as Record<string, unknown>).servers)
      : [data];
  if (!Array.isArray(list)) throw new Error('the orchestrator answered with something that is not a Failure Score report');
  for (const r of list) {
    if (!r || typeof r !== 'object' || typeof (r as FailureScoreReport).score !== 'number' || typeof (r as FailureScoreReport).serverId !== 'string') {
      throw new Error('the orchestrator answered with something that is not a Failure Score report');
    }
  }
  if (single && list.length !== 1) throw new Error(`expected one Failure Score report, got ${list.length}`);
  return list as FailureScoreReport[];
}

function levelText(r: FailureScoreReport, c: ReturnType<typeof colour>): string {
  return r.level === 'critical' ? c.red(r.level) : r.level === 'warning' ? c.yellow(r.level) : c.green(r.level);
}

function ago(iso: string): string {
  const s = (Date.now() - Date.parse(iso)) / 1000;
  return Number.isNaN(s) ? iso : s < 90 ? `${Math.max(0, Math.round(s))}s ago` : s < 5400 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

export function overview(reports: FailureScoreReport[]): string {
  const c = colour(isTty());
  if (reports.length === 0) return 'no Failure Scores yet';
  const rows = [...reports].sort((a, b) => b.score - a.score).map((r) => [
    r.serverId,
    r.score.toFixed(1),
    levelText(r, c),
    r.mode,
    `${(r.probabilities[r.mode] * 100).toPrecision(2)}% in ${r.horizons[r.mode]}`,
    r.topFeatures[0] ? `${r.topFeatures[0].name}=${+r.topFeatures[0].value.toPrecision(3)}` : '-',
    r.modelVersion,
    ago(r.computedAt),
    r.note ? c.dim(r.note) : '',
  ]);
  return table(['SERVER', 'SCORE', 'LEVEL', 'MODE', 'P(MODE)', 'TOP FEATURE', 'MODEL', 'COMPUTED', 'NOTE'], rows);
}

export function detail(r: FailureScoreReport): string {
  const c = colour(isTty());
  const out: string[] = [];
  out.push(`${c.bold(r.serverId)}: score ${c.bold(r.score.toFixed(1))} (${levelText(r, c)}), driven by ${r.mode}; model ${r.modelVersion}, computed ${r.computedAt}`);
  if (r.note) out.push(c.dim(`note: ${r.note}`));
  out.push('');
  out.push(table(['MODE', 'PROBABILITY', 'HORIZON'], FAILURE_MODES.map((m) => [m === r.mode ? c.bold(m) : m, `${(r.probabilities[m] * 100).toPrecision(3)}%`, r.horizons[m]])));
  if (r.topFeatures.length) {
    out.push('');
    out.push(table(['FEATURE', 'VALUE', 'CONTRIBUTION (score points)'], r.topFeatures.map((f) => [f.name, +f.value.toPrecision(4), f.contribution.toFixed(1)])));
  }
  for (const f of r.forecast) {
    const last = f.points[f.points.length - 1];
    if (last) out.push(`forecast ${f.metric} (${f.model}): ${+last.value.toPrecision(3)} in ${Math.round((last.t - Date.parse(r.computedAt)) / 60000)} min${last.lower !== undefined ? ` [${+last.lower.toPrecision(3)} – ${+(last.upper ?? NaN).toPrecision(3)}]` : ''}`);
  }
  return out.join('\n');
}

/** `presage replay`: a dataset's fleet through the live scoring path and the real predictive-drain policy. */
export function registerReplayCommand(program: Command): void {
  liveDatasetOptions(program
    .command('replay')
    .description('replay a dataset through one in-process scoring unit per drive/server (real TimeSeriesStore, FailureScorer.score(), the servers\' peer reference) and the orchestrator\'s predictive-drain policy (sustain, hysteresis, cap) on a simulated clock; reports every drain, true and false, and lead times'), 86_400_000)
    .option('--sustain <duration>', 'score must stay >= threshold this long before a drain (orchestrator default 15s)', durationArg('--sustain', 0, 30 * 86_400_000))
    .option('--recover <duration>', 'a drained unit must stay below warning this long to take data again (default 2m)', durationArg('--recover', 0, 30 * 86_400_000))
    .option('--max-draining <percent>', 'at most this share of the up units drains at once', intArg('max draining', 1, 100), 25)
    .option('--json', 'print the result as JSON')
    .action(action(async (opts: { dataset: string; model?: string; cadence: number; scoreEvery: number; split: string; labels?: string; sustain?: number; recover?: number; maxDraining: number; json?: boolean }) => {
      const bar = new StageProgress();
      let res;
      let replay;
      try {
        res = await runLive(opts, bar);
        replay = await replayDrains(res.lines, res.dataset.unitDays, {
          staleMs: res.dataset.staleMs,
          config: { ...(opts.sustain !== undefined ? { sustainMs: opts.sustain } : {}), ...(opts.recover !== undefined ? { recoverMs: opts.recover } : {}), maxDrainingFraction: opts.maxDraining / 100 },
          progress: (d, n) => bar.update('drain policy', n ? d / n : 1),
        });
      } finally {
        bar.stop();
      }
      const eval70 = res.summary.thresholds['70'];
      const out = {
        dataset: res.dataset.file, model: res.bundle.version, units: replay.units, failed: replay.failed, unitDays: replay.unitDays,
        drains: replay.drains.length, trueDrains: replay.trueDrains, falseDrains: replay.falseDrains,
        falselyDrainedUnits: replay.falselyDrainedUnits, caughtUnits: replay.caughtUnits,
        drainsPerUnitDay: replay.drainsPerUnitDay, falseDrainsPerUnitDay: replay.falseDrainsPerUnitDay, medianLeadDays: replay.medianLeadDays,
        missed: replay.missed.length, evalFalseAlarmsAt70: eval70.falseAlarms, evalCaughtAt70: eval70.caught,
        config: replay.config, units_note: res.unitsNote, drainList: replay.drains,
      };
      if (opts.json) return printJson(out);
      process.stdout.write(`${res.dataset.kind} ${res.dataset.file}: ${replay.units} units (${replay.failed} positive), ${replay.unitDays} unit-days, model ${res.bundle.version}\n`);
      process.stdout.write(`  ${res.unitsNote}\n`);
      process.stdout.write(`  drains: ${replay.drains.length} (${replay.trueDrains} true, ${replay.falseDrains} false) = ${(replay.drainsPerUnitDay * 1000).toFixed(3)} per 1000 unit-days (false: ${(replay.falseDrainsPerUnitDay * 1000).toFixed(3)})\n`);
      process.stdout.write(`  healthy units drained: ${replay.falselyDrainedUnits} (eval --model counts ${eval70.falseAlarms} healthy units ever >= 70); positive units drained before failing: ${replay.caughtUnits}/${replay.failed}; median lead ${replay.medianLeadDays === null ? 'n/a' : `${replay.medianLeadDays.toFixed(1)} d`}; missed ${replay.missed.length}\n`);
      for (const d of replay.drains.slice(0, 20)) process.stdout.write(`  ${new Date(d.t).toISOString()} ${d.unit} ${d.trueDrain ? 'TRUE ' : 'false'} score ${d.score.toFixed(0)} (${d.mode})${d.leadDays !== null ? ` lead ${d.leadDays.toFixed(1)} d` : ''}\n`);
    }));
}
