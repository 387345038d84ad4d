// Network partitions (issue #17), with each host in its own network namespace: the orchestrator
// and three storage servers, the test process as the client on the bridge. Under a verifying
// workload, a primary is cut off from the orchestrator (its lease runs out; in the grace after it,
// it serves only what its replicas confirm, and once the orchestrator has marked it down and another
// replica has taken over, they confirm nothing), then from its clients, then from the orchestrator again; each cut
// heals and the cluster returns to full replication. The history check: every read returned the
// last acknowledged write of each byte (or a write still in doubt), and after the last heal every
// acknowledged write reads back. The test creates and removes its own namespaces; where the kernel
// refuses `ip netns add` it is skipped, saying why.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { newSecret, verifierOf, writeKeyFile } from '../src/auth/credentials.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { spawnPresage, testAdminKey, type Proc } from './helpers/cluster.ts';
import { NetnsLab, netnsUnavailable } from './helpers/netns.ts';
import { sleep, waitFor } from './helpers/settle.ts';
import { VerifyingWorkload } from './helpers/workload.ts';

const MiB = 1024 * 1024;
const HEARTBEAT_TIMEOUT = 2000;
const unavailable = netnsUnavailable();
if (unavailable) process.stderr.write(`\n!!! partition tests SKIPPED: ${unavailable}\n\n`);

describe('network partitions between a primary, the orchestrator and the clients (network namespaces)', { skip: unavailable, timeout: 300000 }, () => {
  let lab: NetnsLab;
  let root: string;
  const procs: Proc[] = [];
  let url = '';
  let api: OrchestratorClient;
  const servers: { name: string; id: string; ip: string }[] = [];

  before(async () => {
    lab = NetnsLab.create(['orch', 's0', 's1', 's2']);
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-partition-'));
    const admin = testAdminKey();
    const orch = lab.host('orch');
    url = `http://${orch.ip}:7400`;
    procs.push(await spawnPresage(['orchestrator', '--dir', path.join(root, 'orchestrator'), '--listen', `${orch.ip}:7400`, '--heartbeat-timeout', String(HEARTBEAT_TIMEOUT), '--down-out-delay', '0'],
      /orchestrator listening/, { PRESAGE_KEY_FILE: admin.file }, 30000, [], lab.prefix('orch')));
    api = new OrchestratorClient(url);
    for (const [i, name] of ['s0', 's1', 's2'].entries()) {
      const h = lab.host(name);
      const dir = path.join(root, name);
      fs.mkdirSync(dir);
      const cred = { name: `server-${i}`, secret: newSecret() };
      await api.createEntity({ name: cred.name, role: 'server' }, verifierOf(cred.secret));
      writeKeyFile(path.join(dir, 'server.key'), cred, 'server');
      const p = await spawnPresage(['server', '--dir', dir, '--orchestrator', url, '--listen', `${h.ip}:7500`, '--admin', `${h.ip}:7600`, '--gc-grace', '1000', '--scrub-interval', '0'],
        /serving data on/, { PRESAGE_KEY_FILE: '' }, 30000, [], lab.prefix(name));
      procs.push(p);
      servers.push({ name, id: /server (\S+) serving/.exec(p.stdout)![1]!, ip: h.ip });
    }
  });

  after(async () => {
    api?.close();
    for (const p of procs) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    lab?.destroy();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('three cuts and heals under a verifying workload: no acknowledged write lost, no stale read, full replication after each heal', async () => {
    await api.createVolume({ name: 'part', size: 16 * MiB, segmentSize: 4 * MiB, replicas: 2 });
    const client = await PresageClient.connect({ orchestratorUrl: url, opTimeoutMs: 15000, requestTimeoutMs: 3000 });
    const load = new VerifyingWorkload(await client.openVolume('part'), 7, 64 * 1024);
    let stop = false;
    const running = load.run({ workers: 2, until: () => stop, readRatio: 0.5, stripe: 256 * 1024, paceMs: 5 });
    const log = (m: string) => process.stderr.write(`  · ${m}\n`);
    const settledFully = () => waitFor('full replication with every server up', async () => {
      const st = await api.status();
      return st.servers.every((s) => s.state === 'up') && st.segments.degraded === 0 && st.operators.length === 0 || undefined;
    }, 90000, 250);
    const busiestPrimary = async () => {
      const segs = await api.segments('part');
      const count = new Map<string, number>();
      for (const s of segs) count.set(s.replicas[0]!, (count.get(s.replicas[0]!) ?? 0) + 1);
      const id = [...count.entries()].sort((a, b) => b[1] - a[1])[0]![0];
      return servers.find((s) => s.id === id)!;
    };
    try {
      await sleep(1500);
      for (const [cycle, from] of (['orchestrator', 'clients', 'orchestrator'] as const).entries()) {
        const victim = await busiestPrimary();
        const writesBefore = load.stats.writes;
        const peers = from === 'orchestrator' ? ['orch'] : ['root'];
        lab.cut(victim.name, peers);
        log(`cycle ${cycle + 1}: cut ${victim.id} (${victim.name}) off from the ${from}`);
        if (from === 'orchestrator') {
          // Its lease runs out, the orchestrator marks it down and another replica takes over.
          await waitFor(`${victim.id} to be marked down and replaced as primary`, async () => {
            const st = await api.status();
            const segs = await api.segments('part');
            return st.servers.find((s) => s.id === victim.id)?.state === 'down' && segs.every((s) => s.replicas[0] !== victim.id) || undefined;
          }, 30000, 200);
          await waitFor('writes to go on elsewhere', async () => load.stats.writes > writesBefore + 20 || undefined, 30000, 100);
        } else {
          await sleep(4000);
        }
        lab.heal(victim.name);
        log(`cycle ${cycle + 1}: healed`);
        await settledFully();
      }
      const writesAtEnd = load.stats.writes;
      await waitFor('writes after the last heal', async () => load.stats.writes > writesAtEnd + 20 || undefined, 30000, 100);
    } finally {
      stop = true;
      await running;
    }
    const stale = load.stats.errors.filter((e) => /wrong data/.test(e));
    assert.deepEqual(stale, [], 'no read returned anything but the last acknowledged write (or one in doubt)');
    assert.ok(load.stats.writes > 100 && load.stats.reads > 100, `the workload ran (${load.stats.writes} writes, ${load.stats.reads} reads, ${load.stats.errors.length} failed during the cuts)`);
    const lost = await load.verifyAll();
    assert.equal(lost, undefined, `every acknowledged write reads back (first wrong byte at ${lost})`);
    log(`${load.stats.writes} writes and ${load.stats.reads} reads verified; ${load.stats.errors.length} operations failed during the cuts (allowed: none acknowledged and lost)`);
    await client.close();
  });
});
