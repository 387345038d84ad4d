import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RangeLock } from './range-lock.ts';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('RangeLock', () => {
  it('lets shared holders and disjoint exclusive holders proceed together', async () => {
    const lock = new RangeLock();
    const a = await lock.acquire(0, 10, false);
    const b = await lock.acquire(5, 15, false);
    const c = await lock.acquire(20, 30, true);
    assert.equal(lock.size, 3);
    a();
    b();
    c();
    assert.equal(lock.size, 0);
  });

  it('makes an overlapping exclusive request wait, and grants in FIFO order', async () => {
    const lock = new RangeLock();
    const order: string[] = [];
    const r1 = await lock.acquire(0, 4, false);
    const w = lock.acquire(2, 3, true).then((rel) => {
      order.push('w');
      return rel;
    });
    // A reader that arrives after the waiting writer must not overtake it.
    const r2 = lock.acquire(0, 1, false).then((rel) => {
      order.push('r2-disjoint');
      return rel;
    });
    const r3 = lock.acquire(2, 3, false).then((rel) => {
      order.push('r3');
      return rel;
    });
    await tick();
    assert.deepEqual(order, ['r2-disjoint']);
    r1();
    const wr = await w;
    await tick();
    assert.deepEqual(order, ['r2-disjoint', 'w']);
    wr();
    wr(); // idempotent
    (await r3)();
    (await r2)();
    assert.deepEqual(order, ['r2-disjoint', 'w', 'r3']);
    assert.equal(lock.size, 0);
  });

  it('rejects invalid ranges', async () => {
    const lock = new RangeLock();
    await assert.rejects(lock.acquire(5, 4, true), RangeError);
    await assert.rejects(lock.acquire(-1, 4, true), RangeError);
    await assert.rejects(lock.acquire(0.5, 4, true), RangeError);
  });
});
