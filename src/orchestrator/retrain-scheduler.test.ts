// Retraining and model distribution end to end, over real HTTP: a real Orchestrator and real
// StorageServers in this process, the servers' telemetry stores holding a SYNTHETIC history (a test
// fixture: TCP retransmissions that rise in the 3 h before each labelled network failure).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { httpJson } from '../api/http.ts';
import type { FailureScoreReport } from '../api/types.ts';
import type { CandidateTrainer } from '../prediction/lifecycle.ts';
import { ModelManager } from '../prediction/lifecycle.ts';
import { loadDefaultBundle, saveBundle, type ModelBundle, type RuleModeModel } from '../prediction/model-bundle.ts';
import { DAY_MS, MINUTE_MS } from '../prediction/online-features.ts';
import { StorageServer } from '../server/storage-server.ts';
import type { RollupRow } from '../telemetry/tsdb.ts';
import { Orchestrator } from './orchestrator.ts';
import { DEDUPE_MS, FailureLabelStore, markDownMode, validateLabel, type FailureLabel } from './failure-labels.ts';
import type { ModelsStatus, RetrainProgress, RetrainRun } from './retrain-scheduler.ts';
import { splitLives } from './retrain-worker.ts';
import { retrainBarState } from '../cli/progress.ts';
import { hashNoise as noise } from '../common/prng.ts';

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 20000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}


const NOW = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS - 10 * MINUTE_MS; // live samples stay after the fixture
const DAYS = 35;
const N_SERVERS = 3;

/** Network failures of server k: every ~2.4 days, staggered per server. */
const failuresOf = (k: number): number[] => {
  const out: number[] = [];
  for (let t = NOW - DAYS * DAY_MS + (1.5 + 0.7 * k) * DAY_MS; t < NOW - 6 * 3_600_000; t += 2.4 * DAY_MS) out.push(Math.floor(t / MINUTE_MS) * MINUTE_MS);
  return out;
};

/** Retransmit ratio per minute over [from, to) for server k: noise, a ramp in the 3 h before each failure, a 30 min gap after it. */
function fixtureRows(k: number, from: number, to: number): RollupRow[] {
  const fails = failuresOf(k);
  const rows: RollupRow[] = [];
  for (let t = from; t < to; t += MINUTE_MS) {
    const next = fails.find((f) => f > t);
    const prev = [...fails].reverse().find((f) => f <= t);
    if (prev !== undefined && t < prev + 30 * MINUTE_MS) continue; // down, then restarting
    const ramp = next !== undefined && t >= next - 3 * 3_600_000 ? (t - (next - 3 * 3_600_000)) / (3 * 3_600_000) : 0;
    const v = 0.0003 * (1 + noise(k, t / MINUTE_MS)) + ramp * 0.02 * (0.5 + noise(k + 99, t / MINUTE_MS));
    rows.push({ metric: 'net_tcp_retrans_ratio', ts: t, min: v, max: v, mean: v, last: v, count: 12 });
  }
  return rows;
}

