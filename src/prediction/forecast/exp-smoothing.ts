/**
 * Exponential smoothing, the fast baseline: simple (no trend), Holt's linear or damped
 * trend, and additive Holt–Winters seasonality when a period is given.
 *
 * Written in error-correction form (Hyndman et al., ETS(A,Ad,A)), with e_t = y_t − ŷ_t:
 *   ŷ_t  = l + φ·b + s_{t−m}
 *   l   ← l + φ·b + α·e        b ← φ·b + β·e        s_t = s_{t−m} + γ·e
 * with 0<α<1, 0<β<α, 0<γ<1−α, φ∈[0.8,0.98] (damped), φ=1 (linear).
 * Parameters minimise the one-step SSE (Nelder–Mead over a logistic parameterisation
 * that keeps them inside those bounds). A missing value (NaN) contributes no error:
 * the state just moves along its forecast. Prediction intervals use the exact
 * ETS class-1 variance σ²·(1 + Σ_{j<h} c_j²), c_j = α + β·φ_j + γ·[j mod m = 0].
 */
import {
  type FitOptions, type Forecaster, type ForecasterState, type ForecastResult, Z95,
  checkHorizon, checkPeriod, checkSeries, notFitted, num, numArray, ForecastError,
} from './types.ts';
import { logit, nelderMead, sigmoid } from './optim.ts';

export type TrendKind = 'none' | 'linear' | 'damped';

export interface ExpSmoothingConfig {
  /** Trend component; default 'damped' (damped trends forecast better on average, Gardner & McKenzie). */
  trend?: TrendKind;
  /** Use additive seasonality when fit() gets a period ≥ 2 and at least two full seasons; default true. */
  seasonal?: boolean;
  /** Fixed smoothing parameters (in the error-correction form above); those left out are fitted. */
  alpha?: number;
  beta?: number;
  gamma?: number;
  phi?: number;
}

interface Params { alpha: number; beta: number; gamma: number; phi: number }

interface FittedState {
  trend: TrendKind;
  m: number; // 0 = no seasonality
  params: Params;
  level: number;
  slope: number;
  season: number[]; // season[k] = seasonal term of phase k (phase of time t is t mod m)
  nextPhase: number;
  sigma2: number;
  sse: number;
  n: number;
}

const PHI_MIN = 0.8;
const PHI_MAX = 0.98;

export class ExpSmoothingForecaster implements Forecaster {
  readonly name: string;
  private readonly config: Required<Pick<ExpSmoothingConfig, 'trend' | 'seasonal'>> & ExpSmoothingConfig;
  private state: FittedState | null = null;

  constructor(config: ExpSmoothingConfig = {}) {
    const trend = config.trend ?? 'damped';
    if (!['none', 'linear', 'damped'].includes(trend)) throw new ForecastError(`exp-smoothing: unknown trend '${String(trend)}'`);
    for (const k of ['alpha', 'beta', 'gamma'] as const) {
      const v = config[k];
      if (v !== undefined && !(v >= 0 && v <= 1)) throw new ForecastError(`exp-smoothing: ${k} must be in [0, 1], got ${v}`);
    }
    if (config.phi !== undefined && !(config.phi > 0 && config.phi <= 1)) {
      throw new ForecastError(`exp-smoothing: phi must be in (0, 1], got ${config.phi}`);
    }
    this.config = { ...config, trend, seasonal: config.seasonal ?? true };
    this.name = `exp-smoothing(${trend})`;
  }

  /** The fitted parameters and final state (for inspection and tests). */
  get fitted(): Readonly<FittedState> {
    if (!this.state) notFitted(this.name);
    return this.state;
  }

