import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FailureScoreReport } from '../api/types.ts';
import { silentLogger } from '../common/log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { ServerRecord } from '../metadata/model.ts';
import { DecisionLog } from './decision-log.ts';
import { PREDICTED, PredictiveDrainPolicy, drainedFor } from './predictive-drain.ts';

function report(serverId: string, score: number, noData?: FailureScoreReport['noData']): FailureScoreReport {
  return {
    ...(noData ? { noData } : {}),
    serverId, score, level: score >= 70 ? 'critical' : score >= 50 ? 'warning' : 'healthy', mode: 'fail-slow',
    probabilities: { disk: 0, 'fail-slow': score / 100, network: 0, software: 0 },
    horizons: { disk: '7d', 'fail-slow': '1h', network: '1h', software: '1h' },
    topFeatures: [{ name: 'io_write_latency_p99_ms_peer_mads', value: 9, contribution: 0.5 }],
    modelVersion: 'test', computedAt: new Date().toISOString(), forecast: [],
  };
}

/** A policy over n fake servers with a controllable clock and score per server. */
function harness(n: number, config = {}) {
  const servers = new Map<string, ServerRecord>();
  for (let i = 0; i < n; i++) servers.set(`s${i}`, { id: `s${i}`, dataAddr: '', adminAddr: '', capacityBytes: 1, state: 'up', registeredAt: '' });
  const scores = new Map<string, FailureScoreReport>();
  const calls: { server: string; draining: boolean }[] = [];
  let now = 0;
  const control = {
    setDraining: async (server: string, draining: boolean, reason?: string) => {
      calls.push({ server, draining });
      const s = servers.get(server)!;
      servers.set(server, draining ? { ...s, draining: true, drainReason: reason } : { ...s, draining: undefined, drainReason: undefined });
    },
  };
  const decisions = new DecisionLog();
  const policy = new PredictiveDrainPolicy({ servers } as unknown as ClusterView, () => scores, control, decisions, silentLogger, config, () => now);
  return {
    servers, calls, decisions, policy,
    set: (id: string, score: number) => scores.set(id, report(id, score)),
    /** Advances the clock in `step` ms ticks, setting the score from `scoreAt(t)` before each tick. */
    async run(ms: number, step: number, scoreAt: (t: number) => Record<string, number>, noData?: FailureScoreReport['noData']) {
      for (let t = 0; t < ms; t += step) {
        now += step;
        for (const [id, v] of Object.entries(scoreAt(t))) scores.set(id, report(id, v, noData));
        await policy.tick();
      }
    },
  };
}

describe('predictive drain policy', () => {
  it('drains only after the score has stayed at or above the threshold for the sustain time, once', async () => {
    const h = harness(4, { sustainMs: 15000 });
    await h.run(10000, 1000, () => ({ s1: 85 }));
    assert.deepEqual(h.calls, [], 'not yet: only 10 s above');
    await h.run(30000, 1000, () => ({ s1: 85 }));
    assert.deepEqual(h.calls, [{ server: 's1', draining: true }], 'drained exactly once');
    assert.ok(h.servers.get('s1')!.drainReason!.startsWith(PREDICTED));
    const d = h.decisions.list().find((x) => x.type === 'drain-started')!;
    assert.equal(d.server, 's1');
    assert.equal(d.mode, 'fail-slow');
    assert.equal(d.score, 85);
    assert.ok(d.features!.length > 0, 'the decision records the features that drove it');
  });

  it('hysteresis: a score flapping around the threshold moves nothing; flapping around the warning level never undrains', async () => {
    const h = harness(4, { sustainMs: 15000, recoverMs: 120000 });
    // Around 70: above for 10 s, below for 10 s, for 10 minutes.
    await h.run(600000, 1000, (t) => ({ s2: Math.floor(t / 10000) % 2 ? 75 : 65 }));
    assert.deepEqual(h.calls, [], 'never sustained: nothing drained');
    // Now drain it for real, then flap around 50 for 10 minutes: it must not take data back.
    await h.run(20000, 1000, () => ({ s2: 90 }));
    assert.equal(h.calls.length, 1);
    await h.run(600000, 1000, (t) => ({ s2: Math.floor(t / 30000) % 2 ? 55 : 40 }));
    assert.equal(h.calls.length, 1, 'no undrain while the score keeps coming back above the warning level');
    // Low for long enough: it takes data again, once.
    await h.run(180000, 1000, () => ({ s2: 20 }));
    assert.deepEqual(h.calls, [{ server: 's2', draining: true }, { server: 's2', draining: false }]);
    assert.ok(h.decisions.list().some((x) => x.type === 'drain-stopped' && x.server === 's2'));
  });

  it('a drained server whose score falls only because its inputs dried up (no I/O) is not taken as recovered', async () => {
    const h = harness(4, { sustainMs: 0, recoverMs: 60000 });
    await h.run(2000, 1000, () => ({ s3: 90 }));
    assert.equal(drainedFor(h.servers.get('s3')!.drainReason), 'fail-slow');
    // Drained: no I/O, so no fail-slow inputs; the score falls to the prior for 10 minutes.
    await h.run(600000, 1000, () => ({ s3: 10 }), ['fail-slow']);
    assert.deepEqual(h.calls, [{ server: 's3', draining: true }], 'still drained');
    // Real evidence of health (inputs present, low score) for long enough: it takes data again.
    await h.run(90000, 1000, () => ({ s3: 10 }));
    assert.deepEqual(h.calls, [{ server: 's3', draining: true }, { server: 's3', draining: false }]);
  });

  it('caps how much of the cluster drains at once, and says why it waits', async () => {
    const h = harness(8, { sustainMs: 0, maxDrainingFraction: 0.25 });
    await h.run(5000, 1000, () => ({ s0: 95, s1: 92, s2: 91 }));
    const drained = h.calls.filter((c) => c.draining).map((c) => c.server);
    assert.equal(drained.length, 2, '25 % of 8 servers');
    assert.ok(h.decisions.list().some((x) => x.type === 'score-warning' && /cap 2/.test(x.reason)));
  });

  it('never undoes a drain it did not start (a drain by hand)', async () => {
    const h = harness(3, { recoverMs: 0 });
    const s = h.servers.get('s0')!;
    h.servers.set('s0', { ...s, draining: true, drainReason: 'drain requested by user' });
    await h.run(5000, 1000, () => ({ s0: 5 }));
    assert.deepEqual(h.calls, []);
  });

  it('disabled: scores alone move nothing', async () => {
    const h = harness(3, { enabled: false, sustainMs: 0 });
    await h.run(5000, 1000, () => ({ s0: 100 }));
    assert.deepEqual(h.calls, []);
  });
});