describe('retraining and model distribution', { timeout: 120000 }, () => {
  let root: string;
  let blindPath: string;
  let blind: ModelBundle;
  let orch: Orchestrator;
  const servers: (StorageServer | undefined)[] = [];
  const ids: string[] = [];
  const api = <T>(method: string, p: string, body?: unknown) => httpJson<T>(orch.url, method, p, body, 60000);
  const serverModel = (i: number) => httpJson<{ version: string }>(`http://${servers[i]!.adminAddr}`, 'GET', '/v1/model').then((r) => r.version);
  // A restarted server comes back at the addresses it registered (the orchestrator refuses a
  // known server that reappears elsewhere).
  const ports: { data: number; admin: number }[] = [];
  const startServer = async (i: number) => {
    servers[i] = await StorageServer.start({
      dir: path.join(root, `server-${i}`), orchestratorUrl: orch.url, host: '127.0.0.1', port: ports[i]?.data ?? 0, adminHost: '127.0.0.1', adminPort: ports[i]?.admin ?? 0,
      modelPath: blindPath, smartDevice: false, telemetryIntervalMs: 60000, scoreIntervalMs: 600000, scrubIntervalMs: 0,
    });
    ids[i] = servers[i]!.id;
    ports[i] = { data: Number(servers[i]!.dataAddr.split(':').pop()), admin: Number(servers[i]!.adminAddr.split(':').pop()) };
  };

  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-retrain-'));
    // The starting model is blind to the network (every weight 0), so a model trained on this history can beat it.
    blind = clone(await loadDefaultBundle());
    blind.version = 'blind-network';
    blind.createdAt = '2020-01-01T00:00:00.000Z';
    for (const t of (blind.modes.network as RuleModeModel).terms) t.weight = 0;
    blindPath = path.join(root, 'blind.json');
    await saveBundle(blindPath, blind);
    await (await ModelManager.open(path.join(root, 'orchestrator', 'models'))).load(blindPath);
    orch = await Orchestrator.start({
      dir: path.join(root, 'orchestrator'), host: '127.0.0.1', port: 0, heartbeatTimeoutMs: 1500, scorePollMs: 600000, repair: false,
      predictive: { enabled: false },
      retrain: { intervalMs: 0, reconcileMs: 500, modes: ['network'], tickMs: 30 * MINUTE_MS, now: () => NOW },
    });
    for (let i = 0; i < N_SERVERS; i++) await startServer(i);
    // Only the last 12 days of history at first.
    for (let i = 0; i < N_SERVERS; i++) servers[i]!.telemetry.store.importRows(fixtureRows(i, NOW - 12 * DAY_MS, NOW));
    // The failures, as an operator records them (the mark-down path is tested below).
    for (let i = 0; i < N_SERVERS; i++) {
      for (const t of failuresOf(i)) await api('POST', '/v1/labels', { server: ids[i], mode: 'network', t, cause: 'fixture: network failure' });
    }
  });

  after(async () => {
    for (const s of servers) await s?.stop().catch(() => {});
    // The stopped servers' keep-alive connections would hold the orchestrator's close for Fastify's
    // 72 s keep-alive timeout; nothing else talks to it now.
    (orch as unknown as { http: { server: { closeAllConnections(): void } } }).http.server.closeAllConnections();
    await orch?.stop().catch(() => {});
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('with fewer than 30 days of history: refuses with the warning, keeps the model, pushes nothing', async () => {
    const run = await api<RetrainRun>('POST', '/v1/models/retrain');
    assert.equal(run.replaced, false);
    assert.equal(run.reason, 'only 12 days of history (need 30)');
    assert.match(run.warning ?? '', /not retraining: only 12 days of history \(need 30\); keeping model blind-network/);
    assert.deepEqual(run.servers, [...ids].sort());
    assert.deepEqual(run.pushes, []);
    const events = orch.decisions.list().filter((d) => d.type === 'retrain' && /not retraining: only 12 days/.test(d.reason));
    assert.equal(events.length, 1, 'the warning is in the decision log');
    const status = await api<ModelsStatus>('GET', '/v1/models');
    assert.equal(status.version, 'blind-network');
    assert.equal(status.lastRetrain?.reason, run.reason);
    for (let i = 0; i < N_SERVERS; i++) assert.equal(await serverModel(i), 'blind-network');
  });

  it('with 35 days and labels: a better model replaces the current one and every server reports it', async () => {
    for (let i = 0; i < N_SERVERS; i++) servers[i]!.telemetry.store.importRows(fixtureRows(i, NOW - DAYS * DAY_MS, NOW - 12 * DAY_MS));
    const seen: RetrainProgress[] = [];
    const onProgress = (p: RetrainProgress | null) => p && seen.push(p);
    orch.retrain.on('progress', onProgress);
    let run: RetrainRun;
    try {
      const running = api<RetrainRun>('POST', '/v1/models/retrain');
      // The worker takes a while to start and to build the features: GET /v1/models shows it training.
      const training = await until('the training stage in GET /v1/models', async () => {
        const r = (await api<ModelsStatus>('GET', '/v1/models')).running;
        return r?.stage === 'training' ? r : undefined;
      });
      assert.ok(training.done <= training.total && training.total <= 100, JSON.stringify(training));
      // One at a time: a second request while the first runs is refused.
      await assert.rejects(api('POST', '/v1/models/retrain'), (err: Error & { status?: number }) => err.status === 409 && /already running/.test(err.message));
      run = await running;
    } finally {
      orch.retrain.off('progress', onProgress);
    }
    // The worker's progress crossed to the main thread, step by step, to the end.
    const steps = seen.filter((p) => p.stage === 'training' && p.step).map((p) => p.step);
    assert.deepEqual([...new Set(steps)], ['building features', 'training candidate', 'validating']);
    assert.deepEqual(seen.findLast((p) => p.stage === 'training'), { stage: 'training', done: 100, total: 100, step: 'validating', startedAt: seen[0]!.startedAt });
    assert.equal((await api<ModelsStatus>('GET', '/v1/models')).running, null);
    assert.equal(run.replaced, true, run.reason);
    assert.equal(run.days, 35);
    assert.ok((run.labels.network ?? 0) >= 3 * 12, `labels used: ${JSON.stringify(run.labels)}`);
    const c = run.comparison.network!;
    assert.ok(c.evaluated && c.positives > 0, JSON.stringify(c));
    assert.ok(c.candidate!.auc > c.current!.auc + 0.2, `candidate AUC ${c.candidate!.auc} vs current ${c.current!.auc}`);
    const version = orch.retrain.manager.version;
    assert.notEqual(version, 'blind-network');
    assert.equal(run.candidateVersion, version);
    assert.deepEqual(run.pushes.map((p) => [p.server, p.ok, p.version]), [...ids].sort().map((id) => [id, true, version]));
    // Every server now scores with it, and its model file is the orchestrator's byte for byte.
    for (let i = 0; i < N_SERVERS; i++) {
      assert.equal(await serverModel(i), version);
      const mine = fs.readFileSync(path.join(root, 'orchestrator', 'models', 'models', `${version}.json`));
      const theirs = fs.readFileSync(path.join(root, `server-${i}`, 'models', 'models', `${version}.json`));
      assert.ok(mine.equals(theirs), `server ${i} holds the same bundle bytes`);
    }
    const status = await api<ModelsStatus>('GET', '/v1/models');
    assert.equal(status.version, version);
    assert.equal(status.lastRetrain?.replaced, true);
    assert.deepEqual(status.servers.map((s) => [s.server, s.version, s.sync]), [...ids].sort().map((id) => [id, version, 'current']));
    for (const id of ids) assert.ok(orch.decisions.list().some((d) => d.type === 'retrain' && d.server === id && d.reason === `model ${version} pushed to ${id}`));
  });

  it('a candidate that validates worse is not installed and not pushed', async () => {
    const before = orch.retrain.manager.version;
    // The injected trainer puts the blind network rule back: AUC 0.5 on this history.
    const worse: CandidateTrainer = ({ current }) => ({ ...clone(current), version: 'worse', createdAt: new Date().toISOString(), modes: { ...clone(current.modes), network: clone(blind.modes.network) } });
    orch.retrain.config.trainer = worse;
    try {
      const run = await api<RetrainRun>('POST', '/v1/models/retrain');
      assert.equal(run.replaced, false);
      assert.equal(run.candidateVersion, 'worse');
      assert.match(run.reason, /candidate validates worse: network AUC/);
      assert.deepEqual(run.pushes, []);
    } finally {
      orch.retrain.config.trainer = undefined;
    }
    assert.equal(orch.retrain.manager.version, before);
    for (let i = 0; i < N_SERVERS; i++) assert.equal(await serverModel(i), before);
    for (let i = 0; i < N_SERVERS; i++) assert.ok(!fs.existsSync(path.join(root, `server-${i}`, 'models', 'models', 'worse.json')));
  });

  it('a server down during the push is labelled (software, no warning) and gets the model when it is back', async () => {
    const down = 2;
    const id = ids[down]!;
    await servers[down]!.stop();
    servers[down] = undefined;
    await until('the server to be marked down', () => orch.view.servers.get(id)?.state === 'down');
    // The mark-down became a failure label in the metadata store.
    await orch.retrain.settle();
    const labels = await until('the mark-down label', async () => (await api<FailureLabel[]>('GET', `/v1/labels?server=${id}`)).find((l) => l.source === 'mark-down'));
    assert.equal(labels.mode, 'software');
    assert.match(labels.cause, /died without warning/);
    assert.equal((await new FailureLabelStore(orch.kv).list(id)).filter((l) => l.source === 'mark-down').length, 1);

    // A candidate as good as the current one (same modes, new version) is installed and pushed to the up servers only.
    const same: CandidateTrainer = ({ current }) => ({ ...clone(current), version: 'same-again', createdAt: new Date().toISOString() });
    orch.retrain.config.trainer = same;
    let run: RetrainRun;
    try {
      run = await api<RetrainRun>('POST', '/v1/models/retrain');
    } finally {
      orch.retrain.config.trainer = undefined;
    }
    assert.equal(run.replaced, true, run.reason);
    assert.equal(orch.retrain.manager.version, 'same-again');
    assert.ok(!run.servers.includes(id), 'a down server is not asked for history');
    assert.deepEqual(run.pushes.map((p) => [p.server, p.ok]), ids.filter((x) => x !== id).sort().map((x) => [x, true]));
    for (let i = 0; i < N_SERVERS; i++) if (i !== down) assert.equal(await serverModel(i), 'same-again');

    // Back with its old (blind) model: the reconcile loop pushes the current one.
    await startServer(down);
    assert.equal(servers[down]!.id, id);
    await until('the returning server to get the model', async () => (await serverModel(down)) === 'same-again');
    const status = await until('the status to show it current', async () => {
      const s = await api<ModelsStatus>('GET', '/v1/models');
      return s.servers.find((x) => x.server === id)?.sync === 'current' ? s : undefined;
    });
    assert.equal(status.servers.find((x) => x.server === id)?.lastPush?.ok, true);
    assert.ok(orch.decisions.list().some((d) => d.server === id && d.reason === `model same-again pushed to ${id}`));
  });

  it('GET /v1/models shows a running retrain advance: pulling history → training → pushing, then null', async () => {
    const seen: (RetrainProgress | null)[] = [];
    const onProgress = (p: RetrainProgress | null) => seen.push(p);
    let inTrainer: RetrainProgress | null = null;
    // A slow trainer (it runs inline, so it holds the event loop: what it sees is what GET /v1/models would answer).
    const slow: CandidateTrainer = ({ current }) => {
      inTrainer = orch.retrain.status().running;
      const until = Date.now() + 150;
      while (Date.now() < until);
      return { ...clone(current), version: 'progress-run', createdAt: new Date().toISOString() };
    };
    // Server 0 holds the pushed model until the test has seen the push stage over HTTP.
    const scoring = servers[0]!.scoring as unknown as { models: ModelManager };
    const install = scoring.models.install;
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    scoring.models.install = async function (this: ModelManager, b: ModelBundle) {
      await gate;
      return install.call(this, b);
    };
    assert.equal((await api<ModelsStatus>('GET', '/v1/models')).running, null);
    orch.retrain.config.trainer = slow;
    orch.retrain.on('progress', onProgress);
    let pushing: RetrainProgress;
    let run: RetrainRun;
    try {
      const pending = api<RetrainRun>('POST', '/v1/models/retrain');
      pushing = await until('the push stage in GET /v1/models', async () => {
        const r = (await api<ModelsStatus>('GET', '/v1/models')).running;
        return r?.stage === 'pushing' && r.done === N_SERVERS - 1 ? r : undefined;
      });
      assert.equal((await api<ModelsStatus>('GET', '/v1/models')).running?.done, N_SERVERS - 1, 'server 0 is still held');
      release();
      run = await pending;
    } finally {
      release();
      scoring.models.install = install;
      orch.retrain.config.trainer = undefined;
      orch.retrain.off('progress', onProgress);
    }
    assert.equal(run.replaced, true, run.reason);
    assert.equal(await serverModel(0), 'progress-run');
    assert.equal(pushing.total, N_SERVERS);
    assert.equal((await api<ModelsStatus>('GET', '/v1/models')).running, null);
    assert.equal(orch.retrain.progress, null);

    const startedAt = seen[0]!.startedAt;
    assert.ok(Math.abs(Date.parse(startedAt) - Date.now()) < 60_000, `startedAt ${startedAt} is the wall clock`);
    assert.equal(seen.at(-1), null, 'running ends as null');
    const live = seen.slice(0, -1) as RetrainProgress[];
    assert.ok(live.every((p) => p !== null && p.startedAt === startedAt));
    // The stages come in order, each once.
    assert.deepEqual(live.map((p) => p.stage).filter((x, i, a) => x !== a[i - 1]), ['pulling history', 'training', 'pushing']);
    const of = (stage: string) => live.filter((p) => p.stage === stage).map((p) => [p.done, p.total]);
    assert.deepEqual(of('pulling history'), [0, 1, 2, 3].map((d) => [d, N_SERVERS]));
    assert.deepEqual(of('pushing'), [0, 1, 2, 3].map((d) => [d, N_SERVERS]));
    const training = live.filter((p) => p.stage === 'training');
    assert.deepEqual(training[0], { stage: 'training', done: 0, total: 0, startedAt }, 'indeterminate until the trainer reports');
    for (let i = 1; i < training.length; i++) {
      const a = training[i - 1]!;
      const b = training[i]!;
      assert.ok(a.step !== b.step || b.done > a.done, `training moves forward: ${JSON.stringify(a)} → ${JSON.stringify(b)}`);
    }
    assert.deepEqual(inTrainer, { stage: 'training', done: 0, total: 100, step: 'training candidate', startedAt });
    assert.deepEqual(training.at(-1), { stage: 'training', done: 100, total: 100, step: 'validating', startedAt });
  });
});

