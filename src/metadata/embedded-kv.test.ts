import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { EmbeddedKvStore, KvStoreClosedError, prefixUpperBound } from './embedded-kv.ts';
import { CompactedError, type KvEntry } from './kv.ts';
import { kvContractTests } from './kv-contract.ts';

function mem(opts?: Parameters<typeof EmbeddedKvStore.open>[1]): EmbeddedKvStore {
  return EmbeddedKvStore.open(':memory:', opts);
}

test('revisions: a changing txn bumps by one, no-op txns do not', async () => {
  const s = mem();
  assert.equal(await s.revision(), 0);
  assert.deepEqual(await s.txn({ put: [{ key: 'a', value: '1' }, { key: 'b', value: '2' }] }), { succeeded: true, revision: 1 });
  assert.equal(await s.revision(), 1);
  assert.deepEqual(await s.get('a'), { key: 'a', value: '1', createRevision: 1, modRevision: 1 });
  assert.deepEqual(await s.get('b'), { key: 'b', value: '2', createRevision: 1, modRevision: 1 });

  // Overwrite keeps createRevision, moves modRevision.
  assert.deepEqual(await s.txn({ put: [{ key: 'a', value: '1b' }] }), { succeeded: true, revision: 2 });
  assert.deepEqual(await s.get('a'), { key: 'a', value: '1b', createRevision: 1, modRevision: 2 });

  // Deleting a missing key changes nothing: no bump, no event.
  assert.deepEqual(await s.txn({ delete: ['nope'] }), { succeeded: true, revision: 2 });
  // Compares only: succeeds without bumping.
  assert.deepEqual(await s.txn({ compare: [{ key: 'a', modRevision: 2 }] }), { succeeded: true, revision: 2 });
  assert.deepEqual(await s.txn({}), { succeeded: true, revision: 2 });
  assert.equal(await s.revision(), 2);

  // Delete + put in one txn share one revision.
  assert.deepEqual(await s.txn({ put: [{ key: 'c', value: '' }], delete: ['b', 'missing'] }), { succeeded: true, revision: 3 });
  assert.equal(await s.get('b'), undefined);
  assert.deepEqual(await s.get('c'), { key: 'c', value: '', createRevision: 3, modRevision: 3 });
  const ch = await s.changesSince('', 0, 0);
  assert.deepEqual(ch, {
    revision: 3,
    events: [
      { type: 'put', key: 'a', value: '1', revision: 1 },
      { type: 'put', key: 'b', value: '2', revision: 1 },
      { type: 'put', key: 'a', value: '1b', revision: 2 },
      { type: 'put', key: 'c', value: '', revision: 3 },
      { type: 'delete', key: 'b', revision: 3 },
    ],
  });
  // Recreated after delete: a new createRevision.
  await s.txn({ put: [{ key: 'b', value: 'again' }] });
  assert.deepEqual(await s.get('b'), { key: 'b', value: 'again', createRevision: 4, modRevision: 4 });
  await s.close();
});

test('CAS: compares on modRevision, 0 means absent; a failed txn changes nothing', async () => {
  const s = mem();
  // Create-if-absent.
  assert.deepEqual(await s.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'v1' }] }), {
    succeeded: true,
    revision: 1,
  });
  // Second create-if-absent fails.
  assert.deepEqual(await s.txn({ compare: [{ key: 'k', modRevision: 0 }], put: [{ key: 'k', value: 'v2' }] }), {
    succeeded: false,
    revision: 1,
  });
  assert.equal((await s.get('k'))?.value, 'v1');
  // Update with the right modRevision succeeds; a stale one fails and leaves every key alone.
  assert.equal((await s.txn({ compare: [{ key: 'k', modRevision: 1 }], put: [{ key: 'k', value: 'v3' }] })).succeeded, true);
  const r = await s.txn({
    compare: [{ key: 'k', modRevision: 1 }],
    put: [{ key: 'other', value: 'x' }],
    delete: ['k'],
  });
  assert.deepEqual(r, { succeeded: false, revision: 2 });
  assert.equal(await s.get('other'), undefined);
  assert.equal((await s.get('k'))?.value, 'v3');
  // All compares must hold.
  await s.txn({ put: [{ key: 'j', value: 'j' }] });
  assert.equal(
    (await s.txn({ compare: [{ key: 'k', modRevision: 2 }, { key: 'j', modRevision: 0 }], put: [{ key: 'z', value: 'z' }] })).succeeded,
    false,
  );
  assert.equal(
    (await s.txn({ compare: [{ key: 'k', modRevision: 2 }, { key: 'j', modRevision: 3 }], put: [{ key: 'z', value: 'z' }] })).succeeded,
    true,
  );
  // modRevision 0 on an existing key fails; a nonzero modRevision on a missing key fails.
  assert.equal((await s.txn({ compare: [{ key: 'j', modRevision: 0 }] })).succeeded, false);
  assert.equal((await s.txn({ compare: [{ key: 'missing', modRevision: 3 }] })).succeeded, false);
  assert.deepEqual((await s.changesSince('', 3, 0)).events.map((e) => e.key), ['z']);
  await s.close();
});

