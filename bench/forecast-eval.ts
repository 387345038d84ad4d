/**
 * Rolling-origin evaluation of the metric forecasters on real telemetry, written as a
 * markdown report (default docs/forecast-eval.md).
 *
 *   node --import tsx bench/forecast-eval.ts [--data DIR] [--out FILE] [--seed N]
 *        [--perseus-drives N] [--backblaze-drives N] [--no-lstm]
 *
 * Series (read in place from ../shared/data, never copied):
 *  - Perseus cluster A, per-minute latency_mean and throughput_mean of a seeded sample of
 *    drives. Each drive has 14 evenings of 21:00–24:00 (UTC+8) with gaps between them; we
 *    concatenate the evenings into one "evening-time" series of 180 minutes per evening
 *    (21:00–23:59; the lone 24:00 sample is dropped) with period 180, so "seasonal" means
 *    "the same minute of the previous recorded evening". Missing minutes/cells are NaN.
 *    Origins: minutes 30, 90 and 150 of the last evening; horizon 30 minutes.
 *  - Backblaze 2019–2020 failed-only ST4000DM000: daily SMART 7, 240, 241, 242 raw values of
 *    a seeded sample of drives (61 days each, ending on the failure day). No seasonality
 *    (the reference is the naive forecast, m = 1). Origins: days 40, 47, 54; horizon 7 days.
 * Every model is refit at every origin on the history before it. MASE of each forecast is
 * scaled by the in-sample seasonal-naive MAE of that training history (Hyndman & Koehler
 * 2006), averaged over a series' origins, then summarised over series.
 */
import { createReadStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import path from 'node:path';
import {
  type Forecaster, type ForecastResult, ExpSmoothingForecaster, LstmForecaster, ProphetStyleForecaster,
  SeasonalNaiveForecaster, initTfBackend, mase,
} from '../src/prediction/forecast/index.ts';
import { mulberry32 } from '../src/common/prng.ts';
import { machineSummary } from './machine-info.ts';

interface Args { data: string; out: string; seed: number; perseusDrives: number; backblazeDrives: number; lstm: boolean }

function parseArgs(argv: string[]): Args {
  const a: Args = {
    data: path.resolve(process.cwd(), '../shared/data'), out: 'docs/forecast-eval.md', seed: 20240601,
    perseusDrives: 6, backblazeDrives: 10, lstm: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    const int = (): number => {
      const x = Number(v());
      if (!Number.isInteger(x) || x < 1) throw new Error(`${k} needs a positive integer`);
      return x;
    };
    if (k === '--data') a.data = path.resolve(v());
    else if (k === '--out') a.out = v();
    else if (k === '--seed') a.seed = int();
    else if (k === '--perseus-drives') a.perseusDrives = int();
    else if (k === '--backblaze-drives') a.backblazeDrives = int();
    else if (k === '--no-lstm') a.lstm = false;
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

async function* csvRows(file: string): AsyncGenerator<string[]> {
  const rl = createInterface({ input: createReadStream(file).pipe(createGunzip()), crlfDelay: Infinity });
  for await (const line of rl) if (line.length > 0) yield line.split(',');
}

const cell = (s: string | undefined): number => (s === undefined || s === '' ? Number.NaN : Number(s));

interface Series { dataset: string; metric: string; id: string; values: Float64Array; period: number; origins: number[]; horizon: number }

const EVENING = 180; // minutes 21:00–23:59
const N_EVENINGS = 14;

async function loadPerseus(dir: string, nDrives: number, rand: () => number): Promise<Series[]> {
  const file = path.join(dir, 'perseus_A_dev_1min.csv.gz');
  // One pass: per drive, per date, the minute-of-evening values of the two metrics.
  const drives = new Map<string, Map<string, { lat: Float64Array; thr: Float64Array }>>();
  let header: string[] | null = null;
  for await (const r of csvRows(file)) {
    if (!header) { header = r; continue; }
    const [, host, disk, date, ts] = r;
    const key = `host${host}/disk${disk}`;
    // Minutes since 21:00 UTC+8 = 13:00 UTC.
    const minute = ((Math.round(Number(ts) / 60) - 13 * 60) % 1440 + 1440) % 1440;
    if (minute >= EVENING) continue;
    let days = drives.get(key);
    if (!days) drives.set(key, (days = new Map()));
    let d = days.get(date!);
    if (!d) days.set(date!, (d = { lat: new Float64Array(EVENING).fill(Number.NaN), thr: new Float64Array(EVENING).fill(Number.NaN) }));
    d.thr[minute] = cell(r[5]);
    d.lat[minute] = cell(r[6]);
  }
  const keys = [...drives.keys()].filter((k) => drives.get(k)!.size === N_EVENINGS).sort();
  const picked = sample(keys, nDrives, rand);
  const out: Series[] = [];
  const last = (N_EVENINGS - 1) * EVENING;
  for (const key of picked) {
    const dates = [...drives.get(key)!.keys()].sort();
    for (const metric of ['lat', 'thr'] as const) {
      const v = new Float64Array(N_EVENINGS * EVENING);
      dates.forEach((date, i) => v.set(drives.get(key)!.get(date)![metric], i * EVENING));
      out.push({
        dataset: 'perseus', metric: metric === 'lat' ? 'latency_mean' : 'throughput_mean', id: key, values: v,
        period: EVENING, origins: [last + 30, last + 90, last + 150], horizon: 30,
      });
    }
  }
  return out;
}

async function loadBackblaze(dir: string, nDrives: number, rand: () => number): Promise<Series[]> {
  const file = path.join(dir, 'backblaze_2019_2020_st4000dm000_failed_only.csv.gz');
  const attrs = ['smart_7_raw', 'smart_240_raw', 'smart_241_raw', 'smart_242_raw'];
  const rows = new Map<string, { date: string; v: number[] }[]>();
  let idx: number[] | null = null;
  for await (const r of csvRows(file)) {
    if (!idx) { idx = attrs.map((a) => r.indexOf(a)); if (idx.some((i) => i < 0)) throw new Error(`${file}: missing SMART columns`); continue; }
    const serial = r[1]!;
    if (!rows.has(serial)) rows.set(serial, []);
    rows.get(serial)!.push({ date: r[0]!, v: idx.map((i) => cell(r[i])) });
  }
  const serials = [...rows.keys()].filter((s) => rows.get(s)!.length === 61).sort();
  const out: Series[] = [];
  for (const serial of sample(serials, nDrives, rand)) {
    const days = rows.get(serial)!.sort((a, b) => a.date.localeCompare(b.date));
    attrs.forEach((attr, j) => {
      out.push({
        dataset: 'backblaze', metric: attr, id: serial, values: Float64Array.from(days, (d) => d.v[j]!),
        period: 1, origins: [40, 47, 54], horizon: 7,
      });
    });
  }
  return out;
}

/** Seeded sample without replacement (partial Fisher–Yates), in sorted order for stable reports. */
function sample<T>(xs: T[], k: number, rand: () => number): T[] {
  const a = [...xs];
  for (let i = 0; i < Math.min(k, a.length); i++) {
    const j = i + Math.floor(rand() * (a.length - i));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, Math.min(k, a.length)).sort();
}

interface ModelSpec { name: string; make: (s: Series) => Forecaster; period: (s: Series) => number | undefined }

function models(withLstm: boolean): ModelSpec[] {
  const seasonal = (s: Series): number | undefined => (s.period > 1 ? s.period : undefined);
  const specs: ModelSpec[] = [
    { name: 'seasonal-naive (reference)', make: () => new SeasonalNaiveForecaster(), period: seasonal },
    { name: 'naive (last value)', make: () => new SeasonalNaiveForecaster(), period: () => undefined },
    { name: 'exp-smoothing (damped, +HW)', make: () => new ExpSmoothingForecaster({ trend: 'damped' }), period: seasonal },
    { name: 'prophet-style', make: () => new ProphetStyleForecaster(), period: seasonal },
  ];
  if (withLstm) {
    specs.push({
      name: 'lstm',
      make: (s) => new LstmForecaster(s.dataset === 'perseus'
        ? { window: 20, outputSteps: 30, units: 16 }
        : { window: 14, outputSteps: 7, units: 16 }),
      period: seasonal,
    });
  }
  return specs;
}

interface Outcome { mase: number[]; fitMs: number[]; covered: number; points: number; failures: string[] }

async function evaluate(series: Series[], specs: ModelSpec[], log: (s: string) => void): Promise<Map<string, Map<Series, Outcome>>> {
  const res = new Map<string, Map<Series, Outcome>>();
  for (const spec of specs) res.set(spec.name, new Map());
  for (const [i, s] of series.entries()) {
    for (const spec of specs) {
      const o: Outcome = { mase: [], fitMs: [], covered: 0, points: 0, failures: [] };
      for (const origin of s.origins) {
        const train = s.values.slice(0, origin);
        const actual = s.values.slice(origin, origin + s.horizon);
        const f = spec.make(s);
        let fc: ForecastResult;
        const t0 = performance.now();
        try {
          await f.fit(train, { period: spec.period(s) });
          o.fitMs.push(performance.now() - t0);
          fc = f.forecast(s.horizon);
        } catch (err) {
          o.failures.push(`origin ${origin}: ${(err as Error).message}`);
          continue;
        } finally {
          if (f instanceof LstmForecaster) f.dispose();
        }
        o.mase.push(mase(actual, fc.mean, train, s.period));
        if (fc.lower && fc.upper) {
          for (let h = 0; h < s.horizon; h++) {
            if (!Number.isFinite(actual[h]!)) continue;
            o.points++;
            if (actual[h]! >= fc.lower[h]! && actual[h]! <= fc.upper[h]!) o.covered++;
          }
        }
      }
      res.get(spec.name)!.set(s, o);
    }
    log(`  [${i + 1}/${series.length}] ${s.dataset} ${s.id} ${s.metric}`);
  }
  return res;
}

const meanOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
function medianOf(xs: number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}
const fmt = (x: number, d = 3): string => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

/** Per-model summary over the series whose reference MASE is defined (non-constant history). */
function table(series: Series[], specs: ModelSpec[], res: Map<string, Map<Series, Outcome>>): string {
  const ref = res.get(specs[0]!.name)!;
  const seriesMase = (name: string, s: Series): number => {
    const o = res.get(name)!.get(s)!;
    const v = o.mase.filter(Number.isFinite);
    return v.length === s.origins.length ? meanOf(v) : Number.NaN;
  };
  const usable = series.filter((s) => Number.isFinite(seriesMase(specs[0]!.name, s)));
  const lines = [
    '| model | MASE mean | MASE median | better than reference | 95 % PI coverage | fit time mean (ms) | fit time max (ms) | failed fits |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const spec of specs) {
    const per = usable.map((s) => seriesMase(spec.name, s));
    const ok = per.filter(Number.isFinite);
    const wins = usable.filter((s) => seriesMase(spec.name, s) < seriesMase(specs[0]!.name, s)).length;
    const outs = series.map((s) => res.get(spec.name)!.get(s)!);
    const fit = outs.flatMap((o) => o.fitMs);
    const covered = outs.reduce((a, o) => a + o.covered, 0);
    const points = outs.reduce((a, o) => a + o.points, 0);
    const failed = outs.reduce((a, o) => a + o.failures.length, 0);
    lines.push(`| ${spec.name} | ${fmt(meanOf(ok))} | ${fmt(medianOf(ok))} | ${spec === specs[0] ? '—' : `${wins}/${usable.length}`} | ${points ? `${fmt((100 * covered) / points, 1)} %` : '—'} | ${fmt(meanOf(fit), 1)} | ${fmt(Math.max(...fit), 1)} | ${failed} |`);
  }
  const excluded = series.length - usable.length;
  return lines.join('\n') + `\n\n${usable.length} series (× ${series[0]?.origins.length ?? 0} origins)` +
    (excluded ? `; ${excluded} series excluded because their training history is constant (MASE undefined) or the reference failed` : '') + '.\n';
}

function byMetric(series: Series[], specs: ModelSpec[], res: Map<string, Map<Series, Outcome>>): string {
  const metrics = [...new Set(series.map((s) => s.metric))];
  const lines = [`| metric | ${specs.map((s) => s.name).join(' | ')} |`, `|---|${specs.map(() => '---:').join('|')}|`];
  for (const metric of metrics) {
    const ss = series.filter((s) => s.metric === metric);
    const cells = specs.map((spec) => {
      const v = ss.map((s) => res.get(spec.name)!.get(s)!.mase).filter((m) => m.length === ss[0]!.origins.length && m.every(Number.isFinite)).map(meanOf);
      return v.length ? `${fmt(medianOf(v))} (${v.length})` : 'n/a';
    });
    lines.push(`| ${metric} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  for (const f of ['perseus_A_dev_1min.csv.gz', 'backblaze_2019_2020_st4000dm000_failed_only.csv.gz']) {
    if (!existsSync(path.join(args.data, f))) throw new Error(`data file not found: ${path.join(args.data, f)} (use --data DIR)`);
  }
  const log = (s: string): void => { process.stderr.write(s + '\n'); };
  const started = performance.now();
  const startedAt = new Date();
  const backend = args.lstm ? await initTfBackend() : 'n/a';
  const rand = mulberry32(args.seed);
  log('loading Perseus …');
  const perseus = await loadPerseus(args.data, args.perseusDrives, rand);
  log('loading Backblaze …');
  const backblaze = await loadBackblaze(args.data, args.backblazeDrives, rand);
  const loadS = (performance.now() - started) / 1000;
  const specs = models(args.lstm);
  log('evaluating Perseus …');
  const resP = await evaluate(perseus, specs, log);
  log('evaluating Backblaze …');
  const resB = await evaluate(backblaze, specs, log);
  const totalS = (performance.now() - started) / 1000;

  const failures = [...resP, ...resB].flatMap(([name, m]) => [...m].flatMap(([s, o]) => o.failures.map((f) => `- ${name}, ${s.dataset} ${s.id} ${s.metric}, ${f}`)));
  const md = `# Forecast evaluation on real telemetry

Generated by \`node --import tsx bench/forecast-eval.ts\` (${process.argv.slice(2).join(' ') || 'default arguments'}).
This file is the committed output of one run; the numbers are what that run measured.

- Run: ${startedAt.toISOString()}, total ${totalS.toFixed(1)} s (data loading ${loadS.toFixed(1)} s), one Node process (single-threaded; tfjs ${backend} backend).
- Machine: ${machineSummary()} (at the end of the run), shared with other work.
- Seed ${args.seed}: ${args.perseusDrives} Perseus drives × 2 metrics, ${args.backblazeDrives} Backblaze drives × 4 SMART attributes.

## Method

Rolling-origin evaluation on held-out tails: at each origin every model is refit on the history before it and forecasts
the next *h* values. MASE (Hyndman & Koehler 2006) = MAE of the forecast / in-sample MAE of the seasonal-naive forecast
(lag *m*) on that same history; MASE < 1 beats the in-sample seasonal-naive one-step error. A series' MASE is the mean over
its origins; the tables give mean and median over series, how many series a model beats the seasonal-naive reference on
(out of sample), the share of held-out values inside the 95 % prediction interval, and the time of one \`fit()\`.

- **Perseus cluster A** (Lu et al., FAST '23 / Alibaba), per-minute \`latency_mean\` and \`throughput_mean\` per drive. The data
  only covers 21:00–24:00 (UTC+8) of 14 days (2022-07-18 … 2022-08-01, no 07-19). We concatenate the evenings
  (21:00–23:59, 180 minutes; the single 24:00 sample is dropped) into one series of 2,520 minutes with **period m = 180**,
  i.e. the seasonal-naive reference is "the same minute of the previous recorded evening". Missing cells are NaN (models
  skip or interpolate them). Origins at minutes 30, 90 and 150 of the last evening, **horizon 30 minutes**.
  Holt-Winters and Prophet-style use the 180-minute season (Fourier order 10); the LSTM (window 20, 30 direct outputs,
  16 units) gets the previous evening's values as a second input channel.
- **Backblaze 2019–2020, failed ST4000DM000 drives**, daily raw SMART 7 (seek errors), 240 (head flying hours),
  241 (LBAs written), 242 (LBAs read); 61 days per drive ending on the failure day. No seasonality: **m = 1**, the
  reference is the naive (last value) forecast. Origins at days 40, 47, 54, **horizon 7 days**. LSTM window 14, 7 outputs.
  SMART 240/241/242 are cumulative counters, so their MASE measures how well a model continues a near-linear ramp.

## Perseus: per-minute latency and throughput (m = 180, h = 30)

${table(perseus, specs, resP)}
Median MASE per metric (number of series):

${byMetric(perseus, specs, resP)}
## Backblaze: daily SMART counters of failing drives (m = 1, h = 7)

${table(backblaze, specs, resB)}
Median MASE per attribute (number of series):

${byMetric(backblaze, specs, resB)}
${failures.length ? `## Failed fits\n\n${failures.join('\n')}\n` : ''}`;
  mkdirSync(path.dirname(path.resolve(args.out)), { recursive: true });
  writeFileSync(args.out, md);
  log(`wrote ${args.out} in ${totalS.toFixed(1)} s`);
}

main().catch((err: unknown) => {
  process.stderr.write(`forecast-eval: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
