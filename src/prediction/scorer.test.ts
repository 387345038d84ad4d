import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FAILURE_MODES } from './failure-report.ts';
import { loadDefaultBundle } from './model-bundle.ts';
import { FailureScorer, modeScore, levelOf } from './scorer.ts';
import { syntheticQuery } from './synthetic-telemetry.ts';
import { arrayQuery, peerSample, peerStatsOf } from './online-features.ts';

/** The fail-slow reference as servers get it: peerReference over healthy peers' window samples. */
function healthyPeers(now: number, minutes: number): ReturnType<typeof peerStatsOf> {
  return peerStatsOf([11, 12, 13, 14].map((seed) => peerSample(syntheticQuery({ now, minutes, seed }), now)));
}

const bundle = await loadDefaultBundle();
const scorer = new FailureScorer(bundle);
const now = Date.UTC(2026, 0, 10, 12, 0);
const twoDays = 2 * 1440;

function assertReportShape(r: ReturnType<FailureScorer['score']>, serverId: string): void {
  assert.equal(r.serverId, serverId);
  assert.ok(r.score >= 0 && r.score <= 100, `score ${r.score}`);
  assert.equal(r.level, levelOf(r.score));
  assert.ok((FAILURE_MODES as readonly string[]).includes(r.mode));
  assert.deepEqual(Object.keys(r.probabilities).sort(), [...FAILURE_MODES].sort());
  assert.deepEqual(r.horizons, { disk: '7d', 'fail-slow': '1h', network: '1h', software: '6h' });
  for (const p of Object.values(r.probabilities)) assert.ok(p >= 0 && p <= 1);
  assert.ok(Array.isArray(r.topFeatures));
  for (const f of r.topFeatures) assert.ok(typeof f.name === 'string' && Number.isFinite(f.value) && Number.isFinite(f.contribution));
  assert.equal(r.modelVersion, bundle.version);
  assert.equal(r.computedAt, new Date(now).toISOString());
  assert.ok(Array.isArray(r.forecast));
}

test('a ramping slow-I/O latency drives fail-slow and the score above 70; a healthy history stays below 30', () => {
  const peers = healthyPeers(now, twoDays);
  const healthy = scorer.score({ serverId: 'h', query: syntheticQuery({ now, minutes: twoDays, smartDays: 21, seed: 3 }), now, peers });
  assertReportShape(healthy, 'h');
  assert.ok(healthy.score < 30, `healthy score ${healthy.score} (${JSON.stringify(healthy.probabilities)})`);
  assert.equal(healthy.level, 'healthy');

  const slow = scorer.score({ serverId: 's', query: syntheticQuery({ now, minutes: twoDays, smartDays: 21, seed: 3, slowIo: { minutes: 120, toMs: 30 } }), now, peers });
  assertReportShape(slow, 's');
  assert.ok(slow.score >= 70, `slow score ${slow.score}`);
  assert.equal(slow.level, 'critical');
  assert.equal(slow.mode, 'fail-slow');
  assert.ok(slow.probabilities['fail-slow'] > 0.5, `p ${slow.probabilities['fail-slow']}`);
  assert.ok(slow.probabilities['fail-slow'] > 10 * healthy.probabilities['fail-slow']);
  // The features that drove it are latency features, with positive contributions first.
  assert.ok(slow.topFeatures.length > 0);
  assert.match(slow.topFeatures[0].name, /^fs_lat_/);
  assert.ok(slow.topFeatures[0].contribution > 0);
  // Forecasts of io p99 and disk latency, one hour in 5-minute steps, rising with the ramp.
  const io = slow.forecast.find((f) => f.metric === 'io_read_latency_p99_ms');
  assert.ok(io, 'io latency forecast present');
  assert.equal(io.points.length, 12);
  assert.equal(io.points[1].t - io.points[0].t, 5 * 60_000);
  assert.ok(io.points[0].value > 10, `forecast starts near the ramped level, got ${io.points[0].value}`);
  assert.ok(slow.forecast.some((f) => f.metric === 'disk_read_latency_ms'));
});

