// Integration: server telemetry, Prometheus, history import, segment heat and fault injection
// on real processes (an orchestrator and two storage servers on loopback).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { PresageClient, type Volume } from '../src/client/presage-client.ts';
import { ProtocolError, Status } from '../src/protocol/messages.ts';
import { parsePrometheusText } from '../src/telemetry/prom-parse.ts';
import { REPO, TestCluster, type ServerHandle, authedFetch } from './helpers/cluster.ts';

const MiB = 1024 * 1024;
const SEG = MiB;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function http(base: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; json: any; text: string }> {
  const res = await authedFetch(base + path, {
    method,
    headers: body === undefined ? undefined : { 'content-type': contentType },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

interface Point { ts: number; min: number; max: number; mean: number; last: number; count: number }

describe('telemetry and fault injection on a 2-server cluster', () => {
  let cluster: TestCluster;
  let client: PresageClient;
  let api: OrchestratorClient;
  let vol: Volume;
  let s0: ServerHandle; // --allow-faults
  let s1: ServerHandle; // faults refused
  const admin = (s: ServerHandle) => `http://127.0.0.1:${s.adminPort}`;
  /** What each written 4 KiB block of volume "tele" should hold. */
  const model = new Map<number, Buffer>();

  before(async () => {
    cluster = await TestCluster.start({
      servers: 2,
      serverArgs: (i) => (i === 0 ? ['--allow-faults', '--telemetry-interval', '1000'] : ['--telemetry-interval', '1000']),
    });
    [s0, s1] = cluster.servers as [ServerHandle, ServerHandle];
    api = new OrchestratorClient(cluster.url);
    // One replica per segment: placement alternates, so each server is primary of half of
    // them whatever their (random) ids; 'rep2' below exercises replication.
    await api.createVolume({ name: 'tele', size: 8 * MiB, segmentSize: SEG, replicas: 1 });
    client = await PresageClient.connect({ orchestratorUrl: cluster.url, requestTimeoutMs: 5000, opTimeoutMs: 10000 });
    vol = await client.openVolume('tele');
  });
  after(async () => {
    await client?.close();
    api?.close();
    await cluster?.stop();
  });

  /** Segment indexes of "tele" whose primary is `s`. */
  async function primariedOn(s: ServerHandle, volume = 'tele'): Promise<number[]> {
    const segs = await api.segments(volume);
    return segs.filter((e) => e.replicas[0] === s.id).map((e) => Number(e.segmentId.split('/')[1]));
  }

  async function writeBlock(seg: number, n: number): Promise<void> {
    const off = seg * SEG + ((n * 7) % (SEG / 4096)) * 4096;
    const data = crypto.randomBytes(4096);
    await vol.write(off, data);
    model.set(off, data);
  }

  async function history(s: ServerHandle, metric: string, from: number, to = Date.now() + 60_000): Promise<Point[]> {
    const r = await http(admin(s), 'GET', `/v1/metrics/history?metric=${metric}&from=${from}&to=${to}`);
    if (r.status === 404) return [];
    assert.equal(r.status, 200, r.text);
    return r.json.points as Point[];
  }

  it('a slow-io fault shows up in the write latency history within a minute', async () => {
    const mine = await primariedOn(s0);
    assert.ok(mine.length > 0, 'server 0 is primary of some segment');
    const t0 = Date.now();
    // Baseline: writes for 3 s with no fault.
    let n = 0;
    while (Date.now() - t0 < 3000) await writeBlock(mine[n % mine.length]!, n++);
    await sleep(1200); // the sample that covers the last writes
    const base = await history(s0, 'io_write_latency_p99_ms', t0 - 60_000);
    assert.ok(base.length > 0, 'baseline write latency is in the history');
    const baseline = Math.max(...base.map((p) => p.max));

    const f = await http(admin(s0), 'POST', '/v1/faults', { profile: 'slow-io', rampSeconds: 4, intensity: 150 });
    assert.equal(f.status, 201, f.text);
    assert.equal(f.json.profile, 'slow-io');
    const faultAt = Date.now();
    const threshold = Math.max(100, 3 * baseline);
    let stop = false;
    const writer = (async () => {
      while (!stop) await writeBlock(mine[n % mine.length]!, n++);
    })();
    let seen: Point[] = [];
    try {
      while (Date.now() - faultAt < 60_000) {
        await sleep(1000);
        seen = await history(s0, 'io_write_latency_p99_ms', t0 - 60_000);
        if (seen.some((p) => p.max >= threshold)) break;
      }
    } finally {
      stop = true;
      await writer;
    }
    const peak = Math.max(...seen.map((p) => p.max));
    assert.ok(peak >= threshold, `write p99 rose to ${peak} ms (baseline ${baseline} ms, threshold ${threshold} ms)`);
    assert.ok(Date.now() - faultAt < 60_000);
    // The latest sample agrees, and the disk-level delay counters saw the same fault.
    const faults = await http(admin(s0), 'GET', '/v1/faults');
    assert.equal(faults.status, 200);
    assert.ok(faults.json.counters.ioDelayed > 0 && faults.json.counters.ioDelayMs > 0, JSON.stringify(faults.json.counters));
    assert.equal(faults.json.active[0].profile, 'slow-io');
    const cleared = await http(admin(s0), 'DELETE', '/v1/faults');
    assert.deepEqual(cleared.json, { cleared: ['slow-io'] });
    // Every byte written while the disk was slow reads back intact.
    for (const [off, data] of model) assert.ok((await vol.read(off, 4096)).equals(data), `block at ${off}`);
  });

  it('refuses fault injection without --allow-faults, validates profiles, and drives it from the CLI', async () => {
    for (const [method, body] of [['POST', { profile: 'slow-io' }], ['GET', undefined], ['DELETE', undefined]] as const) {
      const r = await http(admin(s1), method, '/v1/faults', body);
      assert.equal(r.status, 403, `${method} on a server without --allow-faults`);
      assert.match(r.json.error, /--allow-faults/);
    }
    assert.equal((await http(admin(s0), 'POST', '/v1/faults', { profile: 'disk-on-fire' })).status, 400);
    assert.equal((await http(admin(s0), 'POST', '/v1/faults', { profile: 'io-errors', intensity: 2 })).status, 400);
    assert.equal((await http(admin(s0), 'POST', '/v1/faults', { profile: 'slow-io', rampSeconds: -1 })).status, 400);
    assert.equal((await http(admin(s0), 'DELETE', '/v1/faults?profile=nope')).status, 400);

    const refused = await cluster.cli(['fault', s1.id, '--list']);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /allow-faults/);

    // By server id (resolved through the orchestrator): every disk op fails.
    const started = await cluster.cli(['fault', s0.id, '--profile', 'io-errors', '--ramp', '0', '--intensity', '1']);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stdout, /io-errors started/);
    const mine = await primariedOn(s0);
    await assert.rejects(writeBlock(mine[0]!, 1), (err: unknown) => err instanceof ProtocolError && err.status === Status.IO_ERROR);
    // The failed write reaches the telemetry as an I/O error.
    const deadline = Date.now() + 10_000;
    let errs: Point[] = [];
    while (Date.now() < deadline) {
      errs = await history(s0, 'io_errors_io_error_per_s', Date.now() - 120_000);
      if (errs.some((p) => p.max > 0)) break;
      await sleep(500);
    }
    assert.ok(errs.some((p) => p.max > 0), 'io_errors_io_error_per_s rose');

    // By admin address: list, then clear.
    const listed = await cluster.cli(['fault', `127.0.0.1:${s0.adminPort}`, '--list', '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const l = JSON.parse(listed.stdout);
    assert.deepEqual(l.active.map((a: { profile: string }) => a.profile), ['io-errors']);
    assert.equal(l.active[0].level, 1);
    assert.ok(l.counters.ioErrors >= 1);
    const clear = await cluster.cli(['fault', s0.id, '--clear']);
    assert.equal(clear.code, 0, clear.stderr);
    assert.deepEqual((await http(admin(s0), 'GET', '/v1/faults')).json.active, []);
    await writeBlock(mine[0]!, 1); // the disk works again
  });

  it('serves valid Prometheus text with the conventional names on servers and orchestrator', async () => {
    const r = await authedFetch(`${admin(s0)}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/plain/);
    const fams = parsePrometheusText(await r.text());
    for (const name of [
      'presage_io_requests_total', 'presage_io_latency_seconds', 'presage_io_bytes_total', 'presage_io_errors_total',
      'presage_checksum_failures_total', 'presage_segments', 'presage_node_io_write_iops', 'presage_node_segments',
      'presage_node_cpu_busy_ratio', 'presage_node_mem_used_ratio', 'process_cpu_user_seconds_total', 'process_resident_memory_bytes',
    ]) assert.ok(fams.has(name), `server /metrics has ${name}`);
    assert.equal(fams.get('presage_io_latency_seconds')!.type, 'histogram');
    const writes = fams.get('presage_io_requests_total')!.samples.find((s) => s.labels.op === 'write');
    assert.ok(writes && writes.value > 0, 'writes were counted');
    const ioErr = fams.get('presage_io_errors_total')!.samples.find((s) => s.labels.op === 'write' && s.labels.kind === 'io');
    assert.ok(ioErr && ioErr.value >= 1, 'the injected I/O error was counted');
    assert.ok(fams.get('presage_segments')!.samples[0]!.value >= 1);

    const o = parsePrometheusText(await (await authedFetch(`${cluster.url}/metrics`)).text());
    const up = o.get('presage_orchestrator_servers')!.samples.find((s) => s.labels.state === 'up');
    assert.equal(up?.value, 2);
    assert.equal(o.get('presage_orchestrator_segments')!.samples[0]!.value, 8);
    assert.equal(o.get('presage_orchestrator_degraded_segments')!.samples[0]!.value, 0);
    assert.ok(o.has('presage_orchestrator_operators_in_flight'));
    assert.ok(o.has('process_cpu_user_seconds_total'));

    // The Grafana dashboard asks only for names these endpoints export (some appear only with
    // data: SMART, fault flags, a disk behind the data dir, replication, a computed score).
    const dash = JSON.parse(fs.readFileSync(path.join(REPO, 'docs/grafana-dashboard.json'), 'utf8'));
    const exprs: string[] = dash.panels.flatMap((p: { targets?: { expr: string }[] }) => (p.targets ?? []).map((t) => t.expr));
    const conditional = /^presage_(failure_score|node_(smart_|fault_|disk_|replication_))/;
    for (const name of new Set(exprs.flatMap((e) => e.match(/\b(presage|process)_[a-z0-9_]+/g) ?? []))) {
      const family = name.replace(/_bucket$/, '');
      assert.ok(fams.has(family) || o.has(family) || conditional.test(name), `dashboard metric ${name} is exported`);
    }
  });

  it('measures replication lag on the primary of a replicated volume', async () => {
    await api.createVolume({ name: 'rep2', size: 2 * MiB, segmentSize: SEG, replicas: 2 });
    const rv = await client.openVolume('rep2');
    const primary = cluster.serverById((await api.segments('rep2'))[0]!.replicas[0]!);
    const t0 = Date.now();
    const data = crypto.randomBytes(64 * 1024);
    for (let i = 0; i < 20; i++) await rv.write(i * 65536, data);
    let lag: Point[] = [];
    while (Date.now() - t0 < 10_000 && lag.length === 0) {
      await sleep(500);
      lag = await history(primary, 'replication_lag_ms', t0 - 60_000);
    }
    assert.ok(lag.length > 0, 'replication_lag_ms recorded');
    assert.ok(lag.every((p) => p.min >= 0 && p.max < 10_000), JSON.stringify(lag));
    const fwd = await history(primary, 'replication_forward_latency_p99_ms', t0 - 60_000);
    assert.ok(fwd.length > 0 && fwd[0]!.max > 0);
    assert.ok((await rv.read(19 * 65536, 65536)).equals(data));
  });

  it('imports 30 days of history and serves it through the API and the CLI', async () => {
    const end = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    const start = end - 30 * 86_400_000;
    const lines = ['ts,metric,min,max,mean,last,count'];
    const expected: Point[] = [];
    for (let ts = start, i = 0; ts < end; ts += 60_000, i++) {
      const mean = 5 + Math.sin(i / 100) * 2 + i / 1e5;
      const p = { ts, min: mean - 1, max: mean + 1.5, mean, last: mean + 0.25, count: 12 };
      expected.push(p);
      lines.push(`${ts},hist_disk_latency_ms,${p.min},${p.max},${p.mean},${p.last},${p.count}`);
    }
    const imp = await http(admin(s1), 'POST', '/v1/metrics/import', lines.join('\n') + '\n', 'text/csv');
    assert.equal(imp.status, 200, imp.text);
    assert.equal(imp.json.rowsImported, 43_200);
    assert.equal(imp.json.spanDays, 30);

    const names = await http(admin(s1), 'GET', '/v1/metrics/names');
    assert.ok(names.json.includes('hist_disk_latency_ms'));
    // Per minute over the whole 30 days, by ISO dates: every value exactly as imported.
    const all = await http(admin(s1), 'GET', `/v1/metrics/history?metric=hist_disk_latency_ms&from=${new Date(start).toISOString()}&to=${new Date(end).toISOString()}`);
    assert.equal(all.status, 200, all.text);
    assert.deepEqual(all.json.points, expected);
    // Hourly buckets: 720 of them, each merging 60 minutes.
    const hourly = await http(admin(s1), 'GET', `/v1/metrics/history?metric=hist_disk_latency_ms&from=${start}&to=${end}&step=1h`);
    assert.equal(hourly.json.points.length, 720);
    assert.equal(hourly.json.points[0].count, 60 * 12);
    assert.equal(hourly.json.points[0].min, Math.min(...expected.slice(0, 60).map((p) => p.min)));

    // Bad input is a clear 400 (or 404 for an unknown metric), never a crash.
    for (const [q, re] of [
      ['from=1000', /metric is required/],
      ['metric=hist_disk_latency_ms&from=yesterday', /invalid time/],
      ['metric=hist_disk_latency_ms&from=2000&to=1000', /must be before/],
      ['metric=hist_disk_latency_ms&step=90s', /multiple of 1 minute/],
    ] as const) {
      const r = await http(admin(s1), 'GET', `/v1/metrics/history?${q}`);
      assert.equal(r.status, 400, q);
      assert.match(r.json.error, re);
    }
    assert.equal((await http(admin(s1), 'GET', '/v1/metrics/history?metric=no_such_metric')).status, 404);
    const badCsv = await http(admin(s1), 'POST', '/v1/metrics/import', 'ts,metric,min,max,mean,last,count\n1,x,1,2,1,1,1\n2,x,3,2,1,1,1\n', 'text/csv');
    assert.equal(badCsv.status, 400);
    assert.match(badCsv.json.error, /line 3: min 3 > max 2/);
    // A path is read only from the server's --import-dir, which this one lacks: refused, saying what to do instead.
    const byPath = await http(admin(s1), 'POST', '/v1/metrics/import', { path: 'relative.csv' });
    assert.equal(byPath.status, 403, byPath.text);
    assert.equal(byPath.json.code, 'ERR_PRESAGE_IMPORT_PATH');
    assert.match(byPath.json.error, /--import-dir/);

    const storage = await http(admin(s1), 'GET', '/v1/metrics/storage');
    assert.ok(storage.json.rows >= 43_200 && storage.json.bytesPerDay > 0 && storage.json.coveredDays >= 30, storage.text);
    assert.equal(storage.json.retentionDays, 35);

    const cli = await cluster.cli(['metrics', s1.id, '--metric', 'hist_disk_latency_ms', '--from', String(start), '--to', String(end), '--step', '1d', '--json']);
    assert.equal(cli.code, 0, cli.stderr);
    const daily = JSON.parse(cli.stdout).points as Point[];
    assert.ok(daily.length === 30 || daily.length === 31, `${daily.length} daily points`);
    assert.equal(daily.reduce((a, p) => a + p.count, 0), 43_200 * 12);
  });

  it('ranks a hammered segment first in the segment heat', async () => {
    const mine = await primariedOn(s1);
    assert.ok(mine.length >= 2, 'server 1 is primary of at least two segments');
    const [hot, ...rest] = mine as [number, ...number[]];
    for (let i = 0; i < 150; i++) {
      await writeBlock(hot, i);
      await vol.read(hot * SEG + (i % 64) * 4096, 4096);
    }
    for (const seg of rest) for (let i = 0; i < 5; i++) await writeBlock(seg, i);
    const r = await http(admin(s1), 'GET', '/v1/segments/heat');
    assert.equal(r.status, 200);
    const segs = r.json.segments as { segmentId: string; readsPerSec: number; writesPerSec: number; bytesPerSec: number }[];
    assert.equal(segs[0]!.segmentId, `tele/${hot}`);
    assert.ok(segs[0]!.readsPerSec > 0 && segs[0]!.writesPerSec > 0 && segs[0]!.bytesPerSec > 0);
    const second = segs[1]!;
    assert.ok(segs[0]!.writesPerSec + segs[0]!.readsPerSec > 5 * (second.writesPerSec + second.readsPerSec), JSON.stringify(segs.slice(0, 3)));
    // Every local segment is listed, cold ones included.
    assert.equal(segs.length, (await http(admin(s1), 'GET', '/v1/status')).json.segments.length);
    for (const [off, data] of model) assert.ok((await vol.read(off, 4096)).equals(data), `block at ${off}`);
  });
});
