// Issue #17, the first data-loss case: an orchestrator started on an empty metadata store (a lost
// disk, a restore to the wrong folder, a --dir typo) used to take the running servers into a
// fresh cluster, and within the GC grace every server deleted every segment as "no longer
// assigned"; restoring the intact metadata then found nothing. With a cluster identity, the
// servers are refused with an error naming both clusters, delete nothing, refuse to start against
// the foreign store, and serve every byte again once the right store is back. Real processes.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { bearerToken, loadKeyFile, verifierOf } from '../src/auth/credentials.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { DirLock, DirectoryLockedError } from '../src/orchestrator/dir-lock.ts';
import { TestCluster, runPresage } from './helpers/cluster.ts';
import { sleep, waitFor } from './helpers/settle.ts';

const MiB = 1024 * 1024;

/** Segment data files in a server's directory. */
function localSegments(dir: string): string[] {
  const root = path.join(dir, 'segments');
  if (!fs.existsSync(root)) return [];
  return fs.readdirSync(root, { recursive: true }).map(String).filter((f) => f.endsWith('.dat')).sort();
}

let cluster: TestCluster;
before(async () => {
  cluster = await TestCluster.start({ servers: 2, heartbeatTimeoutMs: 3000, serverArgs: () => ['--gc-grace', '1000', '--scrub-interval', '0'] });
});
after(async () => {
  await cluster?.stop();
});

test('an orchestrator on an empty metadata store cannot make servers delete their data; the right store brings every byte back', async () => {
  const api = new OrchestratorClient(cluster.url);
  const data = crypto.randomBytes(8 * MiB);
  const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
  try {
    await api.createVolume({ name: 'keep', size: 8 * MiB, segmentSize: 4 * MiB, replicas: 2 });
    const vol = await client.openVolume('keep');
    await vol.write(0, data);
    await vol.flush();
  } finally {
    await client.close();
  }
  const dirs = cluster.servers.map((s) => s.dir);
  const before = dirs.map(localSegments);
  assert.ok(before.every((l) => l.length === 2), `each server holds both segments: ${JSON.stringify(before)}`);
  const clusterA = fs.readFileSync(path.join(dirs[0]!, 'cluster-id'), 'utf8').trim();
  assert.match(clusterA, /^[0-9a-f-]{36}$/, 'the server remembers its cluster');
  assert.equal(fs.readFileSync(path.join(dirs[1]!, 'cluster-id'), 'utf8').trim(), clusterA);

  // The mistake: the orchestrator restarts on an empty directory, and an operator even re-adds
  // the servers' keys there, so nothing but the cluster identity stands between them and GC.
  const orchDir = path.join(cluster.root, 'orchestrator');
  await cluster.killOrchestrator('SIGTERM');
  fs.renameSync(orchDir, `${orchDir}.intact`);
  await cluster.startOrchestrator();
  const fresh = new OrchestratorClient(cluster.url);
  try {
    for (const s of cluster.servers) {
      await fresh.createEntity({ name: `server-${s.index}`, role: 'server' }, verifierOf(loadKeyFile(path.join(s.dir, 'server.key')).secret));
    }
    // A registration as the servers send it is refused, naming both clusters.
    const reg = await fetch(`${cluster.url}/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${bearerToken(loadKeyFile(path.join(dirs[0]!, 'server.key')))}` },
      body: JSON.stringify({ id: cluster.servers[0]!.id, dataAddr: `127.0.0.1:${cluster.servers[0]!.port}`, adminAddr: `127.0.0.1:${cluster.servers[0]!.adminPort}`, capacityBytes: 1 << 30, clusterId: clusterA }),
    });
    const body = (await reg.json()) as { error: string; code: string };
    assert.equal(reg.status, 409);
    assert.equal(body.code, 'ERR_PRESAGE_FOREIGN_CLUSTER');
    assert.match(body.error, new RegExp(`belongs to cluster ${clusterA}, but this metadata store is cluster [0-9a-f-]{36}`));

    // Well past the GC grace, with the servers following the foreign (empty) store: nothing deleted.
    await sleep(4000);
    assert.deepEqual(dirs.map(localSegments), before, 'no server deleted a copy');
    assert.equal((await fresh.status()).servers.length, 0, 'no server joined the foreign cluster');

    // A server restarted meanwhile refuses to start against it, saying why.
    await cluster.killServer(1, 'SIGTERM');
    const s1 = cluster.servers[1]!;
    const r = await runPresage(['server', '--dir', s1.dir, '--orchestrator', cluster.url, '--listen', `127.0.0.1:${s1.port}`, '--admin', `127.0.0.1:${s1.adminPort}`, '--gc-grace', '1000'], { PRESAGE_KEY_FILE: '' }, 60000);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`refused by the orchestrator: server ${s1.id} belongs to cluster ${clusterA}`));
    assert.match(r.stderr, /--join-new-cluster/);
    assert.deepEqual(localSegments(s1.dir), before[1]);
  } finally {
    fresh.close();
  }

  // The fix: the intact store comes back; the servers rejoin and every byte reads back.
  await cluster.killOrchestrator('SIGTERM');
  fs.rmSync(orchDir, { recursive: true, force: true });
  fs.renameSync(`${orchDir}.intact`, orchDir);
  await cluster.startOrchestrator();
  await cluster.startServer(1);
  await waitFor('both servers up in their own cluster', async () => {
    const st = await new OrchestratorClient(cluster.url).status();
    return st.servers.filter((s) => s.state === 'up').length === 2 || undefined;
  }, 30000, 200);
  const back = await PresageClient.connect({ orchestratorUrl: cluster.url });
  try {
    const got = await (await back.openVolume('keep')).read(0, 8 * MiB);
    assert.ok(got.equals(data), 'the volume reads back byte for byte');
  } finally {
    await back.close();
  }
  assert.deepEqual(dirs.map(localSegments), before);
  api.close();
});

