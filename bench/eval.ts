/**
 * Evaluate the failure-mode models on a real dataset and write a markdown report.
 *   npx tsx bench/eval.ts --dataset /work/shared/data/backblaze_2013_dev.csv.gz --out docs/eval-backblaze.md [--seed 1]
 *   npx tsx bench/eval.ts --gbdt-speed   (time GBDT training on 600k x 30 synthetic rows)
 */
import { runEvaluation } from '../src/prediction/evaluate.ts';
import { mulberry32 } from '../src/common/prng.ts';
import { GradientBoostedTrees } from '../src/prediction/gbdt.ts';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  if (process.argv.includes('--gbdt-speed')) {
    const n = 600_000;
    const m = 30;
    const rnd = mulberry32(1);
    const data = new Float32Array(n * m);
    const y = new Uint8Array(n);
    for (let r = 0; r < n; r++) {
      for (let f = 0; f < m; f++) data[r * m + f] = rnd();
      y[r] = data[r * m] + data[r * m + 1] * rnd() > 1.2 ? 1 : 0;
    }
    const t0 = Date.now();
    const model = GradientBoostedTrees.train({ nRows: n, nCols: m, data }, y, { params: { nTrees: 100, maxDepth: 6, subsample: 0.8, earlyStoppingRounds: 0 } });
    console.log(`GBDT: ${n} rows x ${m} features, ${model.nTrees} trees of depth 6, subsample 0.8: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return;
  }
  const dataset = arg('dataset');
  if (!dataset) {
    console.error('usage: npx tsx bench/eval.ts --dataset <file.csv.gz> [--out report.md] [--seed N] [--max-rows N]');
    process.exit(2);
  }
  const seedText = arg('seed');
  const maxRows = arg('max-rows');
  const seed = seedText === undefined ? undefined : Number(seedText);
  if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${seedText}`);
  const report = await runEvaluation({
    dataset,
    out: arg('out'),
    seed,
    maxRows: maxRows === undefined ? undefined : Number(maxRows),
    log: (m) => console.error(`[eval] ${m}`),
  });
  console.log(JSON.stringify({ dataset: report.dataset, seconds: report.seconds, metrics: report.metrics }, null, 2));
}

main().catch((e: unknown) => {
  console.error(`eval failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
