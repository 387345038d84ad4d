// Command-line helpers shared by the benchmarks: one usage line per benchmark, and whole-number
// options checked the same way everywhere (a bad value prints the usage and exits 2).

export function benchArgs(prog: string, usageLine: string): {
  usage: (msg?: string) => never;
  intArg: (v: string | undefined, name: string, def: number, min: number) => number;
} {
  const usage = (msg?: string): never => {
    if (msg) console.error(`${prog}: ${msg}`);
    console.error(`usage: ${usageLine}`);
    process.exit(2);
  };
  const intArg = (v: string | undefined, name: string, def: number, min: number): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) usage(`--${name} must be a whole number >= ${min} (got ${JSON.stringify(v)})`);
    return n;
  };
  return { usage, intArg };
}
