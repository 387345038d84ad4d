import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BundleError, DEFAULT_MODEL_PATH, loadBundle, loadDefaultBundle, parseBundle, saveBundle, validateBundle, bundleToJSON, type ModelBundle } from './model-bundle.ts';
import { ModelManager } from './lifecycle.ts';
import { syntheticQuery } from './synthetic-telemetry.ts';

const clone = (b: ModelBundle): ModelBundle => JSON.parse(JSON.stringify(b));

test('the bundled default model is valid, modest in size, and honest about its heuristic modes', async () => {
  const b = await loadDefaultBundle();
  assert.equal(b.format, 'presage-model/1');
  assert.ok((await stat(DEFAULT_MODEL_PATH)).size < 2 * 1024 * 1024);
  // Disk: whichever candidate won on validation (docs/prediction.md); both kinds are validated.
  assert.ok(b.modes.disk.kind === 'gbdt' || b.modes.disk.kind === 'rule');
  // Fail-slow is a fitted monotone logistic (kind 'rule', but validated and not heuristic).
  assert.equal(b.modes['fail-slow'].kind, 'rule');
  assert.equal(b.modes['fail-slow'].validated, true);
  assert.doesNotMatch(b.modes['fail-slow'].notes, /HEURISTIC/);
  assert.equal(b.modes.disk.validated, true);
  for (const m of ['network', 'software'] as const) {
    assert.equal(b.modes[m].kind, 'rule');
    assert.equal(b.modes[m].validated, false);
    assert.match(b.modes[m].notes, /HEURISTIC, UNVALIDATED/);
  }
  assert.ok(b.validation.disk && b.validation.disk.auc! > 0.75, 'disk AUC recorded');
  assert.ok(b.validation['fail-slow']);
  assert.deepEqual(b.trainedOn.datasets, ['backblaze_2013_dev.csv.gz', 'perseus_A_dev_1min.csv.gz']);
});

