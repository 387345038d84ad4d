// The etcd backend against a real etcd started for this file: the shared KvStore contract, plus
// what only etcd has (paginated ranges, compaction, the streaming watch, URL parsing) and a
// KvReplica following it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Etcd3, EtcdAuthenticationFailedError } from 'etcd3';
import { EtcdKvStore, parseEtcdUrl, prefixRangeEnd } from './etcd-kv.ts';
import { etcdClientOptions, explainEtcdError, loadEtcdSecurity } from './etcd-security.ts';
import { kvContractTests } from './kv-contract.ts';
import { CompactedError, type KvEvent } from './kv.ts';
import { KvReplica } from './kv-replica.ts';
import { startEtcd, type EtcdProcess } from './testing/etcd-process.ts';

let etcd: EtcdProcess;
let client: Etcd3;
let nsCounter = 0;

before(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoint });
});

after(async () => {
  client?.close();
  await etcd?.stop();
});

/** A store that looks empty: its own namespace on the shared etcd and client. */
function fresh(opts: ConstructorParameters<typeof EtcdKvStore>[1] = {}): EtcdKvStore {
  return new EtcdKvStore(client, { namespace: `t${++nsCounter}/`, ...opts });
}

kvContractTests('etcd contract', async () => fresh(), { propertyRuns: 25 });

