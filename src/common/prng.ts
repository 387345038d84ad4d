// The one seeded PRNG of the project (mulberry32). Seeded demo workloads, training runs,
// committed reports and the bundled model all depend on its exact sequence: do not change it.

/** Small, fast, seeded 32-bit PRNG (mulberry32); returns floats in [0, 1), multiples of 2^-32. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic noise in [0, 1) from two integers (e.g. server, minute): synthetic telemetry without PRNG state. */
export function hashNoise(a: number, b: number): number {
  let h = Math.imul(a + 1, 0x9e3779b1) ^ Math.imul(b, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 13;
  return (h >>> 0) / 4294967296;
}
