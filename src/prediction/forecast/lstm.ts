/**
 * LSTM forecaster (TensorFlow.js, wasm backend). Inputs are windows of the last W
 * standardised values, each window taken relative to its last value (so the net is
 * level-invariant and can follow counters and level shifts beyond the training range);
 * when a period is given a second input channel carries, for
 * each window step, the value one seasonal lag m before, shifted H steps ahead (m = the
 * smallest multiple of the period ≥ H, so no target leaks in), so that the last
 * H steps of that channel are exactly the seasonal-naive forecast of the targets (the net
 * can learn to correct it instead of rediscovering a long season from a short window).
 * One LSTM layer → Dense(H): direct multi-step output for h ≤ H, recursive in blocks of H
 * beyond. Missing values are linearly interpolated before windowing. Training: Adam on
 * MSE, seeded initialisers and a seeded shuffle, early stopping on the most recent 20 %
 * of windows with the best weights restored. Intervals: per-step RMSE on those
 * validation windows. Weights are exported as plain number arrays.
 */
import {
  type FitOptions, type Forecaster, type ForecasterState, type ForecastResult, Z95,
  checkHorizon, checkPeriod, checkSeries, notFitted, num, numArray, ForecastError,
} from './types.ts';
import { mulberry32 } from '../../common/prng.ts';
import { initTfBackend, tf } from './tf-backend.ts';

export interface LstmConfig {
  /** Input window length W (default 24). */
  window?: number;
  /** Direct output length H (default 12); longer horizons are forecast recursively. */
  outputSteps?: number;
  /** LSTM units (default 16). */
  units?: number;
  /** Maximum epochs (default 50) and early-stopping patience (default 5). */
  epochs?: number;
  patience?: number;
  /** Mini-batch size (default 128). */
  batchSize?: number;
  learningRate?: number;
  /** Train on at most this many of the most recent windows (default 320), to keep fits to seconds. */
  maxWindows?: number;
  seed?: number;
}

interface WeightData { shape: number[]; values: number[] }

interface LstmModelState {
  window: number;
  outputSteps: number;
  units: number;
  m: number; // seasonal lag of the second channel (a multiple of the period ≥ H), 0 = none
  mu: number;
  sd: number;
  tail: number[]; // last (window + m) history values, interpolated, original units
  stepRmse: number[]; // validation RMSE per output step, original units
  weights: WeightData[];
  epochsRun: number;
}

export class LstmForecaster implements Forecaster {
  readonly name = 'lstm';
  private readonly cfg: Required<LstmConfig>;
  private st: LstmModelState | null = null;
  private net: import('@tensorflow/tfjs').LayersModel | null = null;

  constructor(config: LstmConfig = {}) {
    this.cfg = {
      window: config.window ?? 24, outputSteps: config.outputSteps ?? 12, units: config.units ?? 16,
      epochs: config.epochs ?? 50, patience: config.patience ?? 5, batchSize: config.batchSize ?? 128,
      learningRate: config.learningRate ?? 0.01, maxWindows: config.maxWindows ?? 320, seed: config.seed ?? 42,
    };
    for (const [k, v] of Object.entries(this.cfg)) {
      if (!Number.isFinite(v) || v < 0 || (k !== 'learningRate' && !Number.isInteger(v))) {
        throw new ForecastError(`lstm: ${k} must be a non-negative ${k === 'learningRate' ? 'number' : 'integer'}, got ${v}`);
      }
    }
    if (this.cfg.window < 1 || this.cfg.outputSteps < 1 || this.cfg.units < 1 || this.cfg.epochs < 1 || this.cfg.batchSize < 1) {
      throw new ForecastError('lstm: window, outputSteps, units, epochs and batchSize must be ≥ 1');
    }
  }

  /** Epochs actually run in the last fit (early stopping), for reporting. */
  get epochsRun(): number {
    if (!this.st) notFitted(this.name);
    return this.st.epochsRun;
  }

