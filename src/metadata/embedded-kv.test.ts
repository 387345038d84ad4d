import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { EmbeddedKvStore, prefixUpperBound } from './embedded-kv.ts';
import { CompactedError } from './kv.ts';
import { cpCompare, kvContractTests } from './kv-contract.ts';

function mem(opts?: Parameters<typeof EmbeddedKvStore.open>[1]): EmbeddedKvStore {
  return EmbeddedKvStore.open(':memory:', opts);
}

// The behaviour every KvStore backend shares (revisions, CAS, bad input, range, changesSince,
// long-polls, replay) is checked by kv-contract.ts, run at the end of this file; here only what
// is particular to the embedded store.

test('embedded: revisions count from 0; a filtered changesSince answers the store revision; a revision lists its puts, then its deletes', async () => {
  const s = mem();
  assert.equal(await s.revision(), 0);
  assert.deepEqual(await s.txn({ put: [{ key: 'x/1', value: 'a' }, { key: 'y/1', value: 'b' }] }), { succeeded: true, revision: 1 });
  assert.deepEqual(await s.get('x/1'), { key: 'x/1', value: 'a', createRevision: 1, modRevision: 1 });
  await s.txn({ delete: ['x/1'], put: [{ key: 'x/2', value: 'd' }] }); // 2
  await s.txn({ put: [{ key: 'y/2', value: 'c' }] }); // 3
  assert.deepEqual(await s.changesSince('x/', 0, 0), {
    revision: 3,
    events: [
      { type: 'put', key: 'x/1', value: 'a', revision: 1 },
      { type: 'put', key: 'x/2', value: 'd', revision: 2 },
      { type: 'delete', key: 'x/1', revision: 2 },
    ],
  });
  assert.deepEqual(await s.changesSince('x/', 2, 0), { revision: 3, events: [] });
  await s.close();
});

test('embedded: bad options are rejected when opening', () => {
  assert.throws(() => EmbeddedKvStore.open(':memory:', { historyLimit: 0 }), /historyLimit must be a positive integer/);
  assert.throws(() => EmbeddedKvStore.open(':memory:', { maxEventsPerCall: 1.5 }), /maxEventsPerCall must be a positive integer/);
});

test('prefixUpperBound is the exact successor of a prefix', () => {
  assert.equal(prefixUpperBound('smt/'), 'smt0');
  assert.equal(prefixUpperBound('a\u{10FFFF}'), 'b');
  assert.equal(prefixUpperBound('\u{10FFFF}'), undefined);
  assert.equal(prefixUpperBound('\uD7FF'), '\uE000');
  assert.equal(prefixUpperBound('x\uFFFF'), 'x\u{10000}');
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

// The behaviour every KvStore backend shares (the etcd backend runs the same checks), once with
// the defaults and once with answers capped at 7 events, so replays and cursors cross pages.
kvContractTests('embedded contract', async () => EmbeddedKvStore.open(':memory:'));
kvContractTests('embedded contract, 7 events per call', async () => EmbeddedKvStore.open(':memory:', { maxEventsPerCall: 7 }));
