// Failure detection faster than heartbeats: a client or a peer that cannot connect to a server
// reports it; the orchestrator probes it and, if nothing listens (the process is gone), fails it
// over at once. With a 30 s heartbeat timeout, a SIGKILLed server's segments must be writable
// again within seconds; a SIGSTOPped (hung, still listening) server must not be marked down.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import type { SegmentView } from '../src/api/types.ts';
import type { Decision } from '../src/orchestrator/decision-log.ts';
import { PresageClient, type Volume } from '../src/client/presage-client.ts';
import { probeTcp } from '../src/orchestrator/failover.ts';
import { TestCluster } from './helpers/cluster.ts';
import { settled, waitFor } from './helpers/settle.ts';
import { randomBytes, prng } from './helpers/workload.ts';

const MiB = 1024 * 1024;
const SEG = 4 * MiB;
const HEARTBEAT_TIMEOUT_MS = 30000;

describe('fast failover on connection refused (heartbeat timeout 30 s)', { timeout: 180000 }, () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;
  let client: PresageClient;
  let vol: Volume;
  const rand = prng(11);
  const expected = Buffer.alloc(32 * MiB);

  before(async () => {
    cluster = await TestCluster.start({ servers: 4, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, serverArgs: () => ['--scrub-interval', '0'] });
    api = new OrchestratorClient(cluster.url);
    await api.createVolume({ name: 'ff', size: expected.length, segmentSize: SEG, replicas: 2 });
    client = await PresageClient.connect({ orchestratorUrl: cluster.url });
    vol = await client.openVolume('ff');
    const data = randomBytes(rand, expected.length);
    await vol.write(0, data);
    data.copy(expected);
  });
  after(async () => {
    await client?.close();
    api?.close();
    await cluster?.stop();
  });

  async function writeSegment(index: number): Promise<number> {
    const data = randomBytes(rand, 64 * 1024);
    const off = index * SEG + 4096;
    const t0 = Date.now();
    await vol.write(off, data);
    data.copy(expected, off);
    return Date.now() - t0;
  }

  /** SIGKILLs `victim`, then times a write to `seg`; returns the failover decision about the victim. */
  async function killThenWrite(victim: string, seg: SegmentView): Promise<Decision> {
    await cluster.killServer(cluster.serverById(victim).index, 'SIGKILL');
    const ms = await writeSegment(Number(seg.segmentId.split('/')[1]));
    assert.ok(ms < 10000, `write completed after ${ms} ms (heartbeat timeout ${HEARTBEAT_TIMEOUT_MS} ms)`);
    const failover = (await api.events()).find((e) => e.type === 'failover' && e.server === victim);
    assert.ok(failover, 'failed over');
    return failover;
  }

  it('probeTcp tells a refused connection from a listening port', async () => {
    const s = cluster.servers[0];
    assert.equal(await probeTcp(`127.0.0.1:${s.port}`, 1000), 'open');
    const closed = cluster.servers.map((x) => x.port).reduce((a, b) => Math.max(a, b)) + 1000;
    assert.equal(await probeTcp(`127.0.0.1:${closed}`, 1000), 'refused');
    assert.equal(await probeTcp('not-an-address', 1000), 'inconclusive');
  });

  it('a hung server that still accepts connections is reported reachable and stays up', async () => {
    const s = cluster.servers[3];
    s.proc!.child.kill('SIGSTOP');
    try {
      const r = await api.suspect(s.id, 'the test');
      assert.equal(r.result, 'reachable');
      const st = await api.status();
      assert.equal(st.servers.find((x) => x.id === s.id)?.state, 'up');
    } finally {
      s.proc!.child.kill('SIGCONT');
    }
  });

  it('a dead secondary: the primary\'s forward is refused, it reports, and the write completes long before the heartbeat timeout', async () => {
    const seg = (await api.segments('ff')).find((x) => x.replicas.length === 2)!;
    const failover = await killThenWrite(seg.replicas[1], seg);
    assert.match(failover.reason, /connection refused .*unreachable for server srv-/);
  });

  it('a dead primary: the client\'s connection is refused, it reports, and the write completes long before the heartbeat timeout', async () => {
    const [seg] = await waitFor('repairs after the first kill', () => settled(api, 'ff', 2), 60000);
    const failover = await killThenWrite(seg.replicas[0], seg);
    assert.match(failover.reason, /connection refused/);
    // Every byte is what was acknowledged.
    const got = await vol.read(0, expected.length);
    assert.ok(got.equals(expected), 'all data verifies after two fast failovers');
  });
});

describe('a hung server (SIGSTOP: connections accepted, no answers)', { timeout: 120000 }, () => {
  let cluster: TestCluster;
  let client: PresageClient;

  before(async () => {
    cluster = await TestCluster.start({ servers: 3, heartbeatTimeoutMs: 2000, serverArgs: () => ['--scrub-interval', '0'] });
    // Requests wait up to 20 s for an answer: far longer than the failover takes.
    client = await PresageClient.connect({ orchestratorUrl: cluster.url, requestTimeoutMs: 20000 });
  });
  after(async () => {
    await client?.close();
    await cluster?.stop(); // SIGKILL ends the stopped process too
  });

  it('requests in flight to a hung primary or through a primary to a hung secondary fail over as soon as it is marked down, not after their timeouts', async () => {
    const api = new OrchestratorClient(cluster.url);
    try {
      await api.createVolume({ name: 'hang', size: 8 * MiB, segmentSize: SEG, replicas: 2 });
      const vol = await client.openVolume('hang');
      const data = randomBytes(prng(5), 8 * MiB);
      await vol.write(0, data);
      const seg = (await api.segments('hang'))[0];
      const victim = cluster.serverById(seg.replicas[0]);
      victim.proc!.child.kill('SIGSTOP');
      const t0 = Date.now();
      const update = randomBytes(prng(6), 64 * 1024);
      await vol.write(4096, update); // sent to the hung primary first
      const ms = Date.now() - t0;
      update.copy(data, 4096);
      assert.ok(ms < 10000, `the write completed after ${ms} ms: the heartbeat timeout (2 s) and the failover, not the 20 s request timeout`);
      const failover = (await api.events()).find((e) => e.type === 'failover' && e.server === victim.id);
      assert.match(failover?.reason ?? '', /no heartbeat/, 'a hang is found by the heartbeats');
      assert.ok((await vol.read(0, data.length)).equals(data), 'every byte verifies');

      // Now a hung secondary: the primary's forward to it is in flight when it is marked down.
      const seg2 = (await waitFor('repairs after the first hang', () => settled(api, 'hang', 2), 60000))[0];
      const secondary = cluster.serverById(seg2.replicas[1]);
      secondary.proc!.child.kill('SIGSTOP');
      const off = Number(seg2.segmentId.split('/')[1]) * SEG + 8192;
      const t1 = Date.now();
      const update2 = randomBytes(prng(7), 64 * 1024);
      await vol.write(off, update2);
      const ms2 = Date.now() - t1;
      update2.copy(data, off);
      assert.ok(ms2 < 8000, `the write through a primary whose secondary hung completed after ${ms2} ms (peer request timeout 10 s)`);
      assert.ok((await vol.read(0, data.length)).equals(data), 'every byte verifies');
    } finally {
      api.close();
    }
  });
});
