import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { EmbeddedKvStore } from './embedded-kv.ts';
import { KvReplica, type KvSource } from './kv-replica.ts';
import type { KvEvent, KvTxn } from './kv.ts';

/** Stops/closes what a test opened even when an assertion fails, so no loop outlives it. */
function cleanup(t: TestContext, ...things: { stop?: () => Promise<void>; close?: () => Promise<void> }[]): void {
  t.after(async () => {
    for (const x of things) await (x.stop ?? x.close)!.call(x);
  });
}

function sorted(it: Iterable<[string, string]>): [string, string][] {
  return [...it].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

async function rangePairs(s: EmbeddedKvStore, prefix: string): Promise<[string, string][]> {
  return sorted((await s.range(prefix)).entries.map((e) => [e.key, e.value] as [string, string]));
}

/** A source whose changesSince can be held back, as if the network (or the replica) lagged. */
class GatedSource implements KvSource {
  calls = 0;
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  constructor(private readonly inner: KvSource) {}
  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }
  release(): void {
    this.open?.();
    this.gate = undefined;
  }
  range(prefix: string) {
    return this.inner.range(prefix);
  }
  async changesSince(prefix: string, after: number, timeoutMs: number) {
    this.calls++;
    if (this.gate) await this.gate;
    return this.inner.changesSince(prefix, after, timeoutMs);
  }
}

test('start loads the prefix, then follows puts and deletes as deltas', async (t) => {
  const s = EmbeddedKvStore.open(':memory:');
  await s.txn({ put: [{ key: 'smt/a', value: '1' }, { key: 'smt/b', value: '2' }, { key: 'other/x', value: 'no' }] });
  const r = new KvReplica(s, 'smt/', { pollTimeoutMs: 5000 });
  cleanup(t, r, s);
  const reloads: number[] = [];
  const changes: KvEvent[] = [];
  r.on('reload', () => reloads.push(r.revision));
  r.on('change', (ev) => changes.push(ev));
  await r.start();
  assert.equal(r.revision, 1);
  assert.deepEqual(reloads, [1]);
  assert.deepEqual(sorted(r.entries()), [
    ['smt/a', '1'],
    ['smt/b', '2'],
  ]);
  assert.equal(r.get('other/x'), undefined);

  const { revision } = await s.txn({ put: [{ key: 'smt/c', value: '3' }, { key: 'other/y', value: 'no' }], delete: ['smt/a'] });
  assert.equal(await r.waitForRevision(revision, 2000), true);
  assert.equal(r.revision, 2);
  assert.deepEqual(sorted(r.entries()), [
    ['smt/b', '2'],
    ['smt/c', '3'],
  ]);
  assert.deepEqual(changes, [
    { type: 'put', key: 'smt/c', value: '3', revision: 2 },
    { type: 'delete', key: 'smt/a', revision: 2 },
  ]);
  assert.deepEqual(r.stats, { fullLoads: 1, deltaEvents: 2 });
  // Not yet reached: times out false.
  assert.equal(await r.waitForRevision(99, 50), false);
  await r.stop();
  await s.close();
});

test('a burst of 1000 updates converges by deltas alone', async (t) => {
  const s = EmbeddedKvStore.open(':memory:');
  const r = new KvReplica(s, 'smt/', { pollTimeoutMs: 5000 });
  cleanup(t, r, s);
  await r.start();
  let last = 0;
  for (let i = 0; i < 1000; i++) {
    const txn: KvTxn = { put: [{ key: `smt/${i % 300}`, value: `v${i}` }] };
    const del = `smt/${(i * 13 + 1) % 300}`;
    if (i % 7 === 6 && del !== txn.put![0]!.key) txn.delete = [del];
    last = (await s.txn(txn)).revision;
  }
  assert.equal(await r.waitForRevision(last, 5000), true);
  assert.deepEqual(sorted(r.entries()), await rangePairs(s, 'smt/'));
  assert.equal(r.stats.fullLoads, 1);
  const events = (await s.changesSince('smt/', 0, 0)).events.length;
  assert.equal(r.stats.deltaEvents, events);
  await r.stop();
  await s.close();
});

