/**
 * Prophet-style decomposable model (Taylor & Letham 2018):
 *   y(t) = k + m·t + Σ_j δ_j·(t − c_j)₊  +  Σ_P Σ_{r≤order} [a_r sin(2πrt/P) + b_r cos(2πrt/P)]  + ε
 * a piecewise-linear trend with S candidate changepoints c_j evenly placed over the first
 * `changepointRange` of the history, plus Fourier seasonality. Fitted as a MAP estimate
 * by regularised least squares on the observed (non-NaN) rows:
 *   ½‖y − Xβ‖² + σ̂²/τ·Σ|δ_j| (Laplace prior, 'l1') or σ̂²/(2τ²)·Σδ_j² ('l2'),
 *   + σ̂²/(2·τ_s²)·Σ(a²+b²)   (Gaussian prior on Fourier terms),
 * with σ̂ re-estimated from the residuals; L1 is solved by iteratively reweighted ridge
 * (majorise |δ| ≤ δ²/2|δ₀| + |δ₀|/2), then polished by coordinate descent so that
 * unused changepoints are exactly zero. Each ridge system is solved by Cholesky on the
 * normal equations. y is standardised and t scaled to [0, 1] over the history, as in
 * Prophet, so the prior scales are dimensionless.
 *
 * Intervals: residual σ̂ plus trend uncertainty from future changepoints drawn at the
 * historical rate with Laplace magnitudes of scale mean|δ| (Prophet's generative view),
 * whose variance has the closed form  rate·2λ²·u³/3  at scaled lead time u.
 */
import {
  type FitOptions, type Forecaster, type ForecasterState, type ForecastResult, Z95,
  checkHorizon, checkPeriod, checkSeries, notFitted, num, numArray, ForecastError,
} from './types.ts';
import { choleskySolve } from './optim.ts';

export interface Seasonality { period: number; order: number }

export interface ProphetStyleConfig {
  /** Candidate changepoints (default 25). */
  nChangepoints?: number;
  /** Fraction of the history where changepoints may sit (default 0.8). */
  changepointRange?: number;
  /** τ: prior scale of the slope changes (default 0.05, as Prophet). */
  changepointPriorScale?: number;
  /** Laplace (L1, default) or Gaussian (L2) shrinkage of the slope changes. */
  shrinkage?: 'l1' | 'l2';
  /** Seasonalities in samples; default: the fit() period with order min(10, ⌊period/2⌋). */
  seasonalities?: Seasonality[];
  /** τ_s: prior scale of the Fourier coefficients (default 10, as Prophet). */
  seasonalityPriorScale?: number;
}

interface FittedModel {
  n: number;
  mu: number;
  sd: number;
  changepoints: number[]; // scaled time
  seasonalities: Seasonality[];
  beta: number[]; // [k, m, δ_1..δ_S, (sin, cos)_{P, r}…]
  sigma: number; // residual std in scaled units
  rate: number; // changepoints per unit of scaled time
  lambda: number; // mean |δ|
}

export class ProphetStyleForecaster implements Forecaster {
  readonly name = 'prophet-style';
  private readonly cfg: Required<Omit<ProphetStyleConfig, 'seasonalities'>> & { seasonalities?: Seasonality[] };
  private model: FittedModel | null = null;

