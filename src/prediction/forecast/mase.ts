/**
 * Mean Absolute Scaled Error (Hyndman & Koehler 2006):
 *   MASE = mean_j |y_j − ŷ_j|  /  ( 1/(n−m) · Σ_{t=m+1..n} |y_t − y_{t−m}| )
 * where the denominator is the in-sample MAE of the seasonal-naive (m-step) forecast
 * on the training series. MASE < 1: better than the in-sample seasonal-naive forecast.
 * NaN (missing) values are skipped on both sides.
 */
import { ForecastError } from './types.ts';

/** In-sample MAE of the seasonal-naive forecast with period m (m = 1: naive). */
export function seasonalNaiveScale(insample: ArrayLike<number>, m = 1): number {
  if (!Number.isInteger(m) || m < 1) throw new ForecastError(`MASE: period must be a positive integer, got ${m}`);
  let sum = 0;
  let k = 0;
  for (let t = m; t < insample.length; t++) {
    const a = insample[t]!;
    const b = insample[t - m]!;
    if (Number.isFinite(a) && Number.isFinite(b)) { sum += Math.abs(a - b); k++; }
  }
  if (k === 0) throw new ForecastError(`MASE: in-sample series has no pair of observed values ${m} apart`);
  return sum / k;
}

/** Mean absolute error over pairs where both values are finite. */
export function mae(actual: ArrayLike<number>, forecast: ArrayLike<number>): number {
  if (actual.length !== forecast.length) throw new ForecastError(`MAE: length mismatch ${actual.length} vs ${forecast.length}`);
  let sum = 0;
  let k = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const f = forecast[i]!;
    if (Number.isFinite(a) && Number.isFinite(f)) { sum += Math.abs(a - f); k++; }
  }
  if (k === 0) throw new ForecastError('MAE: no observed actual value');
  return sum / k;
}

/**
 * MASE of `forecast` against `actual`, scaled by the in-sample seasonal-naive MAE of `insample`.
 * Returns NaN when the scale is 0 (a constant training series: MASE is undefined there).
 */
export function mase(actual: ArrayLike<number>, forecast: ArrayLike<number>, insample: ArrayLike<number>, m = 1): number {
  const scale = seasonalNaiveScale(insample, m);
  const err = mae(actual, forecast);
  if (scale === 0) return Number.NaN;
  return err / scale;
}