test('refresh pulls pending changes at once (after a STALE answer)', async (t) => {
  const s = EmbeddedKvStore.open(':memory:');
  const src = new GatedSource(s);
  const r = new KvReplica(src, 'smt/', { pollTimeoutMs: 5000 });
  cleanup(t, r, s);
  src.hold(); // the background long-poll will be stuck
  await r.start();
  await s.txn({ put: [{ key: 'smt/k', value: 'v' }] });
  await new Promise((res) => setTimeout(res, 30));
  assert.equal(r.get('smt/k'), undefined);
  src.release();
  await r.refresh();
  assert.equal(r.get('smt/k'), 'v');
  assert.equal(r.revision, 1);
  // The background poll then answers too: nothing is applied twice.
  await s.txn({ put: [{ key: 'smt/k2', value: 'w' }] });
  assert.equal(await r.waitForRevision(2, 2000), true);
  assert.deepEqual(r.stats, { fullLoads: 1, deltaEvents: 2 });
  await r.stop();
  await s.close();
});

test('on CompactedError the replica reloads fully and carries on', async (t) => {
  const s = EmbeddedKvStore.open(':memory:', { historyLimit: 5 });
  await s.txn({ put: [{ key: 'smt/0', value: 'start' }] });
  const src = new GatedSource(s);
  const r = new KvReplica(src, 'smt/', { pollTimeoutMs: 5000 });
  cleanup(t, r, s);
  let reloads = 0;
  r.on('reload', () => reloads++);
  src.hold();
  await r.start();
  for (let i = 1; i <= 20; i++) await s.txn({ put: [{ key: `smt/${i % 4}`, value: `v${i}` }], delete: i === 10 ? ['smt/0'] : [] });
  src.release(); // the lagging poll now asks for revision 1: long compacted
  assert.equal(await r.waitForRevision(21, 3000), true);
  assert.equal(r.stats.fullLoads, 2);
  assert.equal(reloads, 2);
  assert.deepEqual(sorted(r.entries()), await rangePairs(s, 'smt/'));
  // After the reload it follows by deltas again.
  await s.txn({ put: [{ key: 'smt/new', value: 'n' }] });
  assert.equal(await r.waitForRevision(22, 2000), true);
  assert.equal(r.get('smt/new'), 'n');
  assert.equal(r.stats.fullLoads, 2);
  await r.stop();
  await s.close();
});

test('errors from the source are reported and retried after a delay, never spun on', async (t) => {
  const s = EmbeddedKvStore.open(':memory:');
  await s.txn({ put: [{ key: 'smt/a', value: '1' }] });
  let down = true;
  let calls = 0;
  const src: KvSource = {
    range: (p) => s.range(p),
    async changesSince(p, after, t) {
      calls++;
      if (down) throw new Error('orchestrator unreachable');
      return s.changesSince(p, after, t);
    },
  };
  const errors: unknown[] = [];
  const r = new KvReplica(src, 'smt/', { pollTimeoutMs: 2000, retryDelayMs: 50, onError: (e) => errors.push(e) });
  cleanup(t, r, s);
  await r.start();
  await s.txn({ put: [{ key: 'smt/b', value: '2' }] });
  await new Promise((res) => setTimeout(res, 300));
  // ~300 ms / 50 ms delay: a handful of tries, not thousands.
  assert.ok(calls >= 2 && calls <= 10, `calls=${calls}`);
  assert.equal(errors.length, calls);
  assert.match(String(errors[0]), /orchestrator unreachable/);
  assert.equal(r.get('smt/b'), undefined);
  down = false;
  assert.equal(await r.waitForRevision(2, 2000), true);
  assert.equal(r.get('smt/b'), '2');
  assert.equal(r.stats.fullLoads, 1);
  await r.stop();
  await s.close();
});