  constructor(config: ProphetStyleConfig = {}) {
    const cfg = {
      nChangepoints: config.nChangepoints ?? 25,
      changepointRange: config.changepointRange ?? 0.8,
      changepointPriorScale: config.changepointPriorScale ?? 0.05,
      shrinkage: config.shrinkage ?? 'l1',
      seasonalityPriorScale: config.seasonalityPriorScale ?? 10,
      seasonalities: config.seasonalities,
    } as const;
    if (!Number.isInteger(cfg.nChangepoints) || cfg.nChangepoints < 0) throw new ForecastError('prophet-style: nChangepoints must be an integer ≥ 0');
    if (!(cfg.changepointRange > 0 && cfg.changepointRange <= 1)) throw new ForecastError('prophet-style: changepointRange must be in (0, 1]');
    if (!(cfg.changepointPriorScale > 0)) throw new ForecastError('prophet-style: changepointPriorScale must be > 0');
    if (!(cfg.seasonalityPriorScale > 0)) throw new ForecastError('prophet-style: seasonalityPriorScale must be > 0');
    if (cfg.shrinkage !== 'l1' && cfg.shrinkage !== 'l2') throw new ForecastError(`prophet-style: shrinkage must be 'l1' or 'l2'`);
    for (const s of cfg.seasonalities ?? []) checkSeasonality(s);
    this.cfg = cfg;
  }

  /** Fitted coefficients in scaled units (for inspection and tests). */
  get fitted(): Readonly<FittedModel> {
    if (!this.model) notFitted(this.name);
    return this.model;
  }

  fit(series: Float64Array, opts: FitOptions = {}): void {
    checkSeries(series, 2, this.name);
    const period = checkPeriod(opts.period, this.name);
    const n = series.length;
    const seasonalities = this.cfg.seasonalities
      ?? (period !== undefined && period >= 2 ? [{ period, order: Math.min(10, Math.floor(period / 2)) }] : []);

    // Standardise y on the observed rows.
    const rows: number[] = [];
    for (let t = 0; t < n; t++) if (Number.isFinite(series[t]!)) rows.push(t);
    let mu = 0;
    for (const t of rows) mu += series[t]!;
    mu /= rows.length;
    let v = 0;
    for (const t of rows) v += (series[t]! - mu) ** 2;
    const sd = Math.sqrt(v / rows.length) || 1;

    const S = Math.max(0, Math.min(this.cfg.nChangepoints, Math.floor(this.cfg.changepointRange * rows.length) - 1));
    const changepoints: number[] = [];
    for (let j = 1; j <= S; j++) changepoints.push((this.cfg.changepointRange * j) / S);

    const p = 2 + S + 2 * seasonalities.reduce((s, x) => s + x.order, 0);
    const xtx = new Float64Array(p * p);
    const xty = new Float64Array(p);
    const yy: number[] = [];
    const xRows: Float64Array[] = [];
    for (const t of rows) {
      const x = designRow(t, n, changepoints, seasonalities, p);
      const y = (series[t]! - mu) / sd;
      for (let i = 0; i < p; i++) {
        xty[i]! += x[i]! * y;
        for (let j = 0; j <= i; j++) xtx[i * p + j]! += x[i]! * x[j]!;
      }
      xRows.push(x);
      yy.push(y);
    }
    for (let i = 0; i < p; i++) for (let j = 0; j < i; j++) xtx[j * p + i] = xtx[i * p + j]!;

    const rss = (beta: Float64Array): number => {
      let s = 0;
      for (let r = 0; r < xRows.length; r++) {
        let f = 0;
        const x = xRows[r]!;
        for (let i = 0; i < p; i++) f += x[i]! * beta[i]!;
        s += (yy[r]! - f) ** 2;
      }
      return s;
    };
    // A tiny ridge everywhere keeps the system positive definite even with degenerate
    // Fourier columns (order = P/2) or no noise; it is far below any prior's weight.
    const eps = 1e-10 * rows.length;
    const solve = (penalty: Float64Array): Float64Array => {
      const a = Float64Array.from(xtx);
      for (let i = 0; i < p; i++) a[i * p + i]! += penalty[i]! + eps;
      return choleskySolve(a, xty, p);
    };

    const tau = this.cfg.changepointPriorScale;
    const tauS = this.cfg.seasonalityPriorScale;
    const penalty = new Float64Array(p);
    // Start: σ̂ from a fit with the slope changes pinned near 0.
    for (let j = 0; j < S; j++) penalty[2 + j] = 1e6;
    for (let i = 2 + S; i < p; i++) penalty[i] = 1e-6;
    let beta = solve(penalty);
    let sigma2 = Math.max(rss(beta) / Math.max(1, rows.length - (p - S)), SIGMA2_FLOOR);
    const outer = 4;
    const inner = this.cfg.shrinkage === 'l1' ? 12 : 1;
    for (let o = 0; o < outer; o++) {
      for (let it = 0; it < inner; it++) {
        for (let j = 0; j < S; j++) {
          penalty[2 + j] = this.cfg.shrinkage === 'l1'
            ? (sigma2 / tau) / Math.max(Math.abs(o === 0 && it === 0 ? tau : beta[2 + j]!), 1e-6)
            : sigma2 / (tau * tau);
        }
        for (let i = 2 + S; i < p; i++) penalty[i] = sigma2 / (tauS * tauS);
        beta = solve(penalty);
      }
      sigma2 = Math.max(rss(beta) / Math.max(1, rows.length - 2), SIGMA2_FLOOR);
    }
    if (this.cfg.shrinkage === 'l1' && S > 0) {
      // IRLS only approaches zero; coordinate descent with soft thresholding on the same
      // normal equations, warm-started from it, gives the exact L1 optimum (true zeros).
      const gram = Float64Array.from(xtx);
      for (let i = 0; i < p; i++) gram[i * p + i]! += eps + (i >= 2 + S ? sigma2 / (tauS * tauS) : 0);
      beta = lassoPolish(gram, xty, beta, p, 2, 2 + S, sigma2 / tau);
    }
    let lambda = 0;
    for (let j = 0; j < S; j++) lambda += Math.abs(beta[2 + j]!);
    lambda = S > 0 ? lambda / S : 0;
    this.model = {
      n, mu, sd, changepoints, seasonalities: seasonalities.map((s) => ({ ...s })), beta: [...beta],
      sigma: Math.sqrt(rss(beta) / Math.max(1, rows.length - 2)),
      rate: S, // S changepoints per unit of scaled time, as in the history (Prophet: S/T, T = 1)
      lambda,
    };
  }

