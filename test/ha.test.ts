// Orchestrator high availability on etcd: two orchestrators, one leads; SIGKILL the leader in
// the middle of a migration and the standby takes over and finishes it. Plus: client copies of
// the SMT follow bursts of updates by deltas, and `presage meta migrate` moves an embedded store
// into etcd.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { connectMeta, type MetaConnection } from '../src/api/connect.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { freePort, spawnPresage, TestCluster, type Proc, authedFetch } from './helpers/cluster.ts';
import { replicaDisagreements, settled, waitFor } from './helpers/settle.ts';
import { VerifyingWorkload, prng, randomBytes } from './helpers/workload.ts';

const MiB = 1024 * 1024;
const SEG = 4 * MiB;

describe('orchestrator high availability on etcd', () => {
  let cluster: TestCluster;
  let meta: MetaConnection;
  let standby: Proc;
  let standbyUrl: string;

  before(async () => {
    cluster = await TestCluster.start({
      meta: 'etcd',
      servers: 4,
      heartbeatTimeoutMs: 3000,
      orchestratorEnv: { PRESAGE_FAILPOINTS: 'operator.before-commit=sleep(4000)' },
    });
    const port = await freePort();
    standbyUrl = `http://127.0.0.1:${port}`;
    standby = await spawnPresage(
      ['orchestrator', '--dir', path.join(cluster.root, 'orchestrator-2'), '--listen', `127.0.0.1:${port}`, '--heartbeat-timeout', '3000', '--down-out-delay', '0', ...cluster.metaArgs],
      /orchestrator listening/,
    );
    meta = connectMeta({ meta: cluster.etcd!.url });
  });
  after(async () => {
    await meta?.close();
    await cluster?.kill(standby);
    await cluster?.stop();
  });

  it('one orchestrator leads; the standby refuses changes and names the leader', async () => {
    const h1 = (await (await fetch(`${cluster.url}/healthz`)).json()) as { leader: boolean };
    const h2 = (await (await fetch(`${standbyUrl}/healthz`)).json()) as { leader: boolean };
    assert.equal(h1.leader, true);
    assert.equal(h2.leader, false);
    const r = await authedFetch(`${standbyUrl}/v1/volumes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x', size: SEG }) });
    assert.equal(r.status, 503);
    assert.match(((await r.json()) as { error: string }).error, new RegExp(`not the leader; the leader is ${cluster.url}`));
  });

  it('SIGKILL of the leader during a migration: the standby takes over within seconds and completes it, data verified', async () => {
    const api = meta.api; // finds the leader through the election, whichever it is
    await api.createVolume({ name: 'ha', size: 16 * MiB, segmentSize: SEG, replicas: 2 });
    const client = await PresageClient.connect({ meta: cluster.etcd!.url });
    try {
      const vol = await client.openVolume('ha');
      const w = new VerifyingWorkload(vol, 17, 64 * 1024);
      const base = randomBytes(prng(17), vol.size);
      await vol.write(0, base);
      base.copy(w.model);
      let stop = false;
      const running = w.run({ workers: 4, until: () => stop, readRatio: 0.3, stripe: 256 * 1024 });

      const seg = (await api.segments('ha'))[1];
      const to = (await api.status()).servers.map((s) => s.id).find((id) => !seg.replicas.includes(id))!;
      const leader = cluster.orchestrator!;
      const mark = leader.stderr.length;
      const op = await api.migrate({ segmentId: seg.segmentId, to });
      // The copy is verified and the leader is about to commit: kill it there.
      await waitFor('the leader at the commit step', async () => leader.stderr.slice(mark).includes('failpoint operator.before-commit reached'), 30000, 50);
      const killedAt = Date.now();
      await cluster.killOrchestrator('SIGKILL');

      await waitFor('the standby leads', async () => ((await (await fetch(`${standbyUrl}/healthz`)).json()) as { leader: boolean }).leader, 20000, 100);
      const takeoverMs = Date.now() - killedAt;
      const segs = await waitFor('the migration completes under the new leader', () => settled(api, 'ha', 2), 60000);
      const moved = segs.find((s) => s.segmentId === seg.segmentId)!;
      assert.ok(moved.replicas.includes(to), `committed by the standby (operator ${op.id})`);
      assert.ok(takeoverMs < 15000, `took over after ${takeoverMs} ms`);

      stop = true;
      await running;
      assert.deepEqual(w.stats.errors, [], 'the workload saw no error');
      assert.equal(await w.verifyAll(), undefined, 'data verified byte for byte');
      assert.deepEqual(await replicaDisagreements(api, segs, SEG), []);
    } finally {
      await client.close();
    }
  });

  it("a client's SMT copy converges after a burst of updates by deltas, with no full reload", async () => {
    const api = meta.api;
    await api.createVolume({ name: 'burst', size: 64 * MiB, segmentSize: 1 * MiB, replicas: 2 });
    const client = await PresageClient.connect({ meta: cluster.etcd!.url });
    try {
      const loadsBefore = client.view.replica.stats.fullLoads;
      // A burst: promote the other replica of every segment (64 epoch bumps), then create a volume.
      const segs = await api.segments('burst');
      await Promise.all(segs.map((s) => api.promote(s.segmentId, s.replicas[1])));
      await api.createVolume({ name: 'burst-2', size: 8 * MiB, segmentSize: 1 * MiB, replicas: 1 });
      const want = await api.segments('burst');
      await waitFor('the client copy converged', async () => want.every((s) => client.view.entry(s.segmentId)?.epoch === s.epoch) && client.view.volumes.has('burst-2'), 20000, 50);
      for (const s of want) assert.deepEqual(client.view.entry(s.segmentId)?.replicas, s.replicas);
      assert.equal(client.view.replica.stats.fullLoads, loadsBefore, 'no full reload');
      assert.ok(client.view.replica.stats.deltaEvents >= 64);
    } finally {
      await client.close();
    }
  });
});

describe('presage meta migrate', () => {
  it('moves a running embedded cluster to etcd: same SMT, same data, served again with --meta etcd', async () => {
    const cluster = await TestCluster.start({ servers: 3 });
    const { startEtcd } = await import('../src/metadata/testing/etcd-process.ts');
    const etcd = await startEtcd();
    try {
      const { OrchestratorClient } = await import('../src/api/orchestrator-client.ts');
      const api = new OrchestratorClient(cluster.url);
      await api.createVolume({ name: 'moving', size: 16 * MiB, segmentSize: SEG, replicas: 2 });
      const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
      const data = randomBytes(prng(5), 16 * MiB);
      const vol = await client.openVolume('moving');
      await vol.write(0, data);
      await vol.flush();
      await client.close();
      const before = await api.segments('moving');

      await cluster.killOrchestrator('SIGTERM');
      const r = await cluster.cli(['meta', 'migrate', '--from', path.join(cluster.root, 'orchestrator'), '--to', etcd.url, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const summary = JSON.parse(r.stdout) as { keys: number; verified: boolean };
      assert.equal(summary.verified, true);
      assert.ok(summary.keys >= 1 + 3 + 4, 'volume, servers and SMT entries');
      const again = await cluster.cli(['meta', 'migrate', '--from', path.join(cluster.root, 'orchestrator'), '--to', etcd.url]);
      assert.notEqual(again.code, 0, 'refuses to overwrite without --force');
      assert.match(again.stderr, /already holds .* --force/);

      // The same processes, now on etcd.
      for (let i = 0; i < 3; i++) await cluster.killServer(i, 'SIGTERM');
      cluster.switchToEtcd(etcd);
      await cluster.startOrchestrator();
      await Promise.all([0, 1, 2].map((i) => cluster.startServer(i)));
      const conn = connectMeta({ meta: etcd.url });
      try {
        assert.deepEqual(await conn.api.segments('moving'), before, 'the SMT moved unchanged');
        const c2 = await PresageClient.connect({ meta: etcd.url });
        try {
          assert.ok((await (await c2.openVolume('moving')).read(0, 16 * MiB)).equals(data), 'the data is served as before');
        } finally {
          await c2.close();
        }
      } finally {
        await conn.close();
      }
    } finally {
      await cluster.stop(); // also kills the etcd it now points to
    }
  });
});