test('bad input is rejected with clear errors and changes nothing', async () => {
  const s = mem();
  await assert.rejects(s.txn({ put: [{ key: '', value: 'x' }] }), /must not be empty/);
  await assert.rejects(s.txn({ put: [{ key: 'a', value: 1 as unknown as string }] }), /must be a string/);
  await assert.rejects(s.txn({ put: [{ key: 'a', value: '1' }], delete: ['a'] }), /changed twice/);
  await assert.rejects(s.txn({ put: [{ key: 'a', value: '1' }, { key: 'a', value: '2' }] }), /changed twice/);
  await assert.rejects(s.txn({ compare: [{ key: 'a', modRevision: -1 }] }), /non-negative integer/);
  await assert.rejects(s.txn({ put: [{ key: 'a\uD800', value: '1' }] }), /surrogate/);
  await assert.rejects(s.changesSince('', -1, 0), /non-negative integer/);
  assert.equal(await s.revision(), 0);
  assert.throws(() => EmbeddedKvStore.open(':memory:', { historyLimit: 0 }), /historyLimit/);
  await s.close();
  await assert.rejects(s.revision(), KvStoreClosedError);
});

test('prefixUpperBound is the exact successor of a prefix', () => {
  assert.equal(prefixUpperBound('smt/'), 'smt0');
  assert.equal(prefixUpperBound('a\u{10FFFF}'), 'b');
  assert.equal(prefixUpperBound('\u{10FFFF}'), undefined);
  assert.equal(prefixUpperBound('\uD7FF'), '\uE000');
  assert.equal(prefixUpperBound('x\uFFFF'), 'x\u{10000}');
});

// Code point order: what SQLite's BINARY collation on UTF-8 gives.
function cpCompare(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0)!);
  const y = Array.from(b, (c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

test('range returns exactly the keys under a prefix, sorted, with the revision', async () => {
  const s = mem();
  const keys = ['a', 'a/', 'a/1', 'a/2', 'a/2/x', 'a0', 'a\uFFFF', 'a/\uFFFF', 'a/\u{1F600}', 'a/\u{10FFFF}z', 'b', 'smt/v1/0', 'smt/v10/0', 'smt/v2/0'];
  await s.txn({ put: keys.map((k, i) => ({ key: k, value: `v${i}` })) });
  await s.txn({ delete: ['a/1'] });
  const live = keys.filter((k) => k !== 'a/1');
  for (const prefix of ['', 'a', 'a/', 'a/2', 'smt/', 'smt/v1', 'zzz', 'a/\u{10FFFF}']) {
    const r = await s.range(prefix);
    assert.equal(r.revision, 2);
    const want = live.filter((k) => k.startsWith(prefix)).sort(cpCompare);
    assert.deepEqual(
      r.entries.map((e) => e.key),
      want,
      `prefix ${JSON.stringify(prefix)}`,
    );
    for (const e of r.entries) assert.equal(e.value, `v${keys.indexOf(e.key)}`);
  }
  await s.close();
});

test('range matches a model under random keys (property)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }), { maxLength: 30 }),
      fc.string({ unit: 'binary', maxLength: 2 }),
      async (keys, prefix) => {
        const s = mem();
        if (keys.length) await s.txn({ put: keys.map((k) => ({ key: k, value: k + '!' })) });
        const r = await s.range(prefix);
        const want = keys.filter((k) => k.startsWith(prefix)).sort(cpCompare);
        assert.deepEqual(r.entries.map((e) => [e.key, e.value]), want.map((k) => [k, k + '!']));
        await s.close();
      },
    ),
    { numRuns: 100 },
  );
});