  fit(series: Float64Array, opts: FitOptions = {}): void {
    checkSeries(series, 2, this.name);
    const period = checkPeriod(opts.period, this.name);
    const trend = this.config.trend;
    const n = series.length;
    const m = this.config.seasonal && period !== undefined && period >= 2 && n >= 2 * period ? period : 0;

    // Free parameters and their logistic transforms; fixed ones come from the config.
    const c = this.config;
    const free: ('alpha' | 'beta' | 'gamma' | 'phi')[] = [];
    if (c.alpha === undefined) free.push('alpha');
    if (trend !== 'none' && c.beta === undefined) free.push('beta');
    if (m > 0 && c.gamma === undefined) free.push('gamma');
    if (trend === 'damped' && c.phi === undefined) free.push('phi');

    const decode = (u: number[]): Params => {
      const get = (k: (typeof free)[number]): number | undefined => {
        const i = free.indexOf(k);
        return i < 0 ? undefined : sigmoid(u[i]!);
      };
      const alpha = c.alpha ?? 0.0001 + 0.9998 * get('alpha')!;
      const beta = trend === 'none' ? 0 : c.beta ?? alpha * get('beta')!;
      const gamma = m === 0 ? 0 : c.gamma ?? (1 - alpha) * get('gamma')!;
      const phi = trend === 'none' ? 0 : trend === 'linear' ? 1 : c.phi ?? PHI_MIN + (PHI_MAX - PHI_MIN) * get('phi')!;
      return { alpha, beta, gamma, phi };
    };
    const objective = (u: number[]): number => run(series, m, trend, decode(u)).sse;

    let params: Params;
    if (free.length === 0) {
      params = decode([]);
    } else {
      // Two deterministic starts (slow and fast smoothing), keep the better minimum.
      const starts: Record<string, number>[] = [
        { alpha: 0.2, beta: 0.1, gamma: 0.1, phi: 0.5 },
        { alpha: 0.8, beta: 0.05, gamma: 0.3, phi: 0.9 },
      ];
      let best: { x: number[]; fx: number } | null = null;
      for (const s of starts) {
        const x0 = free.map((k) => logit(s[k]!));
        const r = nelderMead(objective, x0, { step: 1, maxIter: 150 * free.length, tol: 1e-7 });
        if (!best || r.fx < best.fx) best = r;
      }
      params = decode(best!.x);
    }
    const r = run(series, m, trend, params);
    const nParams = free.length + (trend === 'none' ? 1 : 2) + m;
    const dof = Math.max(1, r.observed - nParams);
    this.state = {
      trend, m, params, level: r.level, slope: r.slope, season: r.season,
      nextPhase: m > 0 ? n % m : 0, sigma2: r.sse / dof, sse: r.sse, n,
    };
  }

  forecast(horizon: number): ForecastResult {
    checkHorizon(horizon, this.name);
    const s = this.state;
    if (!s) notFitted(this.name);
    const { alpha, beta, gamma, phi } = s.params;
    const mean = new Float64Array(horizon);
    const lower = new Float64Array(horizon);
    const upper = new Float64Array(horizon);
    let phiSum = 0; // φ_h = φ + φ² + … + φ^h
    let phiPow = 1;
    let varSum = 1; // 1 + Σ_{j<h} c_j²
    for (let h = 1; h <= horizon; h++) {
      phiPow *= phi;
      phiSum += phiPow;
      const seasonal = s.m > 0 ? s.season[(s.nextPhase + h - 1) % s.m]! : 0;
      mean[h - 1] = s.level + (s.trend === 'none' ? 0 : phiSum * s.slope) + seasonal;
      const sd = Math.sqrt(s.sigma2 * varSum);
      lower[h - 1] = mean[h - 1]! - Z95 * sd;
      upper[h - 1] = mean[h - 1]! + Z95 * sd;
      // c_h for the next horizon's variance.
      const ch = alpha + (s.trend === 'none' ? 0 : beta * phiSum) + (s.m > 0 && h % s.m === 0 ? gamma : 0);
      varSum += ch * ch;
    }
    return { mean, lower, upper };
  }

  toJSON(): ForecasterState {
    const s = this.state;
    if (!s) notFitted(this.name);
    return {
      kind: 'exp-smoothing', version: 1, trend: s.trend, m: s.m,
      alpha: s.params.alpha, beta: s.params.beta, gamma: s.params.gamma, phi: s.params.phi,
      level: s.level, slope: s.slope, season: [...s.season], nextPhase: s.nextPhase,
      sigma2: s.sigma2, sse: s.sse, n: s.n,
    };
  }