test('parseEtcdUrl accepts host lists and a namespace, rejects the rest clearly', () => {
  assert.deepEqual(parseEtcdUrl('etcd://127.0.0.1:2379'), { hosts: ['http://127.0.0.1:2379'], tls: false, namespace: '' });
  assert.deepEqual(parseEtcdUrl('etcd://a:1,b.example:2379,[::1]:3/presage/'), {
    hosts: ['http://a:1', 'http://b.example:2379', 'http://[::1]:3'],
    tls: false,
    namespace: '/presage/',
  });
  assert.deepEqual(parseEtcdUrl('etcds://a:1,b:2/p/'), { hosts: ['https://a:1', 'https://b:2'], tls: true, namespace: '/p/' });
  assert.throws(() => parseEtcdUrl('http://a:1'), /expected etcd:\/\//);
  assert.throws(() => parseEtcdUrl('etcd://a'), /not host:port/);
  assert.throws(() => parseEtcdUrl('etcd://a:0'), /not host:port/);
  assert.throws(() => parseEtcdUrl('etcd://a:1,,b:2'), /not host:port/);
  assert.throws(() => parseEtcdUrl('etcdss://a:1'), /etcds:\/\/ for TLS/);
});

test('etcd security: files are checked in pairs, TLS material needs etcds://, etcds:// needs a CA, the password stays out of errors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-sec-'));
  try {
    const f = (name: string, text: string) => {
      fs.writeFileSync(path.join(dir, name), text, { mode: 0o600 });
      return path.join(dir, name);
    };
    const ca = f('ca.pem', 'CA PEM');
    const pw = f('pw', 's3cret-pass\n');
    assert.equal(loadEtcdSecurity({}), undefined);
    assert.throws(() => loadEtcdSecurity({ cert: ca }), /needs its key/);
    assert.throws(() => loadEtcdSecurity({ user: 'u' }), /needs a password file/);
    assert.throws(() => loadEtcdSecurity({ user: 'u', passwordFile: f('empty', '\n') }), /is empty/);
    assert.throws(() => loadEtcdSecurity({ ca: path.join(dir, 'missing') }), (e: Error) => /cannot read the etcd CA .*missing: ENOENT/.test(e.message));
    const sec = loadEtcdSecurity({ ca, user: 'u', passwordFile: pw })!;
    assert.equal(sec.password, 's3cret-pass', 'one trailing newline is not part of the password');
    const o = etcdClientOptions(true, sec);
    assert.deepEqual(o.credentials, { rootCertificate: Buffer.from('CA PEM') });
    assert.deepEqual(o.auth, { username: 'u', password: 's3cret-pass' });
    assert.throws(() => etcdClientOptions(true, { user: 'u', password: 'x' }), /etcds:\/\/ needs the CA/);
    assert.throws(() => etcdClientOptions(false, sec), /are for TLS: use an etcds:\/\/ URL/);
    const warned: string[] = [];
    etcdClientOptions(false, { user: 'u', password: 's3cret-pass' }, (m) => warned.push(m));
    assert.ok(warned.length <= 1 && warned.every((m) => !m.includes('s3cret')));
    const e = explainEtcdError(new EtcdAuthenticationFailedError('3 INVALID_ARGUMENT: authentication failed'), 'etcds://h:1', 'u') as Error;
    assert.match(e.message, /^etcd refused the user "u": authentication failed/);
    assert.ok(!e.message.includes('s3cret'));
    const other = new Error('something else');
    assert.equal(explainEtcdError(other, 'etcds://h:1', 'u'), other, 'errors not about access pass through');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('prefixRangeEnd is the byte successor of a prefix', () => {
  assert.deepEqual(prefixRangeEnd(Buffer.from('smt/')), Buffer.from('smt0'));
  assert.deepEqual(prefixRangeEnd(Buffer.from([0x61, 0xff, 0xff])), Buffer.from([0x62]));
  assert.deepEqual(prefixRangeEnd(Buffer.from([0xff])), Buffer.from([0]));
});

test('connect() by URL with a namespace keeps keys under it', async () => {
  const s = EtcdKvStore.connect(`${etcd.url}/url-ns/`);
  try {
    await s.txn({ put: [{ key: 'k', value: 'v' }] });
    assert.equal((await client.get('/url-ns/k').string()), 'v');
    assert.deepEqual((await s.range('')).entries.map((e) => e.key), ['k']);
  } finally {
    await s.close();
  }
});

test('range pages through many keys at one revision, byte for byte', async () => {
  const s = fresh({ pageSize: 97 });
  try {
    const n = 2500;
    const key = (i: number) => `big/${String(i).padStart(5, '0')}`;
    const value = (i: number) => `{"epoch":${i},"replicas":["srv-${i % 7}","srv-${(i + 1) % 7}"],"state":"ok","é":"\u{1F600}"}`;
    for (let b = 0; b < n; b += 500) {
      await s.txn({ put: Array.from({ length: 500 }, (_, j) => ({ key: key(b + j), value: value(b + j) })) });
    }
    const rev = await s.revision();
    // Writes racing the paging must not leak into the snapshot: it shows exactly the racing writes
    // committed at or before its revision.
    const changedAt = new Map<number, number>();
    const racing = (async () => {
      for (let i = 0; i < 20; i++) changedAt.set(i * 100, (await s.txn({ put: [{ key: key(i * 100), value: 'changed' }] })).revision);
    })();
    const r = await s.range('big/');
    await racing;
    assert.ok(r.revision >= rev && r.revision <= rev + 20);
    assert.equal(r.entries.length, n);
    r.entries.forEach((e, i) => {
      assert.equal(e.key, key(i));
      const at = changedAt.get(i);
      assert.equal(e.value, at !== undefined && at <= r.revision ? 'changed' : value(i));
    });
  } finally {
    await s.close();
  }
});

test('a compacted cursor gets CompactedError with the oldest kept revision', async () => {
  const s = fresh();
  try {
    for (let i = 0; i < 5; i++) await s.txn({ put: [{ key: `c/${i % 2}`, value: String(i) }] });
    const rev = await s.revision();
    await client.kv.compact({ revision: rev - 1, physical: true });
    await assert.rejects(s.changesSince('c/', rev - 4, 0), (err: unknown) => {
      assert.ok(err instanceof CompactedError, String(err));
      assert.equal(err.requested, rev - 4);
      assert.equal(err.oldest, rev - 1);
      return true;
    });
    const ok = await s.changesSince('c/', rev - 2, 0);
    assert.deepEqual(ok.events.map((e) => [e.key, e.value, e.revision]), [
      ['c/1', '3', rev - 1],
      ['c/0', '4', rev],
    ]);
  } finally {
    await s.close();
  }
});

test('100 long-polls on one prefix share one etcd watch', async () => {
  const s = fresh();
  try {
    const r0 = await s.revision();
    const polls = Array.from({ length: 100 }, () => s.changesSince('w/', r0, 10_000));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(s.openWatches, 1);
    await s.txn({ put: [{ key: 'w/1', value: 'x' }] });
    for (const p of await Promise.all(polls)) assert.deepEqual(p.events, [{ type: 'put', key: 'w/1', value: 'x', revision: r0 + 1 }]);
    assert.equal(s.openWatches, 1);
  } finally {
    await s.close();
  }
});

test('watchPrefix streams every change in order from a revision, and progress past other prefixes', async () => {
  const s = fresh();
  try {
    const r0 = await s.revision();
    await s.txn({ put: [{ key: 'st/a', value: '1' }] }); // before the subscription, after r0: replayed
    const got: KvEvent[] = [];
    let lastRev = 0;
    const sub = s.watchPrefix('st/', r0, (events, revision) => {
      for (const e of events) assert.ok(e.revision <= revision && e.revision > lastRev - 0);
      assert.ok(revision >= lastRev);
      lastRev = revision;
      got.push(...events);
    });
    for (let i = 0; i < 50; i++) await s.txn({ put: [{ key: `st/${i % 5}`, value: String(i) }] });
    await s.txn({ delete: ['st/a'] });
    const { revision: other } = await s.txn({ put: [{ key: 'elsewhere', value: 'x' }] });
    const deadline = Date.now() + 5000;
    while (lastRev < other && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    sub.cancel();
    assert.equal(lastRev, other, 'progress notifications carry the revision past changes elsewhere');
    assert.equal(got.length, 52);
    assert.deepEqual(got[0], { type: 'put', key: 'st/a', value: '1', revision: r0 + 1 });
    for (let i = 0; i < 50; i++) assert.deepEqual(got[i + 1], { type: 'put', key: `st/${i % 5}`, value: String(i), revision: r0 + 2 + i });
    assert.deepEqual(got[51], { type: 'delete', key: 'st/a', revision: r0 + 52 });
    // Cancelled: later changes are not delivered.
    await s.txn({ put: [{ key: 'st/late', value: 'x' }] });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 52);
  } finally {
    await s.close();
  }
});

test('a KvReplica follows an EtcdKvStore through 1000 updates with one full load', { timeout: 60_000 }, async () => {
  const s = fresh();
  const replica = new KvReplica(s, 'smt/', { pollTimeoutMs: 2000, retryDelayMs: 100 });
  const errors: unknown[] = [];
  replica.on('change', () => {});
  try {
    await s.txn({ put: Array.from({ length: 100 }, (_, i) => ({ key: `smt/vol/${i}`, value: `{"epoch":0}` })) });
    await replica.start();
    assert.equal(replica.size, 100);
    const model = new Map((await s.range('smt/')).entries.map((e) => [e.key, e.value]));
    // A burst of writers, some txns touching several keys, some deleting, some outside the prefix.
    let last = 0;
    await Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; i < 250; i++) {
          const n = w * 250 + i;
          const key = `smt/vol/${n % 150}`;
          const r =
            n % 17 === 0
              ? await s.txn({ delete: [key], put: [{ key: 'other/x', value: String(n) }] })
              : await s.txn({ put: [{ key, value: `{"epoch":${n},"replicas":["srv-${w}"]}` }, { key: `other/${n}`, value: 'x' }] });
          last = Math.max(last, r.revision);
        }
      }),
    );
    const final = await s.range('smt/');
    assert.ok(final.revision >= last);
    assert.ok(await replica.waitForRevision(final.revision, 20_000), `replica stuck at ${replica.revision} < ${final.revision}`);
    assert.deepEqual(
      new Map(replica.entries()),
      new Map(final.entries.map((e) => [e.key, e.value])),
    );
    assert.notDeepEqual(new Map(replica.entries()), model); // it did change
    assert.equal(replica.stats.fullLoads, 1);
    assert.ok(replica.stats.deltaEvents >= 900, `deltas: ${replica.stats.deltaEvents}`);
    assert.deepEqual(errors, []);
  } finally {
    await replica.stop();
    await s.close();
  }
});
