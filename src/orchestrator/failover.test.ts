// Mark-down limits (issue #22), over the real embedded store, its replica and the metadata
// writer; only the operator controller is a recorder of proposals. The minimum up ratio holds
// mark-downs back when too many servers fall silent at once; a tick that runs late because the
// orchestrator itself did not run restarts every server's timeout instead of condemning them all;
// a segment that lost a replica to a mark-down is re-replicated only after the down → out delay,
// and never while noout is set.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../common/log.ts';
import { ClusterView } from '../metadata/cluster-view.ts';
import { EmbeddedKvStore } from '../metadata/embedded-kv.ts';
import { KvReplica } from '../metadata/kv-replica.ts';
import { ROOT } from '../metadata/model.ts';
import { DecisionLog } from './decision-log.ts';
import { FailoverController, type Liveness, type MarkDownPolicy } from './failover.ts';
import { MetadataWriter } from './metadata-writer.ts';
import type { OperatorController } from './operator-controller.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const TIMEOUT = 300;

async function cluster(servers: number, policy: Partial<MarkDownPolicy>) {
  const kv = EmbeddedKvStore.open(':memory:');
  const replica = new KvReplica(kv, ROOT, { pollTimeoutMs: 100 });
  await replica.start();
  const view = new ClusterView(replica);
  const writer = new MetadataWriter(kv, view);
  const { cluster: id } = await writer.ensureClusterIdentity();
  const ids: string[] = [];
  for (let i = 0; i < servers; i++) {
    ids.push(`srv-${i}`);
    await writer.registerServer({ id: `srv-${i}`, dataAddr: `127.0.0.1:${1000 + i}`, adminAddr: `127.0.0.1:${2000 + i}`, capacityBytes: 10 * GiB, clusterId: id.id }, `server-${i}`);
  }
  await view.refresh();
  const proposals: { segmentId: string; target: string }[] = [];
  const running = new Map<string, { segmentId: string; target: string }>();
  const cancelled: string[] = [];
  const controller = {
    get: (segmentId: string) => running.get(segmentId),
    cancel: async (segmentId: string) => {
      cancelled.push(segmentId);
      return running.delete(segmentId);
    },
    pendingTargets: () => new Map<string, number>(),
    propose: async (p: { segmentId: string; target: string }) => {
      proposals.push(p);
      return { accepted: true };
    },
  } as unknown as OperatorController;
  const liveness = new Map<string, Liveness>();
  const beat = (...who: string[]) => { for (const s of who) liveness.set(s, { at: Date.now(), usedBytes: 0, segments: 0 }); };
  const decisions = new DecisionLog(silentLogger);
  const failover = new FailoverController(kv, view, writer, controller, liveness, TIMEOUT, silentLogger, true, decisions, policy);
  beat(...ids);
  const state = (s: string) => view.servers.get(s)?.state;
  return { kv, view, writer, failover, beat, ids, state, proposals, decisions, liveness, running, cancelled, close: async () => { await replica.stop(); await kv.close(); } };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the minimum up ratio: of four servers falling silent together, only as many go down as leave half up', async () => {
  const c = await cluster(4, { minUpRatio: 0.5, downOutDelayMs: 0, stallMs: 60_000 });
  try {
    await sleep(TIMEOUT + 100);
    c.beat('srv-0');
    await c.failover.tick();
    const down = c.ids.filter((s) => c.state(s) === 'down');
    assert.equal(down.length, 2, `two of the three silent servers are marked down (${down.join(', ')})`);
    assert.equal(c.state('srv-0'), 'up');
    const held = c.decisions.list().filter((d) => d.type === 'mark-down-held');
    assert.equal(held.length, 1, 'the third is held back, and the decision log says why');
    assert.match(held[0]!.reason, /only 1 of 4 servers would stay up, under the minimum up ratio 0.5/);
    await c.failover.tick();
    assert.equal(c.decisions.list().filter((d) => d.type === 'mark-down-held').length, 1, 'recorded once per episode, not every tick');
    assert.equal(await c.failover.suspect(held[0]!.server!, 'a test'), 'held', 'a refused connection does not bypass the ratio');
  } finally {
    await c.close();
  }
});

test('a stalled orchestrator gives every server a full timeout again instead of marking them all down', async () => {
  const c = await cluster(3, { minUpRatio: 0, downOutDelayMs: 0, stallMs: 200 });
  try {
    await c.failover.tick();
    // Block the event loop, as a SIGSTOP or a long GC pause would: no heartbeat can be read meanwhile.
    const until = Date.now() + TIMEOUT * 3;
    while (Date.now() < until) { /* stalled */ }
    await c.failover.tick();
    assert.deepEqual(c.ids.map(c.state), ['up', 'up', 'up'], 'no mark-down for the silence of the stall');
    assert.equal(c.decisions.list().filter((d) => d.type === 'stall').length, 1);
    // The timeout still works afterwards: a server that stays silent is marked down.
    for (let i = 0; i < 8; i++) {
      await sleep(60);
      c.beat('srv-0', 'srv-1');
      await c.failover.tick();
    }
    assert.deepEqual(c.ids.map(c.state), ['up', 'up', 'down']);
  } finally {
    await c.close();
  }
});

