// Behavioural checks every KvStore must pass, run by each backend's test file against its own
// stores. Revisions are checked relative to the store's revision at the start (etcd starts at 1 and
// a shared etcd keeps counting across tests); each store must look empty under its keys.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KvStoreClosedError } from './embedded-kv.ts';
import type { KvEntry, KvStore } from './kv.ts';

export interface KvContractOptions {
  /** Runs per property test (default 60; a networked store may use fewer). */
  propertyRuns?: number;
}

/** Code point order: what both SQLite's BINARY collation and etcd's UTF-8 byte order give. */
export function cpCompare(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

export function kvContractTests(name: string, makeStore: () => Promise<KvStore>, opts: KvContractOptions = {}): void {
  const runs = opts.propertyRuns ?? 60;

  test(`${name}: a changing txn bumps the revision by one, no-op txns do not`, async () => {
    const s = await makeStore();
    try {
      const r0 = await s.revision();
      assert.deepEqual(await s.txn({ put: [{ key: 'a', value: '1' }, { key: 'b', value: '2' }] }), { succeeded: true, revision: r0 + 1 });
      assert.equal(await s.revision(), r0 + 1);
      assert.deepEqual(await s.get('a'), { key: 'a', value: '1', createRevision: r0 + 1, modRevision: r0 + 1 });
      assert.deepEqual(await s.txn({ put: [{ key: 'a', value: '1b' }] }), { succeeded: true, revision: r0 + 2 });
      assert.deepEqual(await s.get('a'), { key: 'a', value: '1b', createRevision: r0 + 1, modRevision: r0 + 2 });
      assert.deepEqual(await s.txn({ delete: ['nope'] }), { succeeded: true, revision: r0 + 2 });
      assert.deepEqual(await s.txn({ compare: [{ key: 'a', modRevision: r0 + 2 }] }), { succeeded: true, revision: r0 + 2 });
      assert.deepEqual(await s.txn({}), { succeeded: true, revision: r0 + 2 });
      assert.deepEqual(await s.txn({ put: [{ key: 'c', value: '' }], delete: ['b', 'missing'] }), { succeeded: true, revision: r0 + 3 });
      assert.equal(await s.get('b'), undefined);
      assert.deepEqual(await s.get('c'), { key: 'c', value: '', createRevision: r0 + 3, modRevision: r0 + 3 });
      const ch = await s.changesSince('', r0, 0);
      assert.equal(ch.revision, r0 + 3);
      // Within one revision the order of events is the backend's; across revisions it is fixed.
      const norm = (evs: typeof ch.events) => [...evs].sort((x, y) => x.revision - y.revision || cpCompare(x.key, y.key));
      assert.deepEqual(norm(ch.events), [
        { type: 'put', key: 'a', value: '1', revision: r0 + 1 },
        { type: 'put', key: 'b', value: '2', revision: r0 + 1 },
        { type: 'put', key: 'a', value: '1b', revision: r0 + 2 },
        { type: 'delete', key: 'b', revision: r0 + 3 },
        { type: 'put', key: 'c', value: '', revision: r0 + 3 },
      ]);
      await s.txn({ put: [{ key: 'b', value: 'again' }] });
      assert.deepEqual(await s.get('b'), { key: 'b', value: 'again', createRevision: r0 + 4, modRevision: r0 + 4 });
    } finally {
      await s.close();
    }
  });

  test(`${name}: CAS compares modRevision (0 = absent); a failed txn changes nothing`, async () => {
    const s = await makeStore();
    try {
      const r0 = await s.revision();
      assert.deepEqual(await s.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'v1' }] }), { succeeded: true, revision: r0 + 1 });
      assert.deepEqual(await s.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'v2' }] }), { succeeded: false, revision: r0 + 1 });
      assert.equal((await s.get('k'))?.value, 'v1');
      assert.equal((await s.txn({ compare: [{ key: 'k', modRevision: r0 + 1 }], put: [{ key: 'k', value: 'v3' }] })).succeeded, true);
      const r = await s.txn({ compare: [{ key: 'k', modRevision: r0 + 1 }], put: [{ key: 'other', value: 'x' }], delete: ['k'] });
      assert.deepEqual(r, { succeeded: false, revision: r0 + 2 });
      assert.equal(await s.get('other'), undefined);
      assert.equal((await s.get('k'))?.value, 'v3');
      await s.txn({ put: [{ key: 'j', value: 'j' }] }); // r0 + 3
      assert.equal((await s.txn({ compare: [{ key: 'k', modRevision: r0 + 2 }, { key: 'j', modRevision: 0 }], put: [{ key: 'z', value: 'z' }] })).succeeded, false);
      assert.equal((await s.txn({ compare: [{ key: 'k', modRevision: r0 + 2 }, { key: 'j', modRevision: r0 + 3 }], put: [{ key: 'z', value: 'z' }] })).succeeded, true);
      assert.equal((await s.txn({ compare: [{ key: 'j', modRevision: 0 }] })).succeeded, false);
      assert.equal((await s.txn({ compare: [{ key: 'missing', modRevision: r0 + 3 }] })).succeeded, false);
      assert.deepEqual((await s.changesSince('', r0 + 3, 0)).events.map((e) => e.key), ['z']);
      // Concurrent create-if-absent: exactly one wins.
      const racers = await Promise.all(
        Array.from({ length: 10 }, (_, i) => s.txn({ compare: [{ key: 'race', modRevision: 0 }], put: [{ key: 'race', value: String(i) }] })),
      );
      assert.equal(racers.filter((x) => x.succeeded).length, 1);
      const winner = racers.findIndex((x) => x.succeeded);
      assert.equal((await s.get('race'))?.value, String(winner));
    } finally {
      await s.close();
    }
  });

  test(`${name}: bad input is rejected with clear errors and changes nothing; a closed store refuses calls`, async () => {
    const s = await makeStore();
    const r0 = await s.revision();
    await assert.rejects(s.txn({ put: [{ key: '', value: 'x' }] }), /must not be empty/);
    await assert.rejects(s.txn({ put: [{ key: 'a', value: 1 as unknown as string }] }), /must be a string/);
    await assert.rejects(s.txn({ put: [{ key: 'a', value: '1' }], delete: ['a'] }), /changed twice/);
    await assert.rejects(s.txn({ put: [{ key: 'a', value: '1' }, { key: 'a', value: '2' }] }), /changed twice/);
    await assert.rejects(s.txn({ compare: [{ key: 'a', modRevision: -1 }] }), /non-negative integer/);
    await assert.rejects(s.txn({ put: [{ key: 'a\uD800', value: '1' }] }), /surrogate/);
    await assert.rejects(s.changesSince('', -1, 0), /non-negative integer/);
    await assert.rejects(s.get(''), /must not be empty/);
    assert.equal(await s.revision(), r0);
    assert.equal(await s.get('a'), undefined);
    await s.close();
    await assert.rejects(s.revision(), KvStoreClosedError);
    await assert.rejects(s.range(''), KvStoreClosedError);
  });

  test(`${name}: range returns exactly the keys under a prefix, sorted, values intact`, async () => {
    const s = await makeStore();
    try {
      const keys = ['a', 'a/', 'a/1', 'a/2', 'a/2/x', 'a0', 'a\uFFFF', 'a/\uFFFF', 'a/\u{1F600}', 'a/\u{10FFFF}z', 'b', 'smt/v1/0', 'smt/v10/0', 'smt/v2/0', 'é/ü'];
      const value = (i: number) => `v${i}-${'\u00e9\u{1F600}'.repeat(i % 3)}`;
      await s.txn({ put: keys.map((k, i) => ({ key: k, value: value(i) })) });
      const { revision } = await s.txn({ delete: ['a/1'] });
      const live = keys.filter((k) => k !== 'a/1');
      for (const prefix of ['', 'a', 'a/', 'a/2', 'smt/', 'smt/v1', 'zzz', 'a/\u{10FFFF}', 'é']) {
        const r = await s.range(prefix);
        assert.equal(r.revision, revision);
        assert.deepEqual(r.entries.map((e) => e.key), live.filter((k) => k.startsWith(prefix)).sort(cpCompare), `prefix ${JSON.stringify(prefix)}`);
        for (const e of r.entries) assert.equal(e.value, value(keys.indexOf(e.key)));
      }
    } finally {
      await s.close();
    }
  });

  test(`${name}: range matches a model under random keys (property)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }), { maxLength: 30 }),
        fc.string({ unit: 'binary', maxLength: 2 }),
        async (keys, prefix) => {
          const s = await makeStore();
          try {
            if (keys.length) await s.txn({ put: keys.map((k) => ({ key: k, value: k + '!' })) });
            const r = await s.range(prefix);
            const want = keys.filter((k) => k.startsWith(prefix)).sort(cpCompare);
            assert.deepEqual(r.entries.map((e) => [e.key, e.value]), want.map((k) => [k, k + '!']));
          } finally {
            await s.close();
          }
        },
      ),
      { numRuns: runs },
    );
  });

  test(`${name}: changesSince is ordered, filtered by prefix, and its revision lets a caller move on`, async () => {
    const s = await makeStore();
    try {
      const r0 = await s.revision();
      await s.txn({ put: [{ key: 'x/1', value: 'a' }, { key: 'y/1', value: 'b' }] }); // +1
      await s.txn({ put: [{ key: 'y/2', value: 'c' }] }); // +2
      await s.txn({ delete: ['x/1'], put: [{ key: 'x/2', value: 'd' }] }); // +3
      await s.txn({ put: [{ key: 'y/1', value: 'e' }] }); // +4
      const x = await s.changesSince('x/', r0, 0);
      assert.deepEqual(
        [...x.events].sort((p, q) => p.revision - q.revision || cpCompare(p.key, q.key)),
        [
          { type: 'put', key: 'x/1', value: 'a', revision: r0 + 1 },
          { type: 'delete', key: 'x/1', revision: r0 + 3 },
          { type: 'put', key: 'x/2', value: 'd', revision: r0 + 3 },
        ],
      );
      assert.ok(x.revision >= r0 + 3 && x.revision <= r0 + 4);
      const again = await s.changesSince('x/', r0 + 3, 0);
      assert.deepEqual(again.events, []);
      assert.ok(again.revision >= r0 + 3 && again.revision <= r0 + 4);
      assert.deepEqual((await s.changesSince('y/', r0 + 1, 0)).events.map((e) => [e.key, e.revision]), [
        ['y/2', r0 + 2],
        ['y/1', r0 + 4],
      ]);
      // A zero-wait call on the whole store reaches the store's revision.
      assert.deepEqual(await s.changesSince('', r0 + 4, 0), { revision: r0 + 4, events: [] });
      // Past the current revision: nothing, the current revision, and no waiting.
      const t0 = Date.now();
      assert.deepEqual(await s.changesSince('', r0 + 9, 5000), { revision: r0 + 4, events: [] });
      assert.ok(Date.now() - t0 < 1000);
    } finally {
      await s.close();
    }
  });

  test(`${name}: a long-poll is woken by a matching txn, not by others, and times out empty`, async () => {
    const s = await makeStore();
    try {
      const { revision: r1 } = await s.txn({ put: [{ key: 'p/0', value: '0' }] });
      let t0 = Date.now();
      assert.deepEqual(await s.changesSince('p/', r1, 150), { events: [], revision: r1 });
      assert.ok(Date.now() - t0 >= 140, 'waited for the timeout');
      t0 = Date.now();
      const waiting = s.changesSince('p/', r1, 5000);
      setTimeout(() => void s.txn({ put: [{ key: 'q/other', value: 'no' }] }), 20);
      setTimeout(() => void s.txn({ put: [{ key: 'p/1', value: 'yes' }] }), 150);
      const got = await waiting;
      assert.ok(Date.now() - t0 < 2000, 'woken by the commit, not the timeout');
      assert.deepEqual(got, { revision: r1 + 2, events: [{ type: 'put', key: 'p/1', value: 'yes', revision: r1 + 2 }] });
    } finally {
      await s.close();
    }
  });

  test(`${name}: 200 concurrent long-polls are all woken by one commit, and close wakes the rest`, async () => {
    const s = await makeStore();
    const r0 = await s.revision();
    const polls = Array.from({ length: 200 }, (_, i) => s.changesSince(i % 2 ? 'odd/' : 'even/', r0, 10_000));
    await new Promise((r) => setTimeout(r, 100));
    await s.txn({ put: [{ key: 'even/x', value: 'E' }] });
    const even = await Promise.all(polls.filter((_, i) => i % 2 === 0));
    for (const r of even) assert.deepEqual(r, { revision: r0 + 1, events: [{ type: 'put', key: 'even/x', value: 'E', revision: r0 + 1 }] });
    const t0 = Date.now();
    const odd = Promise.allSettled(polls.filter((_, i) => i % 2 === 1));
    await s.close();
    const settled = await odd;
    assert.ok(Date.now() - t0 < 1000);
    for (const r of settled) {
      assert.equal(r.status, 'rejected');
      assert.ok((r as PromiseRejectedResult).reason instanceof KvStoreClosedError);
    }
  });

  test(`${name}: replaying changesSince from the start reproduces range (property)`, async () => {
    const keys = ['a/1', 'a/2', 'b/1', 'b/2', 'c'];
    const op = fc.oneof(
      fc.record({ put: fc.uniqueArray(fc.record({ key: fc.constantFrom(...keys), value: fc.string({ maxLength: 5 }) }), { selector: (p) => p.key, maxLength: 3 }) }),
      fc.record({ delete: fc.uniqueArray(fc.constantFrom(...keys), { maxLength: 2 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), fc.constantFrom('', 'a/', 'b/'), async (ops, prefix) => {
        const s = await makeStore();
        try {
          let cursor = await s.revision();
          for (const o of ops) await s.txn(o);
          const model = new Map<string, string>();
          for (;;) {
            const { events, revision } = await s.changesSince(prefix, cursor, 0);
            let prev = cursor;
            for (const e of events) {
              assert.ok(e.revision > cursor && e.revision >= prev && e.revision <= revision);
              assert.ok(e.key.startsWith(prefix));
              prev = e.revision;
              if (e.type === 'put') model.set(e.key, e.value!);
              else model.delete(e.key);
            }
            if (revision === cursor) break;
            cursor = revision;
          }
          const r = await s.range(prefix);
          assert.equal(cursor, r.revision);
          assert.deepEqual([...model].sort(([a], [b]) => cpCompare(a, b)), r.entries.map((e: KvEntry) => [e.key, e.value]));
        } finally {
          await s.close();
        }
      }),
      { numRuns: runs },
    );
  });
}
