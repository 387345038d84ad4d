// Metadata backup and restore (issue #17): `presage meta backup` takes a consistent snapshot of a
// running cluster; after the orchestrator's directory is lost, `presage meta restore` refuses a
// backup older than what the servers have seen (naming each segment it would send back in time),
// and restores a current one into the empty directory, after which the same cluster serves every
// byte again. Real processes.

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
let cluster: TestCluster;

before(async () => {
  // A heartbeat timeout longer than the restore: the servers wait for their orchestrator.
  cluster = await TestCluster.start({ servers: 2, heartbeatTimeoutMs: 30000, serverArgs: () => ['--gc-grace', '1000', '--scrub-interval', '0'] });
});
after(async () => {
  await cluster?.stop();
});

test('backup any time; a restore older than what the servers saw is refused with what would be lost; a current one brings the cluster back', async () => {
  const api = new OrchestratorClient(cluster.url);
  const data = crypto.randomBytes(8 * MiB);
  await api.createVolume({ name: 'bk', size: 8 * MiB, segmentSize: 4 * MiB, replicas: 2 });
  const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
  try {
    const vol = await client.openVolume('bk');
    await vol.write(0, data);
    await vol.flush();
  } finally {
    await client.close();
  }
  const old = path.join(cluster.root, 'old.backup');
  const r1 = await cluster.cli(['meta', 'backup', old]);
  assert.equal(r1.code, 0, r1.stderr);
  assert.match(r1.stdout, /backed up \d+ keys at revision \d+ of cluster [0-9a-f-]{36}/);
  assert.equal(fs.statSync(old).mode & 0o777, 0o600, 'the backup is readable by its owner only');

  // The cluster moves on: a promotion gives bk/0 a new epoch, which both servers see.
  const seg = await api.segment('bk/0');
  const moved = await api.promote('bk/0', seg.replicas[1]!);
  await waitFor('the servers to record the new epoch', async () => {
    for (const s of cluster.servers) {
      const held = (await authedFetch(`http://127.0.0.1:${s.adminPort}/v1/held`).then((r) => r.json())) as Record<string, number>;
      if ((held['bk/0'] ?? 0) < moved.epoch) return undefined;
    }
    return true;
  }, 20000, 200);
  const current = path.join(cluster.root, 'current.backup');
  assert.equal((await cluster.cli(['meta', 'backup', current])).code, 0);
  api.close();

  // The orchestrator's directory is lost.
  const orchDir = path.join(cluster.root, 'orchestrator');
  await cluster.killOrchestrator('SIGTERM');
  fs.rmSync(orchDir, { recursive: true });
  fs.mkdirSync(orchDir);

  const refused = await cluster.cli(['meta', 'restore', old, '--to', orchDir]);
  assert.equal(refused.code, 1, refused.stdout);
  assert.match(refused.stderr, /the servers have seen newer state than this backup/);
  assert.match(refused.stderr, new RegExp(`bk/0: srv-\\S+ saw epoch ${moved.epoch}, the backup has ${seg.epoch}`));
  assert.ok(!fs.existsSync(path.join(orchDir, 'metadata.sqlite')), 'nothing was written');

  const restored = await cluster.cli(['meta', 'restore', current, '--to', orchDir]);
  assert.equal(restored.code, 0, restored.stderr);
  assert.match(restored.stdout, /restored \d+ keys of cluster [0-9a-f-]{36} into .* and verified them/);
  await cluster.startOrchestrator();
  await waitFor('both servers back in their cluster', async () => {
    const st = await new OrchestratorClient(cluster.url).status();
    return st.servers.filter((s) => s.state === 'up').length === 2 || undefined;
  }, 30000, 200);
  const back = await PresageClient.connect({ orchestratorUrl: cluster.url });
  try {
    assert.ok((await (await back.openVolume('bk')).read(0, 8 * MiB)).equals(data), 'every byte reads back');
    assert.equal((await new OrchestratorClient(cluster.url).segment('bk/0')).replicas[0], seg.replicas[1], 'with the state of the current backup');
  } finally {
    await back.close();
  }
});