test('peers (fleet median/MAD) are the fail-slow reference; without them the mode has no input', () => {
  const q = syntheticQuery({ now, minutes: 65, seed: 5 });
  const alone = scorer.score({ serverId: 'x', query: q, now, forecast: false });
  assert.equal(alone.probabilities['fail-slow'], Math.round(bundle.modes['fail-slow'].anchors.base * 1e6) / 1e6, 'without peers: prior');
  assert.ok(alone.noData?.includes('fail-slow'), `noData ${alone.noData}`);
  const slowPeers = { io_read_latency_p50_ms: { median: 0.1, mad: 0.01 }, io_read_bytes_per_s: { median: 50e6, mad: 5e6 } };
  const vsFleet = scorer.score({ serverId: 'x', query: q, now, peers: slowPeers, forecast: false });
  assert.ok(vsFleet.probabilities['fail-slow'] > 0.5, `10x the fleet's latency: ${vsFleet.probabilities['fail-slow']}`);
  const samePeers = { io_read_latency_p50_ms: { median: 1, mad: 0.07 }, io_read_bytes_per_s: { median: 50e6, mad: 7e6 } };
  const likeFleet = scorer.score({ serverId: 'x', query: q, now, peers: samePeers, forecast: false });
  assert.ok(likeFleet.score < 30, `like its fleet: ${likeFleet.score}`);
});

test('memory leak → software mode; TCP retransmissions → network mode (heuristic rules)', () => {
  const leak = scorer.score({ serverId: 'l', query: syntheticQuery({ now, minutes: twoDays, seed: 7, memLeak: { minutes: 360, perHour: 0.2 } }), now, forecast: false });
  assert.equal(leak.mode, 'software');
  assert.ok(leak.score >= 70, `leak ${leak.score}`);
  assert.ok(leak.topFeatures.some((f) => f.name === 'sw_rss_growth_per_h' && f.contribution > 0));
  const net = scorer.score({ serverId: 'n', query: syntheticQuery({ now, minutes: twoDays, seed: 7, netLoss: { minutes: 30, retransRatio: 0.08 } }), now, forecast: false });
  assert.equal(net.mode, 'network');
  assert.ok(net.score >= 70, `net ${net.score}`);
  assert.equal(net.topFeatures[0].name, 'net_retrans_ratio');
});

test('no history: a low score with a note, not a crash', () => {
  const r = scorer.score({ serverId: 'new', query: arrayQuery({}), now });
  assertReportShape(r, 'new');
  assert.ok(r.score <= 10, `score ${r.score}`);
  assert.equal(r.level, 'healthy');
  assert.match(r.note ?? '', /not enough telemetry/);
  assert.deepEqual(r.noData, [...FAILURE_MODES]);
  assert.deepEqual(r.topFeatures, []);
  assert.deepEqual(r.forecast, []);
  for (const m of FAILURE_MODES) assert.equal(r.probabilities[m], Math.round(bundle.modes[m].anchors.base * 1e6) / 1e6);
});

test('a server without SMART still scores, with a note naming the disk mode', () => {
  const r = scorer.score({ serverId: 'vm', query: syntheticQuery({ now, minutes: twoDays, seed: 9 }), now, peers: healthyPeers(now, twoDays), forecast: false });
  assert.ok(r.score < 30);
  assert.match(r.note ?? '', /disk \(no SMART/);
  assert.ok(r.noData?.includes('disk') && !r.noData.includes('fail-slow'), `noData ${r.noData}`);
});

test('modeScore maps the anchors to 10/50/70 and is monotone', () => {
  const a = { base: 1e-4, warn: 0.01, act: 0.05 };
  assert.equal(modeScore(0, a), 0);
  assert.ok(Math.abs(modeScore(1e-4, a) - 10) < 1e-9);
  assert.ok(Math.abs(modeScore(0.01, a) - 50) < 1e-9);
  assert.ok(Math.abs(modeScore(0.05, a) - 70) < 1e-9);
  assert.equal(modeScore(1, a), 100);
  let prev = -1;
  for (let p = 1e-6; p < 1; p *= 1.3) {
    const s = modeScore(p, a);
    assert.ok(s >= prev);
    prev = s;
  }
  assert.equal(levelOf(69.9), 'warning');
  assert.equal(levelOf(70), 'critical');
  assert.equal(levelOf(49.9), 'healthy');
});

test('scoring is cheap: under 200 ms per server per tick on this fixture (typically ~5–20 ms; the bound leaves room for a loaded machine)', () => {
  const q = syntheticQuery({ now, minutes: twoDays, smartDays: 21, seed: 11 });
  scorer.score({ serverId: 'w', query: q, now });
  const t0 = performance.now();
  const n = 20;
  for (let i = 0; i < n; i++) scorer.score({ serverId: 'w', query: q, now: now - i * 60_000 });
  const per = (performance.now() - t0) / n;
  assert.ok(per < 200, `${per.toFixed(1)} ms per score`);
});
