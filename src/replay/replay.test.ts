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
