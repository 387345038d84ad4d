/** Small numeric helpers shared by the forecasters: Nelder–Mead and a dense ridge solver. */
import { ForecastError } from './types.ts';

export interface NelderMeadResult { x: number[]; fx: number; iterations: number }

/**
 * Nelder–Mead simplex minimisation (standard coefficients 1, 2, 0.5, 0.5).
 * Deterministic: the initial simplex is x0 plus `step` along each axis.
 */
export function nelderMead(
  f: (x: number[]) => number,
  x0: number[],
  opts: { step?: number; maxIter?: number; tol?: number } = {},
): NelderMeadResult {
  const d = x0.length;
  const step = opts.step ?? 0.5;
  const maxIter = opts.maxIter ?? 200 * d;
  const tol = opts.tol ?? 1e-8;
  const safe = (x: number[]): number => { const v = f(x); return Number.isFinite(v) ? v : Number.POSITIVE_INFINITY; };
  let simplex: { x: number[]; fx: number }[] = [{ x: [...x0], fx: safe(x0) }];
  for (let i = 0; i < d; i++) {
    const x = [...x0];
    x[i]! += step;
    simplex.push({ x, fx: safe(x) });
  }
  let it = 0;
  for (; it < maxIter; it++) {
    simplex.sort((a, b) => a.fx - b.fx);
    const best = simplex[0]!;
    const worst = simplex[d]!;
    if (Math.abs(worst.fx - best.fx) <= tol * (Math.abs(best.fx) + tol)) break;
    const centroid = new Array<number>(d).fill(0);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) centroid[j]! += simplex[i]!.x[j]! / d;
    const along = (t: number): number[] => centroid.map((c, j) => c + t * (worst.x[j]! - c));
    const xr = along(-1);
    const fr = safe(xr);
    if (fr < best.fx) {
      const xe = along(-2);
      const fe = safe(xe);
      simplex[d] = fe < fr ? { x: xe, fx: fe } : { x: xr, fx: fr };
    } else if (fr < simplex[d - 1]!.fx) {
      simplex[d] = { x: xr, fx: fr };
    } else {
      const outside = fr < worst.fx;
      const xc = along(outside ? -0.5 : 0.5);
      const fc = safe(xc);
      if (fc < (outside ? fr : worst.fx)) {
        simplex[d] = { x: xc, fx: fc };
      } else {
        simplex = simplex.map((p, i) => {
          if (i === 0) return p;
          const x = p.x.map((v, j) => best.x[j]! + 0.5 * (v - best.x[j]!));
          return { x, fx: safe(x) };
        });
      }
    }
  }
  simplex.sort((a, b) => a.fx - b.fx);
  return { x: simplex[0]!.x, fx: simplex[0]!.fx, iterations: it };
}

/**
 * Solves the symmetric positive-definite system A x = b by Cholesky (A = L Lᵀ).
 * `a` is row-major p×p and is not modified. Throws if A is not positive definite.
 */
export function choleskySolve(a: Float64Array, b: Float64Array, p: number): Float64Array {
  if (a.length !== p * p || b.length !== p) throw new ForecastError('choleskySolve: dimension mismatch');
  const l = new Float64Array(p * p);
  for (let i = 0; i < p; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * p + j]!;
      for (let k = 0; k < j; k++) s -= l[i * p + k]! * l[j * p + k]!;
      if (i === j) {
        if (!(s > 0)) throw new ForecastError(`choleskySolve: matrix not positive definite at pivot ${i}`);
        l[i * p + i] = Math.sqrt(s);
      } else {
        l[i * p + j] = s / l[j * p + j]!;
      }
    }
  }
  const y = new Float64Array(p);
  for (let i = 0; i < p; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i * p + k]! * y[k]!;
    y[i] = s / l[i * p + i]!;
  }
  const x = new Float64Array(p);
  for (let i = p - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < p; k++) s -= l[k * p + i]! * x[k]!;
    x[i] = s / l[i * p + i]!;
  }
  return x;
}

export function sigmoid(u: number): number {
  return 1 / (1 + Math.exp(-u));
}

export function logit(p: number): number {
  const q = Math.min(1 - 1e-9, Math.max(1e-9, p));
  return Math.log(q / (1 - q));
}