test('save → load round trip is byte-for-byte stable and gives an equal bundle', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'presage-bundle-'));
  try {
    const b = await loadDefaultBundle();
    const p1 = join(dir, 'a.json');
    const p2 = join(dir, 'b.json');
    await saveBundle(p1, b);
    const back = await loadBundle(p1);
    assert.deepEqual(back, b);
    await saveBundle(p2, back);
    assert.deepEqual(await readFile(p2), await readFile(p1));
    assert.equal((await readFile(p1, 'utf8')), bundleToJSON(b));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('schema validation names the bad field', async () => {
  const good = await loadDefaultBundle();
  const cases: [string, (b: any) => void, RegExp][] = [
    ['format', (b) => (b.format = 'presage-model/2'), /format must be 'presage-model\/1'/],
    ['version', (b) => (b.version = '../etc/passwd'), /version must be/],
    ['missing mode', (b) => delete b.modes.network, /modes\.network is missing/],
    ['unknown mode', (b) => (b.modes.power = b.modes.network), /modes\.power is not a failure mode/],
    ['horizon', (b) => (b.modes.disk.horizon = 'a week'), /modes\.disk\.horizon must look like/],
    ['anchors order', (b) => (b.modes.software.anchors.warn = 0.9), /modes\.software\.anchors must satisfy/],
    ['reference length', (b) => b.modes.disk.reference.pop(), /modes\.disk\.reference must be/],
    ['gbdt', (b) => Object.assign(b.modes.disk, { kind: 'gbdt', gbdt: { format: 'pickle' }, calibrator: { kind: 'platt', a: 1, b: 0 } }), /modes\.disk\.gbdt is not a valid GBDT/],
    ['feature count', (b) => b.modes.disk.features.push('extra'), /modes\.disk\.(reference|gbdt|terms)/],
    ['calibrator', (b) => Object.assign(b.modes.disk, { kind: 'gbdt', gbdt: good.modes.network, calibrator: { kind: 'magic' } }), /modes\.disk\.(gbdt|calibrator)/],
    ['rule term feature', (b) => (b.modes.network.terms[0].feature = 'nope'), /modes\.network\.terms\[0\]\.feature 'nope' is not among/],
    ['rule transform', (b) => (b.modes.network.terms[0].transform = 'exp'), /terms\[0\]\.transform must be/],
    ['validation mode', (b) => (b.validation.power = b.validation.disk), /validation\.power is not a failure mode/],
  ];
  for (const [name, mutate, re] of cases) {
    const b = clone(good);
    mutate(b);
    assert.throws(() => validateBundle(b), (err: Error) => err instanceof BundleError && re.test(err.message), name);
  }
  assert.throws(() => parseBundle('{not json', 'x.json'), /x\.json is not JSON/);
  assert.throws(() => parseBundle('[]', 'x.json'), /root must be an object \(in x\.json\)/);
  await assert.rejects(loadBundle('/nonexistent/model.json'), /cannot read \/nonexistent\/model\.json: ENOENT/);
});

test('hot swap: load() and reload() replace the scorer without a restart; a bad file leaves the current one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'presage-models-'));
  try {
    const mgr = await ModelManager.open(dir);
    const def = await loadDefaultBundle();
    assert.equal(mgr.version, def.version);
    const now = Date.UTC(2026, 0, 10, 12);
    const q = syntheticQuery({ now, minutes: 2 * 1440, seed: 2, netLoss: { minutes: 30, retransRatio: 0.02 } });
    const before = mgr.scorer.score({ serverId: 's', query: q, now, forecast: false });

    // A second version whose network rule is twice as sensitive.
    const v2 = clone(def);
    v2.version = 'test-v2';
    for (const t of (v2.modes.network as any).terms) t.weight *= 2;
    const file = join(dir, 'incoming.json');
    await saveBundle(file, v2);
    const swaps: unknown[] = [];
    mgr.on('swap', (e) => swaps.push(e));
    await mgr.load(file);
    assert.equal(mgr.version, 'test-v2');
    assert.deepEqual(swaps, [{ from: def.version, to: 'test-v2' }]);
    assert.equal((await readFile(join(dir, 'current'), 'utf8')).trim(), 'test-v2');
    assert.deepEqual(await loadBundle(join(dir, 'models', 'test-v2.json')), v2);
    const after = mgr.scorer.score({ serverId: 's', query: q, now, forecast: false });
    assert.equal(after.modelVersion, 'test-v2');
    assert.ok(after.probabilities.network > before.probabilities.network, `${after.probabilities.network} > ${before.probabilities.network}`);

    // Another process points `current` elsewhere: reload() (or the watcher) picks it up.
    const v3 = clone(def);
    v3.version = 'test-v3';
    await saveBundle(join(dir, 'models', 'test-v3.json'), v3);
    await writeFile(join(dir, 'current'), 'test-v3\n');
    assert.equal(await mgr.reload(), true);
    assert.equal(mgr.version, 'test-v3');
    assert.equal(await mgr.reload(), false);

    // The watcher notices a pointer change by itself.
    const stop = mgr.watch(50);
    const swapped = new Promise((resolve) => mgr.once('swap', resolve));
    await writeFile(join(dir, 'current'), 'test-v2\n');
    await Promise.race([swapped, new Promise((_, rej) => setTimeout(() => rej(new Error('watcher did not reload in 5 s')), 5000))]);
    assert.equal(mgr.version, 'test-v2');
    stop();

    // A broken file is refused and the current model stays.
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ ...v3, version: 'bad', modes: { ...v3.modes, disk: { kind: 'gbdt' } } }));
    await assert.rejects(mgr.load(bad), BundleError);
    assert.equal(mgr.version, 'test-v2');
    mgr.close();

    // A fresh manager on the same directory starts from the pointer.
    const again = await ModelManager.open(dir);
    assert.equal(again.version, 'test-v2');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