test('one orchestrator per directory: a second is refused naming the holder; a SIGKILLed holder leaves no stale lock', async () => {
  const orchDir = path.join(cluster.root, 'orchestrator');
  const pid = cluster.orchestrator!.child.pid!;
  const r = await runPresage(['orchestrator', '--dir', orchDir, '--listen', '127.0.0.1:0'], {}, 30000);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, new RegExp(`another orchestrator is running on ${orchDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(pid ${pid} on `));
  // In-process too (the same kernel lock): a second DirLock on the directory is refused.
  assert.throws(() => DirLock.acquire(orchDir), (err: Error) => err instanceof DirectoryLockedError && err.code === 'ERR_PRESAGE_DIR_LOCKED');
  // The holder dies without cleaning up: its lock goes with it.
  await cluster.killOrchestrator('SIGKILL');
  await cluster.startOrchestrator();
  assert.ok((await new OrchestratorClient(cluster.url).status()).servers.length === 2, 'the restarted orchestrator serves the same cluster');
});

test('a copy the metadata does not know is quarantined, not deleted; it shows in status and the decision log; only an explicit purge deletes it', async () => {
  const s0 = cluster.servers[0]!;
  await cluster.killServer(0, 'SIGTERM');
  // A copy of a volume this cluster does not know (left from a deleted volume, another cluster, a restore).
  const from = path.join(s0.dir, 'segments', 'keep');
  const ghost = path.join(s0.dir, 'segments', 'ghost');
  fs.mkdirSync(ghost);
  for (const ext of ['dat', 'sum']) fs.copyFileSync(path.join(from, `0.${ext}`), path.join(ghost, `0.${ext}`));
  const ghostBytes = fs.readFileSync(path.join(ghost, '0.dat'));
  await cluster.startServer(0);
  const st = await waitFor('the unknown copy to be quarantined and reported', async () => {
    const x = await new OrchestratorClient(cluster.url).status();
    return x.servers.find((s) => s.id === s0.id)?.quarantined === 1 ? x : undefined;
  }, 30000, 200);
  assert.ok(st);
  assert.ok(!fs.existsSync(path.join(ghost, '0.dat')), 'it left the segment store');
  const kept = path.join(s0.dir, 'quarantine', 'ghost', '0', '0.dat');
  assert.ok(fs.readFileSync(kept).equals(ghostBytes), 'its data is kept whole in quarantine');
  const events = await new OrchestratorClient(cluster.url).events(0);
  assert.ok(events.some((e) => e.type === 'quarantined' && e.server === s0.id), 'the decision log says so');
  const status = await cluster.cli(['status']);
  assert.match(status.stdout, new RegExp(`${s0.id} holds 1 copy in quarantine`));
  const list = await cluster.cli(['quarantine', 'list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual((JSON.parse(list.stdout) as { server: string; segmentId: string }[]).map((r) => `${r.server} ${r.segmentId}`), [`${s0.id} ghost/0`]);
  const refused = await cluster.cli(['quarantine', 'purge', s0.id]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /deletes the quarantined data for good.*--yes/);
  assert.ok(fs.existsSync(kept));
  const purged = await cluster.cli(['quarantine', 'purge', s0.id, '--yes']);
  assert.equal(purged.code, 0, purged.stderr);
  assert.match(purged.stdout, /purged 1 quarantined copy; 0 left/);
  assert.ok(!fs.existsSync(kept));
  assert.ok(!localSegments(s0.dir).some((f) => f.startsWith('ghost')), 'and nothing of it is back in the store');
});