test('changesSince: ordered, filtered by prefix, revision lets a caller move on', async () => {
  const s = mem();
  await s.txn({ put: [{ key: 'x/1', value: 'a' }, { key: 'y/1', value: 'b' }] }); // 1
  await s.txn({ put: [{ key: 'y/2', value: 'c' }] }); // 2
  await s.txn({ delete: ['x/1'], put: [{ key: 'x/2', value: 'd' }] }); // 3
  await s.txn({ put: [{ key: 'y/1', value: 'e' }] }); // 4
  assert.deepEqual(await s.changesSince('x/', 0, 0), {
    revision: 4,
    events: [
      { type: 'put', key: 'x/1', value: 'a', revision: 1 },
      { type: 'put', key: 'x/2', value: 'd', revision: 3 },
      { type: 'delete', key: 'x/1', revision: 3 },
    ],
  });
  assert.deepEqual(await s.changesSince('x/', 3, 0), { revision: 4, events: [] });
  assert.deepEqual(
    (await s.changesSince('y/', 1, 0)).events.map((e) => [e.key, e.revision]),
    [
      ['y/2', 2],
      ['y/1', 4],
    ],
  );
  // Past the current revision: nothing, and the current revision, without waiting.
  const t0 = Date.now();
  assert.deepEqual(await s.changesSince('', 9, 5000), { revision: 4, events: [] });
  assert.ok(Date.now() - t0 < 1000);
  await s.close();
});

test('changesSince caps its answer at a revision boundary and continues without loss', async () => {
  const s = mem({ maxEventsPerCall: 10 });
  // 5 txns of 3 keys, then one of 25 keys (bigger than the cap), then one of 1.
  for (let t = 0; t < 5; t++) await s.txn({ put: [0, 1, 2].map((i) => ({ key: `k/${t}/${i}`, value: `${t}.${i}` })) });
  await s.txn({ put: Array.from({ length: 25 }, (_, i) => ({ key: `big/${String(i).padStart(2, '0')}`, value: String(i) })) });
  await s.txn({ put: [{ key: 'k/last', value: 'L' }] });
  const first = await s.changesSince('', 0, 0);
  assert.equal(first.events.length, 9); // revisions 1..3: the 10th event begins revision 4
  assert.equal(first.revision, 3);
  const second = await s.changesSince('', first.revision, 0);
  assert.deepEqual(second.events.map((e) => e.revision), [4, 4, 4, 5, 5, 5]);
  assert.equal(second.revision, 5);
  const third = await s.changesSince('', second.revision, 0);
  assert.equal(third.events.length, 25); // one revision is never split
  assert.equal(third.revision, 6);
  const fourth = await s.changesSince('', third.revision, 0);
  assert.deepEqual(fourth, { revision: 7, events: [{ type: 'put', key: 'k/last', value: 'L', revision: 7 }] });
  await s.close();
});

test('changesSince long-poll: woken by a matching txn, not by others; times out empty', async () => {
  const s = mem();
  await s.txn({ put: [{ key: 'p/0', value: '0' }] });
  let t0 = Date.now();
  assert.deepEqual(await s.changesSince('p/', 1, 150), { events: [], revision: 1 });
  assert.ok(Date.now() - t0 >= 140, 'waited for the timeout');

  t0 = Date.now();
  const waiting = s.changesSince('p/', 1, 5000);
  setTimeout(() => void s.txn({ put: [{ key: 'q/other', value: 'no' }] }), 20);
  setTimeout(() => void s.txn({ put: [{ key: 'p/1', value: 'yes' }] }), 60);
  const got = await waiting;
  assert.ok(Date.now() - t0 < 2000, 'woken by the commit, not the timeout');
  assert.deepEqual(got, { revision: 3, events: [{ type: 'put', key: 'p/1', value: 'yes', revision: 3 }] });
  await s.close();
});

