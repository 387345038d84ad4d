// Integration: replication and reactive failover with real processes killed by real signals.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { ConnectionPool } from '../src/protocol/connection.ts';
import { Op, Status } from '../src/protocol/messages.ts';
import { TestCluster, metaBackends, authedFetch } from './helpers/cluster.ts';
import { replicaDisagreements, settled, sleep, waitFor } from './helpers/settle.ts';
import { VerifyingWorkload, randomBytes, prng } from './helpers/workload.ts';

const MiB = 1024 * 1024;

for (const meta of metaBackends()) describe(`replication and reactive failover [${meta} metadata]`, () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;

  before(async () => {
    cluster = await TestCluster.start({
      meta,
      servers: 4,
      heartbeatTimeoutMs: 2000,
      serverArgs: () => ['--gc-grace', '1500', '--scrub-interval', '0'],
    });
    api = new OrchestratorClient(cluster.url);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('loses no acknowledged write when the primary of the busiest segments is SIGKILLed, resumes by itself, and restores the replication factor', async () => {
    await api.createVolume({ name: 'fo', size: 64 * MiB, segmentSize: 4 * MiB, replicas: 2 });
    const client = await PresageClient.connect({ orchestratorUrl: cluster.url, requestTimeoutMs: 2000 });
    try {
      const vol = await client.openVolume('fo');
      const w = new VerifyingWorkload(vol, 3, 128 * 1024);
      let stop = false;
      const running = w.run({ workers: 6, until: () => stop, readRatio: 0.3, stripe: 512 * 1024 });
      await sleep(1500);
      // The busiest server: primary of the most segments.
      const segs = await api.segments('fo');
      const count = new Map<string, number>();
      for (const s of segs) count.set(s.replicas[0], (count.get(s.replicas[0]) ?? 0) + 1);
      const victim = [...count.entries()].sort((a, b) => b[1] - a[1])[0][0];
      const writesBefore = w.stats.writes;
      await cluster.killServer(cluster.serverById(victim).index, 'SIGKILL');
      const killedAt = Date.now();

      // The workload resumes by itself: writes complete again after the failover.
      await waitFor('writes to resume', async () => w.stats.writes > writesBefore + 50, 30000);
      const resumedMs = Date.now() - killedAt;
      const restored = await waitFor('replication factor restored', () => settled(api, 'fo', 2), 60000);
      assert.ok(restored.every((s) => !s.replicas.includes(victim)), 'the dead server holds nothing');
      stop = true;
      await running;

      assert.deepEqual(w.stats.errors, [], 'the application saw no I/O error');
      assert.equal(await w.verifyAll(), undefined, 'every acknowledged write is there, byte for byte');
      // And each surviving replica holds exactly the same data (checked block by block).
      assert.deepEqual(await replicaDisagreements(api, restored, 4 * MiB), [], 'the replicas of every segment agree');
      assert.ok(resumedMs < 20000, `resumed after ${resumedMs} ms`);
    } finally {
      await client.close();
    }
  });

  it('reads a block corrupted on disk correctly from another replica, and scrub repairs it', async () => {
    await api.createVolume({ name: 'scrub', size: 8 * MiB, segmentSize: 4 * MiB, replicas: 2 });
    const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
    try {
      const vol = await client.openVolume('scrub');
      const data = randomBytes(prng(11), 4 * MiB);
      await vol.write(0, data);
      await vol.flush();
      const seg = (await api.segments('scrub'))[0];
      const primary = cluster.serverById(seg.replicas[0]);
      // Flip one byte of block 5 in the primary's data file, behind the server's back.
      const file = path.join(primary.dir, 'segments', 'scrub', '0.dat');
      const fd = fs.openSync(file, 'r+');
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, 5 * 4096 + 100);
      b[0] ^= 0xff;
      fs.writeSync(fd, b, 0, 1, 5 * 4096 + 100);
      fs.closeSync(fd);

      const got = await vol.read(0, 4 * MiB);
      assert.ok(got.equals(data), 'the read is correct despite the corrupt block');
      assert.ok(client.stats.failovers >= 1, 'it came from the other replica');

      // Scrub (triggered by the corrupt read, or run now) repairs the primary's block.
      const admin = `http://127.0.0.1:${primary.adminPort}`;
      const stats = await waitFor('scrub repair', async () => {
        const r = await authedFetch(`${admin}/v1/scrub`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ segmentId: seg.segmentId }) });
        const st = (await r.json()) as { corruptFound: number; blocksRepaired: number };
        return st.blocksRepaired >= 1 ? st : undefined;
      }, 10000);
      assert.ok(stats.corruptFound >= 1);
      const onDisk = Buffer.alloc(4096);
      const fd2 = fs.openSync(file, 'r');
      fs.readSync(fd2, onDisk, 0, 4096, 5 * 4096);
      fs.closeSync(fd2);
      assert.ok(onDisk.equals(data.subarray(5 * 4096, 6 * 4096)), 'the block on disk is repaired');
      // A fresh read served by the primary alone is now correct.
      const c2 = await PresageClient.connect({ orchestratorUrl: cluster.url });
      try {
        const v2 = await c2.openVolume('scrub');
        assert.ok((await v2.read(5 * 4096, 4096)).equals(data.subarray(5 * 4096, 6 * 4096)));
        assert.equal(c2.stats.failovers, 0);
      } finally {
        await c2.close();
      }
    } finally {
      await client.close();
    }
  });

  it('never serves stale copies from a server that comes back after its segments moved on', async () => {
    // Every volume so far (fo, scrub) settled: nothing still moving when the next server dies.
    await waitFor('cluster settled', async () => (await settled(api, 'fo', 2)) && settled(api, 'scrub', 2), 60000);
    // Bring the server killed in the first test back first, so every server is up.
    for (const s of cluster.servers) if (!s.proc) await cluster.startServer(s.index);
    await api.createVolume({ name: 'stale', size: 16 * MiB, segmentSize: 4 * MiB, replicas: 2 });
    const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
    try {
      const vol = await client.openVolume('stale');
      const old = randomBytes(prng(21), 16 * MiB);
      await vol.write(0, old);
      await vol.flush();
      const before = await api.segments('stale');
      const victim = before[0].replicas[0];
      const victimHandle = cluster.serverById(victim);
      await cluster.killServer(victimHandle.index, 'SIGKILL');
      await waitFor('segments moved off the dead server', async () => {
        const segs = await settled(api, 'stale', 2);
        return segs && segs.every((s) => !s.replicas.includes(victim));
      }, 60000);
      const fresh = randomBytes(prng(22), 16 * MiB);
      await vol.write(0, fresh);
      await vol.flush();

      await cluster.startServer(victimHandle.index);
      // Ask the returned server directly, with the epochs it last knew: it must refuse, not serve old bytes.
      const pool = new ConnectionPool();
      try {
        const conn = pool.get(`127.0.0.1:${victimHandle.port}`);
        for (const s of before.filter((x) => x.replicas.includes(victim))) {
          const res = await conn.send({ op: Op.READ, flags: 0, epoch: s.epoch, segmentId: s.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(0) });
          assert.ok([Status.STALE, Status.NOT_OWNER, Status.UNAVAILABLE].includes(res.status), `stale read refused (${res.status})`);
          const now = (await api.segments('stale')).find((x) => x.segmentId === s.segmentId)!;
          const res2 = await conn.send({ op: Op.READ, flags: 0, epoch: now.epoch, segmentId: s.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(0) });
          assert.equal(res2.status, Status.NOT_OWNER, 'not an owner at the current epoch');
        }
      } finally {
        pool.closeAll();
      }
      assert.ok((await vol.read(0, 16 * MiB)).equals(fresh), 'clients read the new data');
      // Its outdated copies are discarded after the grace period.
      await waitFor('stale copies deleted', async () => {
        const st = (await (await authedFetch(`http://127.0.0.1:${victimHandle.adminPort}/v1/status`)).json()) as { segments: string[] };
        return !st.segments.some((id) => id.startsWith('stale/'));
      }, 20000);
    } finally {
      await client.close();
    }
  });
});

describe('failure-domain placement', () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start({ servers: 4, serverArgs: (i) => ['--zone', i < 2 ? 'zone-a' : 'zone-b', '--rack', `r${i}`] });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('never puts both replicas of a segment in one zone when another zone has room', async () => {
    const api = new OrchestratorClient(cluster.url);
    await api.createVolume({ name: 'zones', size: 256 * MiB, segmentSize: 4 * MiB, replicas: 2 });
    const zoneOf = new Map((await api.status()).servers.map((s) => [s.id, s.zone]));
    const segs = await api.segments('zones');
    assert.equal(segs.length, 64);
    for (const s of segs) {
      const zones = s.replicas.map((r) => zoneOf.get(r));
      assert.equal(new Set(zones).size, 2, `${s.segmentId} has replicas in ${zones}`);
    }
    const text = await cluster.cli(['status']);
    assert.match(text.stdout, /zone-a\/r0/);
  });
});