  static fromJSON(state: ForecasterState): ExpSmoothingForecaster {
    if (state.kind !== 'exp-smoothing' || state.version !== 1) throw new ForecastError('not an exp-smoothing v1 state');
    const trend = state.trend as TrendKind;
    if (!['none', 'linear', 'damped'].includes(trend)) throw new ForecastError(`exp-smoothing state: bad trend '${String(trend)}'`);
    const f = new ExpSmoothingForecaster({ trend });
    const m = num(state, 'm');
    const season = numArray(state, 'season');
    if (!Number.isInteger(m) || m < 0 || season.length !== m) throw new ForecastError('exp-smoothing state: season length must equal m');
    f.state = {
      trend, m,
      params: { alpha: num(state, 'alpha'), beta: num(state, 'beta'), gamma: num(state, 'gamma'), phi: num(state, 'phi') },
      level: num(state, 'level'), slope: num(state, 'slope'), season, nextPhase: num(state, 'nextPhase'),
      sigma2: num(state, 'sigma2'), sse: num(state, 'sse'), n: num(state, 'n'),
    };
    return f;
  }
}

interface RunResult { sse: number; observed: number; level: number; slope: number; season: number[] }

/** Runs the recursions over the whole series from the heuristic initial state. */
function run(y: Float64Array, m: number, trend: TrendKind, p: Params): RunResult {
  const n = y.length;
  const { alpha, beta, gamma } = p;
  const phi = trend === 'none' ? 0 : p.phi;
  let { level, slope, season } = initialState(y, m, trend, phi);
  season = [...season];
  let sse = 0;
  let observed = 0;
  for (let t = 0; t < n; t++) {
    const k = m > 0 ? t % m : 0;
    const s = m > 0 ? season[k]! : 0;
    const pred = level + phi * slope + s;
    const v = y[t]!;
    const e = Number.isFinite(v) ? v - pred : 0;
    if (Number.isFinite(v)) { sse += e * e; observed++; }
    level = level + phi * slope + alpha * e;
    slope = phi * slope + beta * e;
    if (m > 0) season[k] = s + gamma * e;
  }
  return { sse, observed, level, slope: trend === 'none' ? 0 : slope, season };
}

/**
 * Heuristic initial state "just before t = 0" (Hyndman et al. 2008, §2.6.1):
 * non-seasonal: a least-squares line through the first ≤10 observations;
 * seasonal: level and slope from the means of the first two seasons, seasonal
 * terms from the first season's deviations from that line, centred to sum to 0.
 */
function initialState(y: Float64Array, m: number, trend: TrendKind, phi: number): { level: number; slope: number; season: number[] } {
  if (m === 0) {
    const ts: number[] = [];
    const vs: number[] = [];
    for (let t = 0; t < y.length && ts.length < 10; t++) if (Number.isFinite(y[t]!)) { ts.push(t); vs.push(y[t]!); }
    let a = vs[0]!;
    let b = 0;
    if (trend !== 'none' && ts.length >= 2) {
      const tm = ts.reduce((s, v) => s + v, 0) / ts.length;
      const vm = vs.reduce((s, v) => s + v, 0) / vs.length;
      let sxy = 0;
      let sxx = 0;
      for (let i = 0; i < ts.length; i++) { sxy += (ts[i]! - tm) * (vs[i]! - vm); sxx += (ts[i]! - tm) ** 2; }
      b = sxy / sxx;
      a = vm - b * tm; // value of the line at t = 0
    }
    // The first one-step forecast l + φb should be the line's value at t = 0.
    return { level: a - phi * b, slope: b, season: [] };
  }
  const mean1 = nanMean(y, 0, m);
  const mean2 = nanMean(y, m, 2 * m);
  const first = Number.isFinite(mean1) ? mean1 : nanMean(y, 0, y.length);
  const b = trend === 'none' || !Number.isFinite(mean2) || !Number.isFinite(mean1) ? 0 : (mean2 - mean1) / m;
  const centre = (m - 1) / 2;
  const season: number[] = [];
  for (let j = 0; j < m; j++) {
    const v = y[j]!;
    season.push(Number.isFinite(v) ? v - (first + b * (j - centre)) : 0);
  }
  const sMean = season.reduce((s, v) => s + v, 0) / m;
  for (let j = 0; j < m; j++) season[j]! -= sMean;
  // Level one step before t = 0, so that l + φb is the line's value at t = 0.
  const lineAt0 = first - b * centre;
  return { level: lineAt0 - phi * b, slope: b, season };
}

function nanMean(y: Float64Array, from: number, to: number): number {
  let s = 0;
  let k = 0;
  for (let t = from; t < Math.min(to, y.length); t++) if (Number.isFinite(y[t]!)) { s += y[t]!; k++; }
  return k > 0 ? s / k : Number.NaN;
}