test('200 concurrent long-polls are all woken by one commit, and close wakes the rest', async () => {
  const s = mem();
  const polls = Array.from({ length: 200 }, (_, i) => s.changesSince(i % 2 ? 'odd/' : 'even/', 0, 10_000));
  await new Promise((r) => setTimeout(r, 20));
  await s.txn({ put: [{ key: 'even/x', value: 'E' }] });
  const even = await Promise.all(polls.filter((_, i) => i % 2 === 0));
  for (const r of even) assert.deepEqual(r, { revision: 1, events: [{ type: 'put', key: 'even/x', value: 'E', revision: 1 }] });
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

test('history is trimmed to historyLimit revisions; older cursors get CompactedError', async () => {
  const s = mem({ historyLimit: 5 });
  for (let i = 1; i <= 20; i++) await s.txn({ put: [{ key: `c/${i % 3}`, value: String(i) }] });
  assert.equal(await s.oldestRevision(), 16);
  await assert.rejects(s.changesSince('c/', 0, 0), (err: unknown) => {
    assert.ok(err instanceof CompactedError);
    assert.equal(err.requested, 0);
    assert.equal(err.oldest, 16);
    return true;
  });
  await assert.rejects(s.changesSince('', 14, 0), CompactedError);
  const ok = await s.changesSince('', 15, 0);
  assert.deepEqual(ok.events.map((e) => e.revision), [16, 17, 18, 19, 20]);
  assert.equal(ok.revision, 20);
  // The kv table itself is untouched by compaction.
  assert.deepEqual((await s.range('c/')).entries.map((e) => e.value), ['18', '19', '20']);
  await s.close();
});

test('replaying changesSince from 0 reproduces range (property)', async () => {
  const op = fc.oneof(
    fc.record({ put: fc.uniqueArray(fc.record({ key: fc.constantFrom('a/1', 'a/2', 'b/1', 'b/2', 'c'), value: fc.string({ maxLength: 5 }) }), { selector: (p) => p.key, maxLength: 3 }) }),
    fc.record({ delete: fc.uniqueArray(fc.constantFrom('a/1', 'a/2', 'b/1', 'b/2', 'c'), { maxLength: 2 }) }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 40 }), fc.constantFrom('', 'a/', 'b/'), async (ops, prefix) => {
      const s = mem({ maxEventsPerCall: 7 });
      for (const o of ops) await s.txn(o);
      const model = new Map<string, string>();
      let cursor = 0;
      for (;;) {
        const { events, revision } = await s.changesSince(prefix, cursor, 0);
        let prev = cursor;
        for (const e of events) {
          assert.ok(e.revision > cursor && e.revision >= prev);
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
      await s.close();
    }),
    { numRuns: 60 },
  );
});

test('durability: every acknowledged txn survives SIGKILL of the writer', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'presage-kv-'));
  const path = join(dir, 'meta.db');
  try {
    const script = fileURLToPath(new URL('./testdata/kv-writer.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', script, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const acks: { i: number; rev: number }[] = [];
    let buf = '';
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    await new Promise<void>((resolve, reject) => {
      child.on('exit', () => reject(new Error(`writer exited early: ${stderr}`)));
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const line of lines) {
          const m = /^ack (\d+) (\d+)$/.exec(line);
          if (!m) return reject(new Error(`unexpected output: ${line}`));
          acks.push({ i: Number(m[1]), rev: Number(m[2]) });
          // Kill while it is still committing, mid-stream.
          if (acks.length === 300) {
            child.kill('SIGKILL');
            resolve();
          }
        }
      });
    });
    assert.equal(await exited, 'SIGKILL');
    assert.ok(acks.length >= 300);

    // WAL is a property of the file: check it from an independent connection.
    const raw = new Database(path, { readonly: true });
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    raw.close();

    const s = EmbeddedKvStore.open(path);
    const last = acks[acks.length - 1]!;
    const rev = await s.revision();
    assert.ok(rev >= last.rev, `revision ${rev} lost acknowledged ${last.rev}`);
    for (const { i, rev: r } of acks) {
      assert.equal(r, i + 1);
      const e = await s.get(`dur/item/${i}`);
      assert.deepEqual(e, { key: `dur/item/${i}`, value: `value-${i}-${'x'.repeat(i % 97)}`, createRevision: r, modRevision: r });
    }
    // Atomicity: whatever was committed last (acknowledged or not) landed whole.
    const lastKey = await s.get('dur/last');
    assert.equal(lastKey?.modRevision, rev);
    assert.equal((await s.get(`dur/item/${Number(lastKey!.value)}`))?.modRevision, rev);
    assert.equal((await s.range('dur/item/')).entries.length, rev);
    // The event log agrees with the table.
    const model = new Map<string, string>();
    let cursor = 0;
    for (;;) {
      const { events, revision } = await s.changesSince('dur/', cursor, 0);
      for (const ev of events) model.set(ev.key, ev.value!);
      if (revision === cursor) break;
      cursor = revision;
    }
    assert.deepEqual(
      [...model].sort(([a], [b]) => cpCompare(a, b)),
      (await s.range('dur/')).entries.map((e) => [e.key, e.value]),
    );
    // And the reopened store keeps going from there.
    assert.deepEqual(await s.txn({ put: [{ key: 'after', value: 'restart' }] }), { succeeded: true, revision: rev + 1 });
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The behaviour every KvStore backend shares (the etcd backend runs the same checks).
kvContractTests('embedded contract', async () => EmbeddedKvStore.open(':memory:'));
