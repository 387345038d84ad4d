// A cluster whose own traffic runs over TLS (--cluster-tls-*, here through PRESAGE_TLS_*): the
// orchestrator's API is HTTPS, the data protocol between clients and servers and among servers
// (replication, migration copies) runs inside TLS, each peer verified against the cluster CA.
// Plain HTTP and plain data connections get nowhere; a client trusting another CA is refused.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { loadClusterTls, processTls, setProcessTls } from '../src/common/cluster-tls.ts';
import { DataConnection } from '../src/protocol/connection.ts';
import { Op, Status } from '../src/protocol/messages.ts';
import { TestCluster } from './helpers/cluster.ts';
import { replicaDisagreements, settled, waitFor } from './helpers/settle.ts';
import { makeTestCerts } from './helpers/tls-certs.ts';
import { prng, randomBytes } from './helpers/workload.ts';

const MiB = 1024 * 1024;
const SEG = 4 * MiB;

describe('cluster traffic over TLS', () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;

  before(async () => {
    cluster = await TestCluster.start({ servers: 3, tls: true });
    api = new OrchestratorClient(cluster.url);
  });
  after(async () => {
    api?.close();
    await cluster?.stop();
    setProcessTls(undefined);
  });

  it('serves the API over HTTPS and the data path over TLS: replicated writes read back byte for byte, a migration copies between servers', async () => {
    assert.match(cluster.url, /^https:/);
    const c = await cluster.cli(['volume', 'create', 'tv', '--size', String(2 * SEG), '--segment-size', String(SEG), '--replicas', '2']);
    assert.equal(c.code, 0, c.stderr);
    const data = randomBytes(prng(3), 2 * SEG);
    const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
    try {
      const vol = await client.openVolume('tv');
      await vol.write(0, data);
      await vol.flush();
      assert.ok((await vol.read(0, data.length)).equals(data));
    } finally {
      await client.close();
    }
    const seg = (await api.segments('tv'))[0];
    const to = (await api.status()).servers.find((s) => !seg.replicas.includes(s.id))!.id;
    const m = await cluster.cli(['migrate', seg.segmentId, '--to', to, '--wait', '--json']);
    assert.equal(m.code, 0, m.stderr);
    const segs = await waitFor('settled', () => settled(api, 'tv', 2));
    assert.ok(segs[0].replicas.includes(to));
    assert.deepEqual(await replicaDisagreements(api, segs, SEG), [], 'every replica holds the same bytes');
    const out = path.join(cluster.root, 'tv.bin');
    const ex = await cluster.cli(['volume', 'export', 'tv', out]);
    assert.equal(ex.code, 0, ex.stderr);
  });

  it('refuses plain HTTP and plain data connections, and a client that trusts another CA', async () => {
    const plainUrl = cluster.url.replace('https:', 'http:');
    await assert.rejects(fetch(`${plainUrl}/healthz`), 'plain HTTP to the HTTPS port');
    const seg = (await api.segments('tv'))[0];
    const server = (await api.status()).servers.find((s) => s.id === seg.replicas[0])!;
    const saved = processTls();
    try {
      setProcessTls(undefined);
      const plain = new DataConnection(server.dataAddr);
      await assert.rejects(plain.send({ op: Op.READ, flags: 0, epoch: seg.epoch, segmentId: seg.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(0) }));
      plain.close();
      const other = makeTestCerts(path.join(cluster.root, 'other-ca'));
      setProcessTls(loadClusterTls({ ca: other.ca }));
      const wrongCa = new DataConnection(server.dataAddr);
      await assert.rejects(wrongCa.send({ op: Op.READ, flags: 0, epoch: seg.epoch, segmentId: seg.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(0) }), /certificate|self.signed|verify/i);
      wrongCa.close();
      await assert.rejects(new OrchestratorClient(cluster.url).status(), /cannot reach/);
    } finally {
      setProcessTls(saved);
    }
    // And with the cluster's CA the same request works.
    const ok = new DataConnection(server.dataAddr);
    const res = await ok.send({ op: Op.READ, flags: 0, epoch: seg.epoch, segmentId: seg.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(0) });
    assert.equal(res.status, Status.OK);
    ok.close();
  });
});
