// An orchestrator pause (issue #22): SIGSTOP the orchestrator for 30 s — far longer than the
// servers' lease and its own heartbeat timeout — under a verifying workload on a two-replica
// volume. The servers' leases lapse and they serve through the grace, each read confirmed by the
// other replica; when the orchestrator resumes it sees that it was the one stalled and marks no
// server down. No client operation fails, nothing acknowledged is lost, and no read is stale.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { httpJson } from '../src/api/http.ts';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { TestCluster } from './helpers/cluster.ts';
import { sleep, waitFor } from './helpers/settle.ts';
import { VerifyingWorkload } from './helpers/workload.ts';

const MiB = 1024 * 1024;
const HEARTBEAT_TIMEOUT_MS = 3000;
const PAUSE_MS = 30_000;

describe('a 30 s SIGSTOP of the orchestrator', { timeout: 180_000 }, () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;

  before(async () => {
    cluster = await TestCluster.start({ servers: 3, heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, serverArgs: () => ['--scrub-interval', '0'] });
    api = new OrchestratorClient(cluster.url);
  });
  after(async () => {
    cluster?.orchestrator?.child.kill('SIGCONT');
    api?.close();
    await cluster?.stop();
  });

  it('marks no server down and fails no client operation', async () => {
    await api.createVolume({ name: 'pause', size: 16 * MiB, segmentSize: 4 * MiB, replicas: 2 });
    const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
    const load = new VerifyingWorkload(await client.openVolume('pause'), 5, 64 * 1024);
    let stop = false;
    const running = load.run({ workers: 2, until: () => stop, readRatio: 0.5, stripe: 256 * 1024, paceMs: 10 });
    const eventsBefore = (await api.events()).length;
    const leases = new Set<string>();
    try {
      await sleep(1500);
      const opsBefore = load.stats.reads + load.stats.writes;
      cluster.orchestrator!.child.kill('SIGSTOP');
      const pausedAt = Date.now();
      let readsAtGrace: number | undefined;
      while (Date.now() - pausedAt < PAUSE_MS) {
        await sleep(1000);
        for (const s of cluster.servers) {
          const st = await httpJson<{ lease: string }>(`http://127.0.0.1:${s.adminPort}`, 'GET', '/v1/status');
          leases.add(st.lease);
        }
        if (leases.has('grace')) readsAtGrace ??= load.stats.reads;
      }
      cluster.orchestrator!.child.kill('SIGCONT');
      const readsInGrace = load.stats.reads - (readsAtGrace ?? load.stats.reads);
      assert.ok(leases.has('grace'), `the servers' leases lapsed during the pause (states seen: ${[...leases].join(', ')})`);
      assert.ok(!leases.has('expired'), 'no server stopped serving');
      assert.ok(readsInGrace > 200, `reads went on in the grace (${readsInGrace})`);
      assert.ok(load.stats.reads + load.stats.writes > opsBefore + 500, 'the workload ran through the pause');
      // Back: the servers' heartbeats renew their leases; nobody was marked down meanwhile.
      await waitFor('every lease valid again', async () => {
        for (const s of cluster.servers) {
          const st = await httpJson<{ lease: string }>(`http://127.0.0.1:${s.adminPort}`, 'GET', '/v1/status');
          if (st.lease !== 'valid') return undefined;
        }
        return true;
      }, 15_000, 200);
      await sleep(HEARTBEAT_TIMEOUT_MS + 1000);
    } finally {
      stop = true;
      await running;
    }
    const st = await api.status();
    assert.deepEqual(st.servers.map((s) => s.state), ['up', 'up', 'up'], 'no server was marked down');
    const events = (await api.events()).slice(eventsBefore);
    assert.deepEqual(events.filter((e) => e.type === 'failover'), [], 'nothing failed over');
    assert.ok(events.some((e) => e.type === 'stall'), 'the orchestrator logged that it had been stalled');
    assert.deepEqual(load.stats.errors, [], 'no client operation failed');
    assert.equal(await load.verifyAll(), undefined, 'every acknowledged write reads back');
    await client.close();
  });
});
