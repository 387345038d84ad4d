// Leader election against a real etcd: candidates in child processes, the leader SIGKILLed (no
// resign), the standby must lead within the lease TTL plus a little.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { LeaderElection } from './leader-election.ts';
import { EtcdKvStore, FencedError } from './etcd-kv.ts';
import { startEtcd, type EtcdProcess } from './testing/etcd-process.ts';

let etcd: EtcdProcess;
let client: Etcd3;

before(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoint });
});

after(async () => {
  client?.close();
  await etcd?.stop();
});

const moduleUrl = new URL('./leader-election.ts', import.meta.url).href;

/** A candidate process: prints "leader" when elected, "lost" when it loses leadership. */
function candidate(name: string, id: string, ttl: number): { child: ChildProcess; lines: string[]; waitFor(line: string, ms: number): Promise<number> } {
  const code = `
    const { Etcd3 } = await import('etcd3');
    const { LeaderElection } = await import(${JSON.stringify(moduleUrl)});
    const client = new Etcd3({ hosts: ${JSON.stringify(etcd.endpoint)} });
    const e = new LeaderElection(client, ${JSON.stringify(name)}, ${JSON.stringify(id)}, ${ttl});
    e.onLost(() => console.log('lost'));
    console.log('campaigning');
    await e.campaign();
    console.log('leader');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
  });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const p of parts) lines.push(p.trim());
    for (const w of [...waiters]) w();
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const waitFor = (line: string, ms: number) =>
    new Promise<number>((resolve, reject) => {
      const check = () => {
        if (lines.includes(line)) {
          cleanup();
          resolve(Date.now());
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${id}: no "${line}" within ${ms} ms; got ${JSON.stringify(lines)}; stderr: ${stderr.slice(-1500)}`));
      }, ms);
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return { child, lines, waitFor };
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

test('SIGKILL the leader process: the standby leads within ttl + a few seconds', { timeout: 60_000 }, async () => {
  const ttl = 2;
  const a = candidate('orchestrator', 'cand-a', ttl);
  await a.waitFor('leader', 15_000);
  const b = candidate('orchestrator', 'cand-b', ttl);
  try {
    await b.waitFor('campaigning', 15_000);
    // b is a standby: it must not lead while a lives.
    await new Promise((r) => setTimeout(r, ttl * 1000 + 500));
    assert.ok(!b.lines.includes('leader'), 'two leaders at once');
    const observer = new LeaderElection(client, 'orchestrator', 'observer', ttl);
    assert.equal(await observer.leader(), 'cand-a');

    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    await exited(a.child);
    const ledAt = await b.waitFor('leader', (ttl + 5) * 1000);
    const took = ledAt - killedAt;
    assert.ok(took <= (ttl + 3) * 1000, `takeover took ${took} ms`);
    assert.equal(await observer.leader(), 'cand-b');
  } finally {
    a.child.kill('SIGKILL');
    b.child.kill('SIGKILL');
    await Promise.all([exited(a.child), exited(b.child)]);
  }
});

test('in-process: one leader at a time, resign hands over at once, a revoked lease fires onLost', { timeout: 30_000 }, async () => {
  const e1 = new LeaderElection(client, 'inproc', 'one', 5);
  const e2 = new LeaderElection(client, 'inproc', 'two', 5);
  assert.throws(() => new LeaderElection(client, '', 'x', 5), /election name/);
  assert.throws(() => new LeaderElection(client, 'n', 'x', 0), /ttlSeconds/);
  await e1.campaign();
  assert.equal(e1.isLeader, true);
  let e2Led = false;
  const second = e2.campaign().then(() => (e2Led = true));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(e2Led, false);
  assert.equal(e2.isLeader, false);
  assert.equal(await e1.leader(), 'one');

  const t0 = Date.now();
  await e1.resign();
  assert.equal(e1.isLeader, false);
  await second;
  assert.ok(Date.now() - t0 < 2000, 'resign hands over without waiting for the TTL');
  assert.equal(e2.isLeader, true);
  assert.equal(await e2.leader(), 'two');

  // Someone revokes e2's lease (an operator, or etcd after a partition): e2 learns it lost.
  const lost = new Promise<Error>((resolve) => e2.onLost(resolve));
  const keys = await client.getAll().prefix('/presage/election/inproc/').keys();
  assert.equal(keys.length, 1);
  const leaseId = keys[0]!.split('/').pop()!;
  await client.leaseClient.leaseRevoke({ ID: leaseId });
  const reason = await lost;
  assert.match(reason.message, /deleted|lease/);
  assert.equal(e2.isLeader, false);
  assert.equal(await e2.leader(), undefined);
  await e2.resign();
});

test('a deposed leader is fenced: once its election key is gone its transactions fail, its successor writes', { timeout: 30_000 }, async () => {
  const a = new LeaderElection(client, 'fence', 'a', 5);
  await a.campaign();
  const storeA = new EtcdKvStore(client, { namespace: '/fence-test/' });
  storeA.fence = () => a.fence;
  assert.equal((await storeA.txn({ put: [{ key: 'k1', value: 'by a' }] })).succeeded, true, 'the leader writes');
  // Deposed without knowing it yet (a lease that expired during a pause): its key is gone.
  await client.delete().key(a.fence!.key);
  await assert.rejects(storeA.txn({ put: [{ key: 'k2', value: 'by a, deposed' }] }), (err: Error) => err instanceof FencedError && err.code === 'ERR_PRESAGE_FENCED');
  assert.equal(await storeA.get('k2'), undefined, 'nothing of the deposed leader landed');
  const b = new LeaderElection(client, 'fence', 'b', 5);
  await b.campaign();
  const storeB = new EtcdKvStore(client, { namespace: '/fence-test/' });
  storeB.fence = () => b.fence;
  assert.equal((await storeB.txn({ put: [{ key: 'k3', value: 'by b' }] })).succeeded, true, 'the successor writes');
  await assert.rejects(storeA.txn({ put: [{ key: 'k4', value: 'by a' }] }), FencedError, 'and the deposed one still cannot');
  // A compare that fails for its own reason is still an ordinary "not succeeded", not a fence.
  assert.equal((await storeB.txn({ compare: [{ key: 'k3', modRevision: 1 }], put: [{ key: 'k3', value: 'x' }] })).succeeded, false);
  await b.resign();
  await a.resign().catch(() => {});
});
