// A disk that grows defects is drained for it: five real server processes with 30 days of a
// healthy real Backblaze drive's SMART history each (imported through the admin API, ending now),
// then a `sector-errors` fault (pending/reallocated sectors growing, reported as SMART 5/197/187)
// on one of them. Its disk-mode score must pass 70 before the fault reaches full strength, while
// every healthy server stays below 50. Real clock (SMART is never on the compressed one).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { httpJson } from '../src/api/http.ts';
import type { FailureScoreReport } from '../src/api/types.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { createLogger } from '../src/common/log.ts';
import { loadBackblazeDrives } from '../src/prediction/datasets.ts';
import { loadDefaultBundle } from '../src/prediction/model-bundle.ts';
import { modeScore } from '../src/prediction/scorer.ts';
import { TestCluster, REPO } from './helpers/cluster.ts';
import { sleep } from './helpers/settle.ts';

const DATA = path.join(REPO, '../shared/data/backblaze_2013_dev.csv.gz');
const MiB = 1024 * 1024;
const RAMP_S = 60;
const bundle = await loadDefaultBundle();
/** The disk mode's own score in a report (its probability through the mode's anchors). */
const diskScore = (r: FailureScoreReport): number => modeScore(r.probabilities.disk, bundle.modes.disk.anchors);

test('sector-errors: the degrading server\'s disk score passes 70 before the fault ends; healthy servers stay below 50', { timeout: 300_000 }, async () => {
  assert.ok(existsSync(DATA), `${DATA} is needed (read in place)`);
  // Five healthy drives with a full month and no grown defects: the servers' pasts.
  const healthy = (await loadBackblazeDrives(DATA)).filter((d) => !d.failed && d.days.length >= 35 && d.smart[1].every((v) => v === 0)).slice(0, 5);
  assert.equal(healthy.length, 5);
  // The servers read the dataset in place: its folder is their import folder.
  const cluster = await TestCluster.start({ servers: 5, importDir: path.dirname(DATA), serverArgs: () => ['--allow-faults', '--telemetry-interval', '500', '--score-interval', '1000', '--smart', 'off'] });
  const client = await PresageClient.connect({ orchestratorUrl: cluster.url, logger: createLogger('sector-test', 'error') });
  try {
    const api = new OrchestratorClient(cluster.url);
    await api.createVolume({ name: 'v', size: 64 * MiB, segmentSize: 4 * MiB, replicas: 2 });
    const vol = await client.openVolume('v');
    for (let off = 0; off < 64 * MiB; off += 4 * MiB) await vol.write(off, Buffer.alloc(64 * 1024, 7));
    const admin = cluster.servers.map((s) => `http://127.0.0.1:${s.adminPort}`);
    await Promise.all(admin.map((base, i) => httpJson(base, 'POST', '/v1/metrics/import', { path: DATA, format: 'backblaze', serial: healthy[i].serial, shiftEndTo: 'now' }, 60_000)));
    const disk = async (i: number) => (await httpJson<FailureScoreReport>(admin[i], 'GET', '/v1/failure-score', undefined, 5000));
    await sleep(3000);
    const t0 = Date.now();
    await httpJson(admin[0], 'POST', '/v1/faults', { profile: 'sector-errors', rampSeconds: RAMP_S, intensity: 5000 }, 5000);
    let crossedAt = -1;
    let healthyMax = 0;
    while (Date.now() - t0 < RAMP_S * 1000) {
      // Reads find the weak sectors (the fault's defects are found by reads and by a background
      // scan, as a drive's are). The failed reads also raise the network mode's data-protocol
      // error ratio, so the disk mode's own score is what is judged here, not the leading mode.
      await Promise.all(Array.from({ length: 64 }, () => vol.read(Math.floor(Math.random() * 16384) * 4096, 4096).catch(() => {})));
      const r = await disk(0);
      if (crossedAt < 0 && diskScore(r) >= 70) crossedAt = Date.now() - t0;
      for (let i = 1; i < 5; i++) healthyMax = Math.max(healthyMax, (await disk(i)).score);
      if (crossedAt >= 0 && Date.now() - t0 > crossedAt + 5000) break;
      await sleep(500);
    }
    const last = await disk(0);
    const faults = await httpJson<unknown>(admin[0], 'GET', '/v1/faults', undefined, 5000);
    assert.ok(crossedAt >= 0, `the degrading server's disk score reached only ${diskScore(last).toFixed(1)} (score ${last.score}, ${last.mode}) in ${RAMP_S} s; faults ${JSON.stringify(faults)}`);
    assert.ok(crossedAt < RAMP_S * 1000, 'before the fault reached full strength');
    assert.ok(last.probabilities.disk > 10 * bundle.modes.disk.anchors.base, `disk probability ${last.probabilities.disk}`);
    assert.ok(healthyMax < 50, `a healthy server reached ${healthyMax}`);
  } finally {
    await client.close();
    await cluster.stop();
  }
});
