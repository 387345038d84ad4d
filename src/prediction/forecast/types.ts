/**
 * Common interface of the metric forecasters (DESIGN.md, Prediction: forecasting).
 * Every forecaster fits on one univariate series (NaN = missing sample) and
 * serialises to plain data so models can be versioned as files, never code.
 */

export interface ForecastResult {
  mean: Float64Array;
  /** Lower bound of the prediction interval (default 95 %), when the model gives one. */
  lower?: Float64Array;
  upper?: Float64Array;
}

export interface FitOptions {
  /** Seasonal period in samples (e.g. 181 for one 21:00–24:00 evening of minutes, 7 for days/week). */
  period?: number;
}

export interface Forecaster {
  readonly name: string;
  fit(series: Float64Array, opts?: FitOptions): Promise<void> | void;
  forecast(horizon: number): ForecastResult;
  /** Plain JSON-compatible data (numbers, strings, arrays), enough to rebuild the model. */
  toJSON(): ForecasterState;
}

/** Serialised state; `kind` selects the implementation in forecasterFromJSON. */
export interface ForecasterState {
  kind: string;
  version: number;
  [key: string]: unknown;
}

/** z for a two-sided 95 % normal interval. */
export const Z95 = 1.959963984540054;

export class ForecastError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForecastError';
  }
}

export function checkSeries(series: unknown, minObserved: number, who: string): Float64Array {
  if (!(series instanceof Float64Array)) throw new ForecastError(`${who}: series must be a Float64Array`);
  let observed = 0;
  for (const v of series) {
    if (Number.isFinite(v)) observed++;
    else if (!Number.isNaN(v)) throw new ForecastError(`${who}: series contains a non-finite value other than NaN (${v})`);
  }
  if (observed < minObserved) {
    throw new ForecastError(`${who}: needs at least ${minObserved} observed (non-NaN) values, got ${observed}`);
  }
  return series;
}

export function checkHorizon(horizon: unknown, who: string): number {
  if (typeof horizon !== 'number' || !Number.isInteger(horizon) || horizon < 1 || horizon > 1_000_000) {
    throw new ForecastError(`${who}: horizon must be an integer in [1, 1e6], got ${String(horizon)}`);
  }
  return horizon;
}

export function checkPeriod(period: unknown, who: string): number | undefined {
  if (period === undefined) return undefined;
  if (typeof period !== 'number' || !Number.isInteger(period) || period < 1) {
    throw new ForecastError(`${who}: period must be a positive integer, got ${String(period)}`);
  }
  return period;
}

export function notFitted(who: string): never {
  throw new ForecastError(`${who}: forecast() called before fit()`);
}

/** Reads a number field of a serialised state, failing clearly on a bad file. */
export function num(state: Record<string, unknown>, key: string): number {
  const v = state[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ForecastError(`state field '${key}' must be a finite number`);
  return v;
}

export function numArray(state: Record<string, unknown>, key: string): number[] {
  const v = state[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    throw new ForecastError(`state field '${key}' must be an array of finite numbers`);
  }
  return v as number[];
}