  forecast(horizon: number): ForecastResult {
    checkHorizon(horizon, this.name);
    const md = this.model;
    if (!md) notFitted(this.name);
    const p = md.beta.length;
    const mean = new Float64Array(horizon);
    const lower = new Float64Array(horizon);
    const upper = new Float64Array(horizon);
    const span = Math.max(1, md.n - 1);
    for (let h = 1; h <= horizon; h++) {
      const t = md.n - 1 + h;
      const x = designRow(t, md.n, md.changepoints, md.seasonalities, p);
      let f = 0;
      for (let i = 0; i < p; i++) f += x[i]! * md.beta[i]!;
      const u = h / span; // lead time in scaled units
      const varScaled = md.sigma ** 2 + (md.rate * 2 * md.lambda ** 2 * u ** 3) / 3;
      mean[h - 1] = md.mu + md.sd * f;
      const sd = md.sd * Math.sqrt(varScaled);
      lower[h - 1] = mean[h - 1]! - Z95 * sd;
      upper[h - 1] = mean[h - 1]! + Z95 * sd;
    }
    return { mean, lower, upper };
  }

  toJSON(): ForecasterState {
    const md = this.model;
    if (!md) notFitted(this.name);
    return {
      kind: 'prophet-style', version: 1, n: md.n, mu: md.mu, sd: md.sd,
      changepoints: [...md.changepoints],
      seasonalities: md.seasonalities.map((s) => ({ period: s.period, order: s.order })),
      beta: [...md.beta], sigma: md.sigma, rate: md.rate, lambda: md.lambda,
    };
  }