test('a source that does not long-poll is not hammered; malformed answers are rejected whole', async (t) => {
  let calls = 0;
  let answer: unknown = { events: [], revision: 0 };
  const src: KvSource = {
    range: async () => ({ entries: [{ key: 'p/a', value: 'A', createRevision: 1, modRevision: 1 }], revision: 1 }),
    changesSince: async () => {
      calls++;
      return answer as { events: KvEvent[]; revision: number };
    },
  };
  const errors: unknown[] = [];
  const r = new KvReplica(src, 'p/', { pollTimeoutMs: 1000, retryDelayMs: 100, onError: (e) => errors.push(e) });
  cleanup(t, r);
  await r.start();
  answer = { events: [], revision: 1 };
  await new Promise((res) => setTimeout(res, 250));
  assert.ok(calls <= 5, `calls=${calls}`);
  // One good event then one broken one: nothing of it may be applied.
  answer = { events: [{ type: 'put', key: 'p/b', value: 'B', revision: 2 }, { type: 'put', key: 'p/c', revision: 2 }], revision: 2 };
  await new Promise((res) => setTimeout(res, 150));
  assert.ok(errors.some((e) => /malformed event/.test(String(e))));
  assert.equal(r.get('p/b'), undefined);
  assert.equal(r.revision, 1);
  await r.stop();
});

test('a source that went back in time triggers a full reload', async (t) => {
  const s1 = EmbeddedKvStore.open(':memory:');
  for (let i = 0; i < 5; i++) await s1.txn({ put: [{ key: `p/${i}`, value: 'old' }] });
  const s2 = EmbeddedKvStore.open(':memory:');
  await s2.txn({ put: [{ key: 'p/fresh', value: 'new' }] });
  let current = s1;
  const src: KvSource = { range: (p) => current.range(p), changesSince: (p, a, t) => current.changesSince(p, a, t) };
  const r = new KvReplica(src, 'p/', { pollTimeoutMs: 10_000, retryDelayMs: 20 });
  cleanup(t, r, s1, s2);
  await r.start();
  assert.equal(r.revision, 5);
  current = s2;
  await s1.txn({ put: [{ key: 'p/wake', value: 'the poll on the old store' }] });
  const until = Date.now() + 2000;
  while (r.stats.fullLoads < 2 && Date.now() < until) await new Promise((res) => setTimeout(res, 10));
  assert.equal(r.stats.fullLoads, 2);
  assert.deepEqual(sorted(r.entries()), [['p/fresh', 'new']]);
  assert.equal(r.revision, 1);
  await r.stop();
  await s1.close();
  await s2.close();
});

test('stop returns promptly during a long-poll and ends waiters', async (t) => {
  const s = EmbeddedKvStore.open(':memory:');
  const r = new KvReplica(s, 'p/', { pollTimeoutMs: 30_000 });
  cleanup(t, r, s);
  await r.start();
  const waiting = r.waitForRevision(10, 30_000);
  await new Promise((res) => setTimeout(res, 20));
  const t0 = Date.now();
  await r.stop();
  assert.ok(Date.now() - t0 < 500);
  assert.equal(await waiting, false);
  // Closing the store ends the abandoned long-poll, so nothing keeps the process alive.
  await s.close();
});

test('waitForRevision catches up at once when the store moved only outside the prefix', async (t) => {
  const s = EmbeddedKvStore.open(':memory:');
  const r = new KvReplica(s, 'smt/', { pollTimeoutMs: 10_000 });
  cleanup(t, r, s);
  await r.start();
  await s.txn({ put: [{ key: 'smt/a', value: '1' }] });
  const { revision } = await s.txn({ put: [{ key: 'servers/1', value: 'hb' }] });
  const t0 = Date.now();
  assert.equal(await r.waitForRevision(revision, 5000), true);
  assert.ok(Date.now() - t0 < 1000, 'did not wait for the long-poll timeout');
  assert.equal(r.revision, 2);
  assert.equal(r.get('smt/a'), '1');
  assert.equal(r.get('servers/1'), undefined);
});

