// Human-readable byte sizes: parsing for CLI flags, formatting for tables.

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};

/** Parses "256MiB", "1G", "4096", "1.5 GiB". Throws a one-line error on bad input. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) throw new Error(`invalid size "${text}" (expected e.g. 256MiB, 1GiB, 4096)`);
  const unit = UNITS[m[2].toLowerCase()];
  if (unit === undefined) throw new Error(`invalid size unit "${m[2]}" in "${text}" (use B, KiB, MiB, GiB, TiB)`);
  const value = Number(m[1]) * unit;
  if (!Number.isSafeInteger(value)) throw new Error(`size "${text}" is not a whole number of bytes`);
  return value;
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  const s = i === 0 ? String(v) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return `${n < 0 ? '-' : ''}${s} ${units[i]}`;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}