  async fit(series: Float64Array, opts: FitOptions = {}): Promise<void> {
    checkSeries(series, 2, this.name);
    const period = checkPeriod(opts.period, this.name);
    await initTfBackend();
    const { window: W, outputSteps: H, units, seed } = this.cfg;
    const y = interpolate(series);
    const n = y.length;
    // Seasonal channel: lag = the smallest multiple of the period ≥ H, so that the channel
    // never reaches past the window's end into the targets; only with enough history.
    const lag = period !== undefined && period >= 2 ? period * Math.ceil(H / period) : 0;
    const m = lag > 0 && n >= lag + W + 2 * H ? lag : 0;
    const firstStart = m > 0 ? Math.max(0, m - H) : 0;
    const nWindows = n - W - H + 1 - firstStart;
    if (nWindows < 4) {
      throw new ForecastError(`lstm: series of ${n} values too short for window ${W} + output ${H} (need ≥ ${W + H + 3 + firstStart})`);
    }
    let mu = 0;
    for (const v of y) mu += v;
    mu /= n;
    let sd = 0;
    for (const v of y) sd += (v - mu) ** 2;
    sd = Math.sqrt(sd / n) || 1;
    const z = y.map((v) => (v - mu) / sd);
    const C = m > 0 ? 2 : 1;

    // Windows, most recent last; keep the last maxWindows.
    const starts: number[] = [];
    for (let s = firstStart; s + W + H <= n; s++) starts.push(s);
    const used = starts.slice(Math.max(0, starts.length - this.cfg.maxWindows));
    const nVal = Math.max(1, Math.round(used.length * 0.2));
    const trainStarts = used.slice(0, used.length - nVal);
    const valStarts = used.slice(used.length - nVal);
    if (trainStarts.length < 1) throw new ForecastError('lstm: not enough windows to train');
    const inputOf = (s: number, out: Float32Array, off: number): void => {
      const last = z[s + W - 1]!;
      for (let k = 0; k < W; k++) {
        out[off + k * C] = z[s + k]! - last;
        if (m > 0) out[off + k * C + 1] = z[s + k + H - m]! - last;
      }
    };
    const batchTensors = (ss: number[]): [import('@tensorflow/tfjs').Tensor, import('@tensorflow/tfjs').Tensor] => {
      const xb = new Float32Array(ss.length * W * C);
      const yb = new Float32Array(ss.length * H);
      ss.forEach((s, i) => {
        inputOf(s, xb, i * W * C);
        for (let h = 0; h < H; h++) yb[i * H + h] = z[s + W + h]! - z[s + W - 1]!;
      });
      return [tf.tensor3d(xb, [ss.length, W, C]), tf.tensor2d(yb, [ss.length, H])];
    };

    this.net?.dispose();
    const net = buildNet(W, C, H, units, seed);
    net.compile({ optimizer: tf.train.adam(this.cfg.learningRate), loss: 'meanSquaredError' });
    const [xv, yv] = batchTensors(valStarts);
    const rand = mulberry32(seed);
    let best = Number.POSITIVE_INFINITY;
    let bestWeights: Float32Array[] | null = null;
    let sinceBest = 0;
    let epochsRun = 0;
    try {
      for (let epoch = 0; epoch < this.cfg.epochs; epoch++) {
        const order = [...trainStarts];
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [order[i], order[j]] = [order[j]!, order[i]!];
        }
        const [xt, yt] = batchTensors(order);
        await net.fit(xt, yt, { epochs: 1, batchSize: this.cfg.batchSize, shuffle: false, verbose: 0 });
        xt.dispose();
        yt.dispose();
        epochsRun++;
        const lossT = net.evaluate(xv, yv, { batchSize: 1024 }) as import('@tensorflow/tfjs').Scalar;
        const loss = (await lossT.data())[0]!;
        lossT.dispose();
        if (loss < best - 1e-7) {
          best = loss;
          bestWeights = net.getWeights().map((w) => w.dataSync().slice() as Float32Array);
          sinceBest = 0;
        } else if (++sinceBest >= this.cfg.patience) {
          break;
        }
      }
      if (bestWeights) setWeightsFrom(net, bestWeights.map((v) => Array.from(v)));
      // Per-step validation RMSE, in original units, for the intervals.
      const pv = tf.tidy(() => net.predict(xv) as import('@tensorflow/tfjs').Tensor).dataSync();
      const yvd = yv.dataSync();
      const stepRmse: number[] = [];
      for (let h = 0; h < H; h++) {
        let s = 0;
        for (let i = 0; i < valStarts.length; i++) s += (pv[i * H + h]! - yvd[i * H + h]!) ** 2;
        stepRmse.push(sd * Math.sqrt(s / valStarts.length));
      }
      this.st = {
        window: W, outputSteps: H, units, m, mu, sd,
        tail: Array.from(y.subarray(Math.max(0, n - W - m))),
        stepRmse,
        weights: net.getWeights().map((w) => ({ shape: [...w.shape], values: Array.from(w.dataSync()) })),
        epochsRun,
      };
      this.net = net;
    } catch (err) {
      net.dispose();
      throw err;
    } finally {
      xv.dispose();
      yv.dispose();
    }
  }

  forecast(horizon: number): ForecastResult {
    checkHorizon(horizon, this.name);
    const st = this.st;
    if (!st) notFitted(this.name);
    const net = (this.net ??= restoreNet(st, this.cfg.seed));
    const { window: W, outputSteps: H, m, mu, sd } = st;
    const C = m > 0 ? 2 : 1;
    const buf = [...st.tail]; // history + forecasts so far, original units
    const mean = new Float64Array(horizon);
    for (let done = 0; done < horizon; done += H) {
      const len = buf.length;
      const x = new Float32Array(W * C);
      const last = (buf[len - 1]! - mu) / sd;
      for (let k = 0; k < W; k++) {
        const t = len - W + k;
        x[k * C] = (buf[t]! - mu) / sd - last;
        if (m > 0) x[k * C + 1] = (buf[t + H - m]! - mu) / sd - last;
      }
      const out = tf.tidy(() => (net.predict(tf.tensor3d(x, [1, W, C])) as import('@tensorflow/tfjs').Tensor).dataSync());
      for (let h = 0; h < H; h++) {
        const v = mu + sd * (out[h]! + last);
        buf.push(v);
        if (done + h < horizon) mean[done + h] = v;
      }
    }
    const lower = new Float64Array(horizon);
    const upper = new Float64Array(horizon);
    for (let i = 0; i < horizon; i++) {
      // Beyond H the recursion compounds errors: widen by √(number of blocks).
      const s = st.stepRmse[i % H]! * Math.sqrt(Math.floor(i / H) + 1);
      lower[i] = mean[i]! - Z95 * s;
      upper[i] = mean[i]! + Z95 * s;
    }
    return { mean, lower, upper };
  }

  toJSON(): ForecasterState {
    const st = this.st;
    if (!st) notFitted(this.name);
    return {
      kind: 'lstm', version: 1, window: st.window, outputSteps: st.outputSteps, units: st.units, m: st.m,
      mu: st.mu, sd: st.sd, tail: [...st.tail], stepRmse: [...st.stepRmse], epochsRun: st.epochsRun,
      weights: st.weights.map((w) => ({ shape: [...w.shape], values: [...w.values] })),
    };
  }

  /** Rebuilds the network on the current tfjs backend (call `await initTfBackend()` first to get wasm). */
  static fromJSON(state: ForecasterState): LstmForecaster {
    if (state.kind !== 'lstm' || state.version !== 1) throw new ForecastError('not an lstm v1 state');
    const ws = state.weights;
    if (!Array.isArray(ws)) throw new ForecastError('lstm state: weights must be an array');
    const weights = ws.map((w, i) => {
      const o = w as Record<string, unknown>;
      const shape = numArray(o, 'shape');
      const values = numArray(o, 'values');
      if (values.length !== shape.reduce((a, b) => a * b, 1)) throw new ForecastError(`lstm state: weight ${i} size does not match its shape`);
      return { shape, values };
    });
    const f = new LstmForecaster({ window: num(state, 'window'), outputSteps: num(state, 'outputSteps'), units: num(state, 'units') });
    const st: LstmModelState = {
      window: num(state, 'window'), outputSteps: num(state, 'outputSteps'), units: num(state, 'units'), m: num(state, 'm'),
      mu: num(state, 'mu'), sd: num(state, 'sd'), tail: numArray(state, 'tail'), stepRmse: numArray(state, 'stepRmse'),
      weights, epochsRun: num(state, 'epochsRun'),
    };
    if (st.tail.length < st.window + st.m || st.stepRmse.length !== st.outputSteps) throw new ForecastError('lstm state: tail or stepRmse has the wrong length');
    f.st = st;
    f.net = restoreNet(st, 0); // fail now, not at forecast time, on weights that do not fit the architecture
    return f;
  }

  /** Frees the tfjs tensors of the network. */
  dispose(): void {
    this.net?.dispose();
    this.net = null;
  }
}

