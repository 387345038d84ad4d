// Issue #17, the second data-loss case: a server whose segment file was replaced by a hole or
// truncated (a bad disk, an admin's mistake) kept serving it as primary, and scrub "repaired" the
// healthy replica from it, copying zeros over the only good data. Now the store knows which blocks
// lost their latest write and which files lost their shape: a holed block is corrupt (reads go to
// the replica, scrub repairs the primary from it), and a truncated copy is marked damaged, never
// served, dropped from the replica set by the orchestrator and re-replicated from the healthy copy.
// Real processes; the volume and the healthy replica's file are checked byte for byte.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { TestCluster, authedFetch } from './helpers/cluster.ts';
import { waitFor } from './helpers/settle.ts';

const MiB = 1024 * 1024;
const SEG = 4 * MiB;

let cluster: TestCluster;
let api: OrchestratorClient;
const data = crypto.randomBytes(2 * SEG);

before(async () => {
  // A heartbeat timeout longer than a restart: the damage, not the restart, is what is tested.
  cluster = await TestCluster.start({ servers: 2, heartbeatTimeoutMs: 20000, serverArgs: () => ['--scrub-interval', '0', '--gc-grace', '1000'] });
  api = new OrchestratorClient(cluster.url);
  await api.createVolume({ name: 'dmg', size: 2 * SEG, segmentSize: SEG, replicas: 2 });
  const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
  try {
    const vol = await client.openVolume('dmg');
    await vol.write(0, data);
    await vol.flush();
  } finally {
    await client.close();
  }
});
after(async () => {
  api?.close();
  await cluster?.stop();
});

const datFile = (dir: string, index: number) => path.join(dir, 'segments', 'dmg', `${index}.dat`);
const handleOf = (id: string) => cluster.serverById(id);

async function readAll(): Promise<Buffer> {
  const c = await PresageClient.connect({ orchestratorUrl: cluster.url });
  try {
    return await (await c.openVolume('dmg')).read(0, 2 * SEG);
  } finally {
    await c.close();
  }
}

/** Restarts a server after `damage` was done to its files while it was stopped (cleanly). */
async function damageWhileStopped(id: string, damage: (dir: string) => void): Promise<void> {
  const h = handleOf(id);
  await cluster.killServer(h.index, 'SIGTERM');
  damage(h.dir);
  await cluster.startServer(h.index);
}

test('a primary whose data file became a hole is repaired from the replica; the replica is never overwritten', async () => {
  const seg = await api.segment('dmg/0');
  const [primary, replica] = seg.replicas.map(handleOf);
  const replicaBefore = fs.readFileSync(datFile(replica!.dir, 0));
  assert.ok(replicaBefore.equals(data.subarray(0, SEG)), 'the replica holds the data');
  await damageWhileStopped(primary!.id, (dir) => fs.writeFileSync(datFile(dir, 0), Buffer.alloc(SEG)));
  assert.equal((await api.segment('dmg/0')).replicas[0], primary!.id, 'it is still the primary');

  assert.ok((await readAll()).equals(data), 'reads are right at once: the holed blocks fail over to the replica');
  const r = await authedFetch(`http://127.0.0.1:${primary!.adminPort}/v1/scrub`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ segmentId: 'dmg/0' }) });
  const stats = (await r.json()) as { corruptFound: number; blocksRepaired: number; conflicts: number };
  assert.equal(stats.corruptFound, SEG / 4096, 'every holed block was found');
  assert.equal(stats.blocksRepaired, SEG / 4096, 'and repaired');
  assert.ok(fs.readFileSync(datFile(replica!.dir, 0)).equals(replicaBefore), 'the healthy replica was not touched');
  assert.ok(fs.readFileSync(datFile(primary!.dir, 0)).equals(data.subarray(0, SEG)), "the primary's file holds the data again");
});

test('a truncated copy is marked damaged, never served, replaced from the healthy replica, and the volume reads back whole', async () => {
  const seg = await api.segment('dmg/1');
  const [primary, replica] = seg.replicas.map(handleOf);
  const replicaBefore = fs.readFileSync(datFile(replica!.dir, 1));
  await damageWhileStopped(primary!.id, (dir) => fs.truncateSync(datFile(dir, 1), 0));
  assert.ok((await readAll()).equals(data), 'the volume reads back whole meanwhile');
  // The orchestrator drops the damaged copy, the server deletes it, repair copies the segment back.
  const events = await waitFor('the damaged copy to be replaced', async () => {
    const e = await api.segment('dmg/1');
    if (e.replicas.length !== 2 || e.state !== 'ok') return undefined;
    const st = (await authedFetch(`http://127.0.0.1:${primary!.adminPort}/v1/status`).then((x) => x.json())) as { segments: string[] };
    return st.segments.includes('dmg/1') ? await api.events(0) : undefined;
  }, 60000, 200);
  const dropped = events.find((e) => e.type === 'failover' && e.segmentId === 'dmg/1');
  assert.ok(dropped && /damaged: dropped, to be re-replicated/.test(dropped.reason), 'the decision log says why the copy left');
  assert.ok(!fs.existsSync(path.join(primary!.dir, 'segments', 'dmg', '1.damaged')), 'the new copy is whole');
  assert.ok(fs.readFileSync(datFile(replica!.dir, 1)).equals(replicaBefore), 'the healthy replica was not touched');
  assert.ok(fs.readFileSync(datFile(primary!.dir, 1)).equals(data.subarray(SEG)), 'the re-replicated copy holds the data');
  assert.ok((await readAll()).equals(data), 'the volume reads back whole');
});
