/**
 * Rebuilds src/prediction/models/default-model.json from ../shared/data, reproducibly.
 *   npx tsx scripts/train-default-model.ts [--data ../shared/data] [--out src/prediction/models/default-model.json] [--seed 1]
 * Prints the per-mode validation metrics. Same data + seed → same models and version
 * (only createdAt changes).
 */
import { resolve } from 'node:path';
import { trainDefaultBundle } from '../src/prediction/train.ts';
import { saveBundle, DEFAULT_MODEL_PATH } from '../src/prediction/model-bundle.ts';
import { statSync } from 'node:fs';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main(): Promise<void> {
  const data = resolve(arg('data') ?? '../shared/data');
  const out = resolve(arg('out') ?? DEFAULT_MODEL_PATH);
  const seed = Number(arg('seed') ?? '1');
  if (!Number.isInteger(seed)) throw new Error('--seed must be an integer');
  const t0 = Date.now();
  const bundle = await trainDefaultBundle({ dataDir: data, seed, log: (m) => console.error(m) });
  await saveBundle(out, bundle);
  console.log(`wrote ${out} (${(statSync(out).size / 1024).toFixed(0)} KiB), version ${bundle.version}, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const [mode, v] of Object.entries(bundle.validation)) {
    console.log(`${mode}: AUC ${v.auc?.toFixed(3)}  recall@1%FA ${v.recallAt1pctFA?.toFixed(3)}  Brier ${v.brier?.toExponential(3)} (base rate ${v.brierBaseRate?.toExponential(3)})  [${v.positives} positive / ${v.negatives} negative ${v.unit}]`);
  }
  for (const [mode, m] of Object.entries(bundle.modes)) console.log(`${mode}: ${m.kind}, horizon ${m.horizon}, anchors base ${m.anchors.base.toExponential(2)} warn ${m.anchors.warn.toExponential(2)} act ${m.anchors.act.toExponential(2)}${m.validated ? '' : ' (heuristic)'}`);
}

main().catch((err) => {
  console.error(`train-default-model: ${(err as Error).message}`);
  process.exit(1);
});