test('a lazy replica (follow: false) changes only on refresh or waitForRevision', async (t) => {
  const s = EmbeddedKvStore.open(':memory:');
  let polls = 0;
  const src: KvSource = { range: (p) => s.range(p), changesSince: (p, a, to) => (polls++, s.changesSince(p, a, to)) };
  const r = new KvReplica(src, 'smt/', { follow: false, retryDelayMs: 20 });
  cleanup(t, r, s);
  await r.start();
  await s.txn({ put: [{ key: 'smt/a', value: '1' }] });
  await new Promise((res) => setTimeout(res, 50));
  assert.equal(polls, 0);
  assert.equal(r.get('smt/a'), undefined);
  await r.refresh();
  assert.equal(r.get('smt/a'), '1');
  await s.txn({ put: [{ key: 'smt/a', value: '2' }] });
  assert.equal(await r.waitForRevision(2, 1000), true);
  assert.equal(r.get('smt/a'), '2');
  // A revision the store never reaches: retried every retryDelayMs, then false.
  polls = 0;
  assert.equal(await r.waitForRevision(50, 200), false);
  assert.ok(polls >= 2 && polls <= 15, `polls=${polls}`);
  assert.deepEqual(r.stats, { fullLoads: 1, deltaEvents: 2 });
});

test('a throwing listener is reported and does not stop the replica', async (t) => {
  const s = EmbeddedKvStore.open(':memory:');
  const errors: unknown[] = [];
  const r = new KvReplica(s, 'p/', { pollTimeoutMs: 5000, onError: (e) => errors.push(e) });
  cleanup(t, r, s);
  r.on('change', (ev) => {
    if (ev.key === 'p/bad') throw new Error('listener bug');
  });
  await r.start();
  await s.txn({ put: [{ key: 'p/bad', value: 'x' }] });
  await s.txn({ put: [{ key: 'p/good', value: 'y' }] });
  assert.equal(await r.waitForRevision(2, 2000), true);
  assert.equal(r.get('p/good'), 'y');
  assert.equal(r.get('p/bad'), 'x');
  assert.match(String(errors[0]), /listener bug/);
});

test('a replica following random txns ends equal to range (property)', async () => {
  const keys = ['p/a', 'p/b', 'p/c', 'p/d', 'q/a', 'p', 'pp/a'];
  const txnArb = fc.record({
    compare: fc.array(fc.record({ key: fc.constantFrom(...keys), modRevision: fc.nat(6) }), { maxLength: 1 }),
    put: fc.uniqueArray(fc.record({ key: fc.constantFrom(...keys), value: fc.string({ maxLength: 6 }) }), {
      selector: (p) => p.key,
      maxLength: 3,
    }),
    delete: fc.uniqueArray(fc.constantFrom(...keys), { maxLength: 2 }),
  }).map((t) => ({ ...t, delete: t.delete.filter((k) => !t.put.some((p) => p.key === k)) }));
  await fc.assert(
    fc.asyncProperty(
      fc.array(txnArb, { maxLength: 30 }),
      fc.nat(30),
      fc.constantFrom(3, 1000),
      fc.boolean(),
      async (txns, startAfter, historyLimit, refreshMidway) => {
        const s = EmbeddedKvStore.open(':memory:', { historyLimit, maxEventsPerCall: 4 });
        const r = new KvReplica(s, 'p/', { pollTimeoutMs: 1000, retryDelayMs: 5 });
        for (const txn of txns.slice(0, startAfter)) await s.txn(txn);
        try {
          await r.start();
          for (const [i, txn] of txns.slice(startAfter).entries()) {
            await s.txn(txn);
            if (refreshMidway && i % 5 === 0) await r.refresh();
          }
          const rev = await s.revision();
          assert.equal(await r.waitForRevision(rev, 3000), true);
          assert.deepEqual(sorted(r.entries()), await rangePairs(s, 'p/'));
          for (const [k, v] of r.entries()) assert.equal(r.get(k), v);
          if (historyLimit === 1000) assert.equal(r.stats.fullLoads, 1);
        } finally {
          await r.stop();
          await s.close();
        }
      },
    ),
    { numRuns: 60 },
  );
});