describe('retrain progress bar', () => {
  it('labels each stage and gives its fraction; ignores what is not a RetrainProgress', () => {
    const at = '2026-01-10T00:00:00.000Z';
    assert.deepEqual(retrainBarState({ stage: 'pulling history', done: 1, total: 4, startedAt: at }), { label: 'pulling history 1/4', fraction: 0.25 });
    assert.deepEqual(retrainBarState({ stage: 'training', done: 0, total: 0, startedAt: at }), { label: 'training (starting)', fraction: 0 });
    assert.deepEqual(retrainBarState({ stage: 'training', done: 40, total: 100, step: 'building features', startedAt: at }), { label: 'training: building features', fraction: 0.4 });
    assert.deepEqual(retrainBarState({ stage: 'pushing', done: 3, total: 3, startedAt: at }), { label: 'pushing 3/3', fraction: 1 });
    assert.deepEqual(retrainBarState({ stage: 'pushing', done: 0, total: 0, startedAt: at }), { label: 'pushing 0/0', fraction: 0 });
    assert.equal(retrainBarState({ stage: 'pushing', done: 9, total: 3, startedAt: at })!.fraction, 1, 'clamped');
    for (const bad of [null, undefined, true, false, 'training', {}, { stage: 'cooking', done: 1, total: 2 }, { stage: 'training', done: 'x', total: 2 }, { stage: 'pushing', done: 1, total: NaN }]) {
      assert.equal(retrainBarState(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe('failure labels', () => {
  const report = (score: number, mode: FailureScoreReport['mode'], ageMs: number, at: number): FailureScoreReport => ({
    serverId: 's', score, level: score >= 70 ? 'critical' : score >= 50 ? 'warning' : 'healthy', mode,
    probabilities: { disk: 0, 'fail-slow': 0, network: 0, software: 0 }, horizons: { disk: '7d', 'fail-slow': '1h', network: '1h', software: '6h' },
    topFeatures: [], modelVersion: 'v', computedAt: new Date(at - ageMs).toISOString(), forecast: [],
  });

  it('a mark-down takes the leading mode of a fresh warning score, disk for a disk cause, else software', () => {
    const at = Date.UTC(2026, 0, 10);
    assert.equal(markDownMode(at, report(80, 'fail-slow', 60_000, at)).mode, 'fail-slow');
    assert.equal(markDownMode(at, report(55, 'network', 60_000, at)).mode, 'network');
    assert.equal(markDownMode(at, report(30, 'network', 60_000, at)).mode, 'software', 'below the warning level');
    assert.equal(markDownMode(at, report(90, 'network', 3_600_000, at)).mode, 'software', 'a stale score says nothing');
    assert.equal(markDownMode(at, undefined).mode, 'software');
    assert.equal(markDownMode(at, report(90, 'network', 0, at), 'disk errors (EIO) before it died').mode, 'disk');
  });

  it('operator labels are checked', () => {
    const now = Date.UTC(2026, 0, 10);
    assert.deepEqual(validateLabel({ server: 'srv-1', mode: 'disk', t: '2026-01-09T00:00:00Z', cause: 'drive replaced' }, now), { server: 'srv-1', mode: 'disk', t: Date.UTC(2026, 0, 9), source: 'operator', cause: 'drive replaced' });
    assert.throws(() => validateLabel({ server: 'srv-1', mode: 'cosmic' }, now), /mode/);
    assert.throws(() => validateLabel({ server: '', mode: 'disk' }, now), /server/);
    assert.throws(() => validateLabel({ server: 'a', mode: 'disk', t: now + DAY_MS }, now), /future/);
  });

  it('a history splits into lives at failures; each life sees only telemetry after the previous failure', () => {
    const t = Float64Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => i * MINUTE_MS));
    const series = { m: { t, mean: Float32Array.from(t, (x) => x / MINUTE_MS), last: Float32Array.from(t, (x) => x / MINUTE_MS) } };
    const lives = splitLives({ id: 's', series, failures: [{ mode: 'disk', t: 6 * MINUTE_MS }, { mode: 'network', t: 3 * MINUTE_MS }] });
    assert.deepEqual(lives.map((l) => [l.id, l.failures.map((f) => f.t / MINUTE_MS)]), [['s#0', [3]], ['s#1', [6]], ['s#2', []]]);
    assert.deepEqual(lives.map((l) => l.query('m', 0, 10 * MINUTE_MS).map((p) => p.mean)), [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 4, 5, 6, 7, 8, 9], [6, 7, 8, 9]]);
    assert.equal(splitLives({ id: 's', series, failures: [] })[0]!.id, 's');
    assert.ok(DEDUPE_MS > 0);
  });
});
