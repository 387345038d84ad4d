/**
 * Seasonal-naive forecaster: the reference every model is judged against.
 * ŷ(n+h) = y(n+h−m·k), k = ⌈h/m⌉ (the same phase of the last observed season);
 * with no period it is the naive forecast (m = 1, last value).
 */
import {
  type FitOptions, type Forecaster, type ForecasterState, type ForecastResult, Z95,
  checkHorizon, checkPeriod, checkSeries, notFitted, num, numArray, ForecastError,
} from './types.ts';

export class SeasonalNaiveForecaster implements Forecaster {
  readonly name = 'seasonal-naive';
  private lastSeason: number[] | null = null; // the last m values, NaN filled from earlier seasons
  private m = 1;
  private sigma = 0; // std of in-sample m-step residuals

  fit(series: Float64Array, opts: FitOptions = {}): void {
    checkSeries(series, 1, this.name);
    const m = checkPeriod(opts.period, this.name) ?? 1;
    const n = series.length;
    this.m = Math.min(m, n);
    // Last season, each phase taken from the most recent observed value at that phase,
    // so a NaN gap falls back to the season before it; a phase never seen takes the last observed value.
    const lastObserved = lastFinite(series);
    const season: number[] = [];
    for (let j = 0; j < this.m; j++) {
      let v = Number.NaN;
      for (let t = n - this.m + j; t >= 0; t -= this.m) {
        if (Number.isFinite(series[t]!)) { v = series[t]!; break; }
      }
      season.push(Number.isFinite(v) ? v : lastObserved);
    }
    this.lastSeason = season;
    let ss = 0;
    let k = 0;
    for (let t = this.m; t < n; t++) {
      const a = series[t]!;
      const b = series[t - this.m]!;
      if (Number.isFinite(a) && Number.isFinite(b)) { ss += (a - b) ** 2; k++; }
    }
    this.sigma = k > 0 ? Math.sqrt(ss / k) : 0;
  }

  forecast(horizon: number): ForecastResult {
    checkHorizon(horizon, this.name);
    if (!this.lastSeason) notFitted(this.name);
    const m = this.m;
    const mean = new Float64Array(horizon);
    const lower = new Float64Array(horizon);
    const upper = new Float64Array(horizon);
    for (let h = 1; h <= horizon; h++) {
      mean[h - 1] = this.lastSeason[(h - 1) % m]!;
      // fpp3: σ_h = σ·√(⌊(h−1)/m⌋+1) for the seasonal random walk.
      const sd = this.sigma * Math.sqrt(Math.floor((h - 1) / m) + 1);
      lower[h - 1] = mean[h - 1]! - Z95 * sd;
      upper[h - 1] = mean[h - 1]! + Z95 * sd;
    }
    return { mean, lower, upper };
  }

  toJSON(): ForecasterState {
    if (!this.lastSeason) notFitted(this.name);
    return { kind: 'seasonal-naive', version: 1, m: this.m, sigma: this.sigma, lastSeason: [...this.lastSeason] };
  }

  static fromJSON(state: ForecasterState): SeasonalNaiveForecaster {
    if (state.kind !== 'seasonal-naive' || state.version !== 1) throw new ForecastError(`not a seasonal-naive v1 state`);
    const f = new SeasonalNaiveForecaster();
    f.m = num(state, 'm');
    f.sigma = num(state, 'sigma');
    f.lastSeason = numArray(state, 'lastSeason');
    if (f.lastSeason.length !== f.m || f.m < 1) throw new ForecastError('seasonal-naive state: lastSeason length must equal m');
    return f;
  }
}

function lastFinite(series: Float64Array): number {
  for (let t = series.length - 1; t >= 0; t--) if (Number.isFinite(series[t]!)) return series[t]!;
  return Number.NaN;
}