function buildNet(W: number, C: number, H: number, units: number, seed: number): import('@tensorflow/tfjs').LayersModel {
  const net = tf.sequential();
  net.add(tf.layers.lstm({
    units, inputShape: [W, C],
    kernelInitializer: tf.initializers.glorotUniform({ seed }),
    recurrentInitializer: tf.initializers.orthogonal({ seed: seed + 1 }),
  }));
  net.add(tf.layers.dense({ units: H, kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 2 }) }));
  return net;
}

function restoreNet(st: LstmModelState, seed: number): import('@tensorflow/tfjs').LayersModel {
  const net = buildNet(st.window, st.m > 0 ? 2 : 1, st.outputSteps, st.units, seed);
  setWeightsFrom(net, st.weights.map((w) => w.values), st.weights.map((w) => w.shape));
  return net;
}

function setWeightsFrom(net: import('@tensorflow/tfjs').LayersModel, values: number[][], shapes?: number[][]): void {
  const current = net.getWeights();
  if (current.length !== values.length) throw new ForecastError(`lstm: expected ${current.length} weight tensors, got ${values.length}`);
  const tensors = current.map((w, i) => {
    const shape = shapes?.[i] ?? w.shape;
    if (shape.join('x') !== w.shape.join('x')) throw new ForecastError(`lstm: weight ${i} has shape ${shape.join('x')}, expected ${w.shape.join('x')}`);
    return tf.tensor(values[i]!, w.shape, 'float32');
  });
  net.setWeights(tensors);
  for (const t of tensors) t.dispose();
}

/** Linear interpolation of NaN gaps; leading/trailing gaps take the nearest observed value. */
export function interpolate(series: Float64Array): Float64Array {
  const y = Float64Array.from(series);
  let prev = -1;
  for (let t = 0; t <= y.length; t++) {
    if (t < y.length && !Number.isFinite(y[t]!)) continue;
    if (t - prev > 1) {
      for (let k = prev + 1; k < t; k++) {
        if (prev < 0) y[k] = y[t]!;
        else if (t >= y.length) y[k] = y[prev]!;
        else y[k] = y[prev]! + ((y[t]! - y[prev]!) * (k - prev)) / (t - prev);
      }
    }
    prev = t;
  }
  return y;
}