  static fromJSON(state: ForecasterState): ProphetStyleForecaster {
    if (state.kind !== 'prophet-style' || state.version !== 1) throw new ForecastError('not a prophet-style v1 state');
    const seas = state.seasonalities;
    if (!Array.isArray(seas)) throw new ForecastError('prophet-style state: seasonalities must be an array');
    const seasonalities = seas.map((s) => checkSeasonality(s as Seasonality));
    const f = new ProphetStyleForecaster();
    const changepoints = numArray(state, 'changepoints');
    const beta = numArray(state, 'beta');
    const p = 2 + changepoints.length + 2 * seasonalities.reduce((s, x) => s + x.order, 0);
    if (beta.length !== p) throw new ForecastError(`prophet-style state: expected ${p} coefficients, got ${beta.length}`);
    f.model = {
      n: num(state, 'n'), mu: num(state, 'mu'), sd: num(state, 'sd'), changepoints, seasonalities, beta,
      sigma: num(state, 'sigma'), rate: num(state, 'rate'), lambda: num(state, 'lambda'),
    };
    return f;
  }
}

/**
 * Noise variance floor on the standardised scale: residuals below 0.1 % of the series'
 * spread count as that much noise, so the priors keep a little weight on a noise-free
 * series instead of letting slope changes soak up rounding errors.
 */
const SIGMA2_FLOOR = 1e-6;

/**
 * Minimises ½βᵀGβ − bᵀβ + c·Σ_{j∈[l1From,l1To)} |β_j| by cyclic coordinate descent
 * (Friedman et al. 2010), from `start`. G must have a positive diagonal.
 */
function lassoPolish(g: Float64Array, b: Float64Array, start: Float64Array, p: number, l1From: number, l1To: number, c: number): Float64Array {
  const beta = Float64Array.from(start);
  // grad_j = (Gβ)_j − b_j, kept up to date incrementally.
  const gb = new Float64Array(p);
  for (let i = 0; i < p; i++) { let v = 0; for (let k = 0; k < p; k++) v += g[i * p + k]! * beta[k]!; gb[i] = v; }
  for (let sweep = 0; sweep < 5000; sweep++) {
    let maxChange = 0;
    for (let j = 0; j < p; j++) {
      const gjj = g[j * p + j]!;
      const rho = b[j]! - (gb[j]! - gjj * beta[j]!);
      let next = rho / gjj;
      if (j >= l1From && j < l1To) {
        const shrunk = Math.abs(rho) - c;
        next = shrunk > 0 ? (Math.sign(rho) * shrunk) / gjj : 0; // +0, never −0
      }
      const d = next - beta[j]!;
      if (d !== 0) {
        for (let i = 0; i < p; i++) gb[i]! += g[i * p + j]! * d;
        beta[j] = next;
        maxChange = Math.max(maxChange, Math.abs(d));
      }
    }
    if (maxChange < 1e-12) break;
  }
  return beta;
}

function checkSeasonality(s: Seasonality): Seasonality {
  if (!s || typeof s !== 'object' || !(typeof s.period === 'number' && s.period > 0 && Number.isFinite(s.period))
    || !Number.isInteger(s.order) || s.order < 1) {
    throw new ForecastError(`prophet-style: a seasonality needs period > 0 and an integer order ≥ 1, got ${JSON.stringify(s)}`);
  }
  return { period: s.period, order: s.order };
}

/** One row of the design matrix at raw time index t (history 0..n−1). */
function designRow(t: number, n: number, changepoints: number[], seasonalities: Seasonality[], p: number): Float64Array {
  const x = new Float64Array(p);
  const ts = t / Math.max(1, n - 1);
  x[0] = 1;
  x[1] = ts;
  let i = 2;
  for (const c of changepoints) x[i++] = ts > c ? ts - c : 0;
  for (const s of seasonalities) {
    for (let r = 1; r <= s.order; r++) {
      const w = (2 * Math.PI * r * t) / s.period;
      x[i++] = Math.sin(w);
      x[i++] = Math.cos(w);
    }
  }
  return x;
}
