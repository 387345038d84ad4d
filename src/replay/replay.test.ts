import { test } from 'node:test';
import assert from 'node:assert/strict';
import { replayDrains } from './replay.ts';
import type { UnitTimeline } from '../prediction/live-eval.ts';

const DAY = 86_400_000;
function line(id: string, failed: boolean, failAt: number, scores: number[]): UnitTimeline {
  return { unit: { id, group: id, failed, failAt }, t: scores.map((_, i) => i * DAY), score: scores, mode: scores.map(() => 'disk'), noData: scores.map(() => 0) };
}

test('replay drives the real predictive-drain policy: true drains with lead time, false drains, misses, sustain', async () => {
  const lines = [
    line('fails-caught', true, 9.5 * DAY, [10, 10, 80, 85, 90, 90, 90, 90, 90, 90]),
    line('fails-missed', true, 5.5 * DAY, [10, 20, 30, 40, 45, 48]),
    line('healthy-flap', false, NaN, [10, 75, 10, 10, 10, 10, 10, 10, 10, 10]),
    ...Array.from({ length: 9 }, (_, i) => line(`h${i}`, false, NaN, Array(10).fill(10))),
  ];
  const r = await replayDrains(lines, 100, { config: { sustainMs: 0, recoverMs: 2 * DAY }, staleMs: 2 * DAY });
  const caught = r.drains.find((d) => d.unit === 'fails-caught')!;
  assert.ok(caught.trueDrain);
  assert.equal(caught.t, 2 * DAY);
  assert.equal(caught.leadDays, 7.5);
  assert.ok(r.drains.some((d) => d.unit === 'healthy-flap' && !d.trueDrain));
  assert.equal(r.falselyDrainedUnits, 1);
  assert.equal(r.caughtUnits, 1);
  assert.deepEqual(r.missed, ['fails-missed']);
  assert.equal(r.falseDrainsPerUnitDay, 1 / 100);
  // With a sustain longer than the flap, the healthy unit is never drained; the caught one later.
  const s = await replayDrains(lines, 100, { config: { sustainMs: 1.5 * DAY }, staleMs: 2 * DAY });
  assert.equal(s.falselyDrainedUnits, 0);
  assert.equal(s.drains.find((d) => d.unit === 'fails-caught')!.t, 4 * DAY);
});

test('replay honours the draining cap of the real policy', async () => {
  const lines = Array.from({ length: 8 }, (_, i) => line(`u${i}`, false, NaN, [90, 90, 90]));
  const r = await replayDrains(lines, 24, { config: { sustainMs: 0, maxDrainingFraction: 0.25 } });
  assert.equal(r.drains.length, 2, 'at most 25 % of 8 units drain at once');
  assert.ok(r.warnings > 0, 'the cap refusals are logged as warnings');
});

test('on real Backblaze drives, replay with no sustain drains exactly the units eval counts at >= 70', async () => {
  const { existsSync } = await import('node:fs');
  const { loadBackblazeDrives } = await import('../prediction/datasets.ts');
  const { backblazeDataset } = await import('../prediction/live-datasets.ts');
  const { scoreStreams, summarize } = await import('../prediction/live-eval.ts');
  const { FailureScorer } = await import('../prediction/scorer.ts');
  const { loadDefaultBundle } = await import('../prediction/model-bundle.ts');
  const DATA = '../shared/data/backblaze_2013_dev.csv.gz';
  assert.ok(existsSync(DATA), `${DATA} is needed (read in place)`);
  const all = await loadBackblazeDrives(DATA);
  // Every failed drive and enough healthy ones with grown defects that some alarm.
  const drives = [...all.filter((d) => d.failed), ...all.filter((d) => !d.failed && d.smart[1].some((v) => v > 0)).slice(0, 400)];
  const ds = backblazeDataset(DATA, drives, { cadenceMs: 86_400_000 });
  const lines = await scoreStreams(new FailureScorer(await loadDefaultBundle()), ds.groups, { staleMs: ds.staleMs });
  const s = summarize(lines, ds.baselines);
  const r = await replayDrains(lines, ds.unitDays, { staleMs: ds.staleMs, config: { sustainMs: 0, maxDrainingFraction: 1 } });
  assert.ok(s.thresholds['70'].falseAlarms > 0 && s.thresholds['70'].caught > 0, 'the subset exercises both kinds');
  assert.equal(r.falselyDrainedUnits, s.thresholds['70'].falseAlarms);
  assert.equal(r.caughtUnits, s.thresholds['70'].caught);
});
