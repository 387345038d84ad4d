import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelManager, type TrainingHistory, type CandidateTrainer } from './lifecycle.ts';
import { loadDefaultBundle, saveBundle, type ModelBundle, type RuleModeModel } from './model-bundle.ts';
import { DAY_MS, MINUTE_MS, type QueryFn } from './online-features.ts';
import { syntheticQuery } from './synthetic-telemetry.ts';
import { hashNoise as noise } from '../common/prng.ts';

const now = Date.UTC(2026, 2, 1);
const clone = (b: ModelBundle): ModelBundle => JSON.parse(JSON.stringify(b));


/**
 * SYNTHETIC fleet (a test fixture): TCP retransmit ratio per minute, generated on demand;
 * a server that will fail (network) shows rising retransmissions over the 3 h before.
 */
function fleet(days: number, servers = 20, failing = 15): TrainingHistory {
  const from = now - days * DAY_MS;
  const out: TrainingHistory = { from, servers: [] };
  for (let s = 0; s < servers; s++) {
    const F = s < failing ? from + (1.5 + (s * (days - 3)) / failing) * DAY_MS : Infinity;
    const query: QueryFn = (metric, a, b) => {
      if (metric !== 'net_tcp_retrans_ratio') return [];
      const pts = [];
      for (let t = Math.max(Math.ceil(a / MINUTE_MS) * MINUTE_MS, from); t < Math.min(b, F, now); t += MINUTE_MS) {
        const ramp = t >= F - 3 * 3_600_000 ? (t - (F - 3 * 3_600_000)) / (3 * 3_600_000) : 0;
        const v = 0.0003 * (1 + noise(s, t / MINUTE_MS)) + ramp * 0.02 * (0.5 + noise(s + 99, t / MINUTE_MS));
        pts.push({ ts: t, mean: v, min: v, max: v, last: v });
      }
      return pts;
    };
    out.servers.push({ id: `s${s}`, query, failures: Number.isFinite(F) ? [{ mode: 'network', t: F }] : [] });
  }
  return out;
}

async function managerWith(bundle: ModelBundle): Promise<{ mgr: ModelManager; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'presage-lifecycle-'));
  const mgr = await ModelManager.open(dir);
  const f = join(dir, 'start.json');
  await saveBundle(f, bundle);
  await mgr.load(f);
  return { mgr, dir };
}

test('fewer than 30 days of history: keeps the current model, with a warning', async () => {
  const def = await loadDefaultBundle();
  const { mgr, dir } = await managerWith(def);
  try {
    const r = await mgr.retrain({ history: fleet(12), now, minDays: 30 });
    assert.equal(r.replaced, false);
    assert.equal(r.reason, 'only 12 days of history (need 30)');
    assert.match(r.warning ?? '', /not retraining: only 12 days of history \(need 30\); keeping model /);
    assert.equal(mgr.version, def.version);
    assert.equal((await readFile(join(dir, 'current'), 'utf8')).trim(), def.version);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a candidate that validates worse on the held-out period is rejected', async () => {
  const def = await loadDefaultBundle();
  const { mgr, dir } = await managerWith(def);
  try {
    // The injected trainer inverts the network rule: retransmissions now lower the probability.
    const inverted: CandidateTrainer = ({ current }) => {
      const b = clone(current);
      b.version = 'inverted';
      const net = b.modes.network as RuleModeModel;
      net.terms = net.terms.map((t) => ({ ...t, weight: -t.weight }));
      net.intercept = -3;
      return b;
    };
    const r = await mgr.retrain({ history: fleet(35), now, modes: ['network'], tickMs: 30 * MINUTE_MS, trainer: inverted });
    assert.equal(r.replaced, false, r.reason);
    assert.match(r.reason, /candidate validates worse: network AUC/);
    const c = r.comparison.network!;
    assert.equal(c.evaluated, true);
    assert.ok(c.positives > 0 && c.negatives > 0);
    assert.ok(c.current!.auc > 0.9, `the default rule separates this fixture: ${c.current!.auc}`);
    assert.ok(c.candidate!.auc < c.current!.auc);
    assert.equal(mgr.version, def.version);
    assert.equal((await readFile(join(dir, 'current'), 'utf8')).trim(), def.version);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a better candidate replaces the current model and is scored with at once, no restart', async () => {
  const def = await loadDefaultBundle();
  // The current model is blind to the network: every weight 0.
  const blind = clone(def);
  blind.version = 'blind-network';
  for (const t of (blind.modes.network as RuleModeModel).terms) t.weight = 0;
  const { mgr, dir } = await managerWith(blind);
  try {
    const r = await mgr.retrain({ history: fleet(35), now, modes: ['network'], tickMs: 30 * MINUTE_MS });
    assert.equal(r.replaced, true, r.reason);
    const c = r.comparison.network!;
    assert.ok(c.candidate!.auc > c.current!.auc + 0.2, `${c.candidate!.auc} vs ${c.current!.auc}`);
    assert.ok(c.candidate!.brier <= c.current!.brier * 1.05);
    assert.equal(mgr.version, r.candidateVersion);
    assert.notEqual(mgr.version, 'blind-network');
    assert.equal(mgr.bundle.modes.network.kind, 'gbdt');
    // Modes not retrained are carried over unchanged.
    assert.deepEqual(mgr.bundle.modes.disk, blind.modes.disk);
    assert.equal((await readFile(join(dir, 'current'), 'utf8')).trim(), r.candidateVersion);
    // The live scorer is the new one: a server with heavy retransmissions now scores high on network.
    const q = syntheticQuery({ now, minutes: 1440, seed: 4, netLoss: { minutes: 30, retransRatio: 0.02 } });
    const rep = mgr.scorer.score({ serverId: 'x', query: q, now, forecast: false });
    assert.equal(rep.modelVersion, r.candidateVersion);
    assert.ok(rep.probabilities.network > 0.1, `network p ${rep.probabilities.network}`);
    // Versioned files: both versions are on disk.
    const reopened = await ModelManager.open(dir);
    assert.equal(reopened.version, r.candidateVersion);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('schedule() runs retraining on its interval and reports the result', async () => {
  const def = await loadDefaultBundle();
  const { mgr, dir } = await managerWith(def);
  try {
    const got = new Promise<{ replaced: boolean; reason: string }>((resolve) => {
      const job = mgr.schedule({ intervalMs: 20, history: () => fleet(5), now: () => now, onResult: (r) => {
        job.stop();
        resolve(r);
      } });
    });
    // The schedule's timer is unref'd (it must not keep a server alive); keep the test alive.
    const keep = setInterval(() => {}, 1000);
    const r = await got.finally(() => clearInterval(keep));
    assert.equal(r.replaced, false);
    assert.equal(r.reason, 'only 5 days of history (need 30)');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
