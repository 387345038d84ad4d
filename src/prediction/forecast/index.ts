/** Metric forecasters behind one interface, and their deserialiser. */
import { type Forecaster, type ForecasterState, ForecastError } from './types.ts';
import { ExpSmoothingForecaster } from './exp-smoothing.ts';
import { ProphetStyleForecaster } from './prophet-style.ts';
import { SeasonalNaiveForecaster } from './seasonal-naive.ts';
import { LstmForecaster } from './lstm.ts';

export * from './types.ts';
export { ExpSmoothingForecaster, type ExpSmoothingConfig, type TrendKind } from './exp-smoothing.ts';
export { ProphetStyleForecaster, type ProphetStyleConfig, type Seasonality } from './prophet-style.ts';
export { SeasonalNaiveForecaster } from './seasonal-naive.ts';
export { LstmForecaster, type LstmConfig } from './lstm.ts';
export { initTfBackend } from './tf-backend.ts';
export { mase, mae, seasonalNaiveScale } from './mase.ts';

/** Rebuilds a fitted forecaster from its toJSON() state (plain data, never code). */
export function forecasterFromJSON(state: ForecasterState): Forecaster {
  if (!state || typeof state !== 'object' || typeof state.kind !== 'string') {
    throw new ForecastError('forecaster state must be an object with a string `kind`');
  }
  switch (state.kind) {
    case 'exp-smoothing': return ExpSmoothingForecaster.fromJSON(state);
    case 'prophet-style': return ProphetStyleForecaster.fromJSON(state);
    case 'seasonal-naive': return SeasonalNaiveForecaster.fromJSON(state);
    case 'lstm': return LstmForecaster.fromJSON(state);
    default: throw new ForecastError(`unknown forecaster kind '${state.kind}'`);
  }
}
