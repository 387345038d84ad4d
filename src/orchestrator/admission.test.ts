// Admission (issue #22, first part): a volume request that would exceed a limit is refused
// before any work, with a reason and a stable code, and changes nothing: too many segments for
// one volume or for the cluster, or more bytes (size × replicas) than the up servers can hold at
// the over-commit ratio. Over the real embedded store, its replica and the metadata writer.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterView } from '../metadata/cluster-view.ts';
import { EmbeddedKvStore } from '../metadata/embedded-kv.ts';
import { KvReplica } from '../metadata/kv-replica.ts';
import { ROOT } from '../metadata/model.ts';
import { LimitError, MetadataWriter, type AdmissionLimits } from './metadata-writer.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

async function cluster(limits: Partial<AdmissionLimits> = {}) {
  const kv = EmbeddedKvStore.open(':memory:');
  const replica = new KvReplica(kv, ROOT, { pollTimeoutMs: 100 });
  await replica.start();
  const view = new ClusterView(replica);
  const w = new MetadataWriter(kv, view, limits);
  const { cluster: id } = await w.ensureClusterIdentity();
  for (const n of ['a', 'b']) await w.registerServer({ id: `srv-${n}`, dataAddr: `127.0.0.1:${n === 'a' ? 1 : 2}`, adminAddr: '127.0.0.1:3', capacityBytes: 10 * GiB, clusterId: id.id }, `server-${n}`);
  await view.refresh();
  return { w, view, close: async () => { await replica.stop(); await kv.close(); } };
}

const refused = (re: RegExp) => (err: Error) => {
  assert.ok(err instanceof LimitError, String(err));
  assert.equal(err.code, 'ERR_PRESAGE_LIMIT');
  assert.match(err.message, re);
  return true;
};

test('2^30 segments are refused at once, without writing anything', async () => {
  const c = await cluster();
  try {
    const t0 = Date.now();
    await assert.rejects(c.w.createVolume({ name: 'huge', size: 2 ** 30 * MiB, segmentSize: MiB, replicas: 1 }), refused(/would have 1073741824 segments; at most 65536 per volume/));
    assert.ok(Date.now() - t0 < 1000, 'refused before any work');
    assert.equal(c.view.volumes.size, 0);
  } finally {
    await c.close();
  }
});

test('the cluster-wide segment limit counts what exists', async () => {
  const c = await cluster({ maxSegmentsPerCluster: 10 });
  try {
    await c.w.createVolume({ name: 'v1', size: 8 * MiB, segmentSize: MiB, replicas: 1 });
    await assert.rejects(c.w.createVolume({ name: 'v2', size: 4 * MiB, segmentSize: MiB, replicas: 1 }), refused(/holds 8 segments; 4 more would pass its limit of 10/));
    await c.w.createVolume({ name: 'v3', size: 2 * MiB, segmentSize: MiB, replicas: 1 });
  } finally {
    await c.close();
  }
});

test('no over-commit by default: a volume beyond the up servers\' capacity is refused; --overcommit allows thin provisioning', async () => {
  const c = await cluster();
  try {
    // 20 GiB of capacity: 4 PiB is refused, and so is 8 GiB × 2 replicas after 6 GiB × 2.
    await assert.rejects(c.w.createVolume({ name: 'pib', size: 4 * 1024 ** 5, replicas: 2 }), (err: Error) => err instanceof LimitError);
    await c.w.createVolume({ name: 'six', size: 6 * GiB, replicas: 2 });
    await assert.rejects(c.w.createVolume({ name: 'eight', size: 8 * GiB, replicas: 2 }), refused(/needs 17179869184 bytes with its 2 replicas; the cluster has promised 12884901888 of 21474836480 bytes.*over-commit ratio 1/));
    assert.deepEqual([...c.view.volumes.keys()], ['six'], 'the refused volume left nothing behind');
  } finally {
    await c.close();
  }
  const thin = await cluster({ overcommit: 3 });
  try {
    await thin.w.createVolume({ name: 'thin', size: 24 * GiB, replicas: 2 });
  } finally {
    await thin.close();
  }
});
