// PartialFrameBudget: the total follows what holders report; over the cap the largest holder is
// evicted (once), never more than needed; FrameReader reports its incomplete tail to it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameReader } from './codec.ts';
import { PartialFrameBudget, type BudgetHolder } from './partial-frame-budget.ts';

class Holder implements BudgetHolder {
  evicted: string[] = [];
  evict(reason: string): void { this.evicted.push(reason); }
}

test('the total follows updates; over the cap the largest holder is evicted, once, and only as many as needed', () => {
  const b = new PartialFrameBudget(100);
  const [x, y, z] = [new Holder(), new Holder(), new Holder()];
  b.update(x, 40);
  b.update(y, 30);
  assert.equal(b.total, 70);
  b.update(x, 20);
  assert.equal(b.total, 50);
  b.update(z, 60); // 110 > 100: z holds the most
  assert.equal(z.evicted.length, 1);
  assert.match(z.evicted[0]!, /exhausted .*held the most \(60 bytes\)/);
  assert.deepEqual([x.evicted.length, y.evicted.length], [0, 0]);
  assert.equal(b.total, 50);
  b.update(z, 0); // an evicted holder reporting 0 changes nothing
  assert.equal(b.total, 50);
  b.update(y, 0);
  b.update(x, 0);
  assert.equal(b.total, 0);
  assert.throws(() => new PartialFrameBudget(0), RangeError);
});

test('FrameReader counts only its incomplete tail and is evicted with a FrameError', () => {
  const b = new PartialFrameBudget(1000);
  const frames: number[] = [];
  const errors: string[] = [];
  const r = new FrameReader((body) => frames.push(body.length), (e) => errors.push(e.message), 4096, b);
  const frame = (n: number) => { const f = Buffer.alloc(4 + n); f.writeUInt32BE(n); return f; };
  r.push(Buffer.concat([frame(10), frame(600).subarray(0, 300)]));
  assert.deepEqual(frames, [10]);
  assert.equal(b.total, 300, 'the complete frame is not held; the partial one is');
  r.push(frame(600).subarray(300));
  assert.deepEqual(frames, [10, 600]);
  assert.equal(b.total, 0);
  const other = new FrameReader(() => {}, () => {}, 4096, b);
  other.push(frame(900).subarray(0, 500));
  r.push(frame(900).subarray(0, 700)); // 1200 > 1000: r holds the most and is evicted
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /exhausted/);
  assert.equal(b.total, 500);
  r.push(frame(10)); // a failed reader takes nothing more
  assert.deepEqual(frames, [10, 600]);
  other.release();
  assert.equal(b.total, 0);
});