test('down → out: a failed-over segment is re-replicated only after the delay, and not at all under noout', async () => {
  const c = await cluster(3, { minUpRatio: 0, downOutDelayMs: 400, stallMs: 60_000 });
  try {
    await c.writer.createVolume({ name: 'v', size: 4 * MiB, segmentSize: MiB, replicas: 2 });
    const victim = [...c.view.smt.values()][0]!.replicas[0]!;
    const lost = [...c.view.smt.entries()].filter(([, e]) => e.replicas.includes(victim)).map(([id]) => id).sort();
    await c.failover.markDown(victim, 0, 'a test');
    assert.equal(c.state(victim), 'down');
    await c.failover.tick();
    assert.equal(c.proposals.length, 0, 'nothing copied while the server may still come back');
    assert.equal(c.failover.waitingOut(), lost.length);
    await c.writer.setFlags({ noout: true }, 'an operator');
    await sleep(500);
    c.beat(...c.ids.filter((s) => s !== victim));
    await c.failover.tick();
    assert.equal(c.proposals.length, 0, 'noout holds re-replication back past the delay');
    await c.writer.setFlags({ noout: false }, 'an operator');
    await c.failover.tick();
    assert.deepEqual(c.proposals.map((p) => p.segmentId).sort(), lost, 'after the delay, without noout, every segment that lost a replica is repaired');
    assert.ok(c.proposals.every((p) => p.target !== victim));
    assert.equal(c.failover.waitingOut(), 0);
  } finally {
    await c.close();
  }
});

test('a full copy leaves the write set where a replica with room remains; the last or all-full copies stay, logged once', async () => {
  const c = await cluster(3, { minUpRatio: 0, downOutDelayMs: 0, stallMs: 60_000 });
  try {
    c.writer.setHealthSource((id) => ({ risky: false, load: 0, full: c.liveness.get(id)?.full === true }));
    await c.writer.createVolume({ name: 'v', size: 4 * MiB, segmentSize: MiB, replicas: 2 });
    const [id, entry] = [...c.view.smt.entries()][0]!;
    const [full, other] = entry.replicas as [string, string];
    c.liveness.set(full, { at: Date.now(), usedBytes: 0, segments: 0, full: true });
    assert.ok(!c.writer.placementCandidates().some((p) => p.id === full), 'placement passes a full server over');

    // Both replicas full: nothing can take the writes, so the copy stays (ENOSPC to clients).
    c.liveness.set(other, { at: Date.now(), usedBytes: 0, segments: 0, full: true });
    await c.failover.dropFullCopies(full, [id]);
    await c.failover.dropFullCopies(full, [id]);
    await c.view.refresh();
    assert.deepEqual(c.view.entry(id)!.replicas, entry.replicas, 'no replica with room: the entry is unchanged');
    const held = c.decisions.list().filter((d) => d.type === 'no-space' && d.segmentId === id);
    assert.equal(held.length, 1, 'recorded once, not at every heartbeat');
    assert.match(held[0]!.reason, /no replica on a server with room remains: writes fail with ENOSPC/);

    // The other has room again: the full copy leaves, the segment is degraded (repair adds one).
    c.beat(other);
    await c.failover.dropFullCopies(full, [id]);
    await c.view.refresh();
    const after = c.view.entry(id)!;
    assert.deepEqual(after.replicas, [other]);
    assert.equal(after.state, 'degraded');
    assert.equal(after.epoch, entry.epoch + 1);
    assert.ok(c.decisions.list().some((d) => d.type === 'no-space' && d.segmentId === id && /leaves the write set/.test(d.reason)));
    // A copy being made onto a server whose disk is full stops (its operator is cancelled).
    const [id2, e2] = [...c.view.smt.entries()][1]!;
    const target = c.ids.find((x) => !e2.replicas.includes(x))!;
    c.running.set(id2, { segmentId: id2, target });
    await c.failover.dropFullCopies(e2.replicas[0]!, [id2]);
    assert.deepEqual(c.cancelled, [], 'an operator onto another server goes on');
    await c.failover.dropFullCopies(target, [id2]);
    assert.deepEqual(c.cancelled, [id2], 'the operator onto the full server is cancelled');
    // The last copy never leaves, full or not.
    c.liveness.set(other, { at: Date.now(), usedBytes: 0, segments: 0, full: true });
    await c.failover.dropFullCopies(other, [id]);
    await c.view.refresh();
    assert.deepEqual(c.view.entry(id)!.replicas, [other]);
  } finally {
    await c.close();
  }
});
