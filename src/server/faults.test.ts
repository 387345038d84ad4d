// Fault injection: ramps, and each profile's effect through the real paths (a real
// SegmentStore's ioHook, a real DataServer connection).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../common/log.ts';
import { ConnectionError, DataConnection } from '../protocol/connection.ts';
import { Op, Status, type Request, type Response } from '../protocol/messages.ts';
import { SegmentStore } from '../segment-store/segment-store.ts';
import { DataServer } from './data-server.ts';
import { DropConnectionError, FaultInjector, parseFaultSpec } from './faults.ts';

function req(op: Op, segmentId: string, offset: number, length: number, payload: Buffer = Buffer.alloc(0)): Request {
  return { op, flags: 0, requestId: 1, epoch: 1, segmentId, offset, length, payload };
}
const ok = (r: Request): Response => ({ op: r.op, status: Status.OK, requestId: r.requestId, epoch: 1, payload: Buffer.alloc(0) });

test('levels ramp linearly from 0 to the intensity, then stay; clear stops them', () => {
  let now = 1_000_000;
  const f = new FaultInjector({ now: () => now });
  f.set({ profile: 'slow-io', rampSeconds: 10, intensity: 200 });
  assert.equal(f.level('slow-io'), 0);
  now += 2500;
  assert.equal(f.level('slow-io'), 50);
  now += 7500;
  assert.equal(f.level('slow-io'), 200);
  now += 60_000;
  assert.equal(f.level('slow-io'), 200);
  const st = f.status();
  assert.equal(st.length, 1);
  assert.equal(st[0]!.progress, 1);
  assert.equal(f.metrics().fault_slow_io_level, 200);
  assert.deepEqual(f.clear(), ['slow-io']);
  assert.equal(f.level('slow-io'), 0);
  assert.deepEqual(f.metrics(), {});
  f.close();
});

test('parseFaultSpec: defaults and clear errors', () => {
  assert.deepEqual(parseFaultSpec({ profile: 'io-errors' }), { profile: 'io-errors', rampSeconds: 60, intensity: 0.05 });
  assert.throws(() => parseFaultSpec({ profile: 'fire' }), /profile must be one of/);
  assert.throws(() => parseFaultSpec({ profile: 'io-errors', intensity: 1.5 }), /<= 1/);
  assert.throws(() => parseFaultSpec({ profile: 'net-delay', intensity: 0 }), /> 0/);
  assert.throws(() => parseFaultSpec({ profile: 'net-delay', rampSeconds: 'x' }), /rampSeconds/);
  assert.throws(() => parseFaultSpec(null), /JSON object/);
});

test('slow-io and io-errors act on a real segment store through its ioHook', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-faults-'));
  const f = new FaultInjector();
  const store = new SegmentStore(dir, { ioHook: f.ioHook });
  try {
    await store.open();
    await store.ensure('v/0', 64 * 1024);
    const data = Buffer.alloc(4096, 7);
    f.set({ profile: 'slow-io', rampSeconds: 0, intensity: 60 });
    const t0 = performance.now();
    await store.write('v/0', 0, data);
    const ms = performance.now() - t0;
    assert.ok(ms >= 25, `write took ${ms} ms with ≥30 ms injected`);
    assert.ok(f.counters.ioDelayed >= 1);
    f.clear();
    f.set({ profile: 'io-errors', rampSeconds: 0, intensity: 1 });
    await assert.rejects(store.read('v/0', 0, 4096), (e: NodeJS.ErrnoException) => e.code === 'EIO' && /injected/.test(e.message));
    f.clear();
    assert.ok((await store.read('v/0', 0, 4096)).equals(data), 'the data is intact once the fault is gone');
  } finally {
    f.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('sector-errors: reads find pending sectors and fail on them; a rewrite reallocates; SMART-like counters follow', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-faults-'));
  let now = 0;
  const f = new FaultInjector({ now: () => now, random: () => 0 });
  const store = new SegmentStore(dir, { ioHook: f.ioHook });
  const read = (off: number, len: number) => f.aroundRequest(req(Op.READ, 'v/0', off, len), async () => {
    await store.read('v/0', off, len);
    return ok(req(Op.READ, 'v/0', off, len));
  });
  const write = (off: number, data: Buffer) => f.aroundRequest(req(Op.WRITE, 'v/0', off, 0, data), async () => {
    await store.write('v/0', off, data);
    return ok(req(Op.WRITE, 'v/0', off, 0));
  });
  try {
    await store.open();
    await store.ensure('v/0', 64 * 1024);
    await write(8192, Buffer.alloc(8192, 3));
    f.set({ profile: 'sector-errors', rampSeconds: 10, intensity: 2 });
    await read(8192, 8192); // level 0: no defects yet
    now = 5000; // level 1
    await assert.rejects(read(8192, 8192), /unreadable sector: block 2 of v\/0/);
    assert.deepEqual(f.pendingSectors(), [{ segmentId: 'v/0', blocks: [2] }]);
    // The same block keeps failing; another block is fine (the target is reached).
    await assert.rejects(read(8192, 4096), /block 2/);
    await read(12288, 4096);
    let m = f.metrics();
    assert.equal(m.smart_197_current_pending_sectors, 1);
    assert.equal(m.smart_5_reallocated_sectors, 0);
    assert.equal(m.smart_187_reported_uncorrectable, 2);
    assert.equal(m.fault_injected, 1);
    // Rewriting the block remaps it: pending → reallocated, and it reads again.
    await write(8192, Buffer.alloc(4096, 9));
    await read(8192, 4096);
    m = f.metrics();
    assert.equal(m.smart_197_current_pending_sectors, 0);
    assert.equal(m.smart_5_reallocated_sectors, 1);
    // Reads outside a data-protocol request (scrub, copy) are never judged: no block range.
    assert.ok((await store.read('v/0', 8192, 4096)).equals(Buffer.alloc(4096, 9)));
  } finally {
    f.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('sector-errors: the background scan follows the ramp without any reads (intensity = defects at full ramp)', async () => {
  let now = 0;
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const segments = { list: () => ['v/0', 'v/1'], info: async () => ({ size: 64 * 1024 * 1024 }) };
  const f = new FaultInjector({ now: () => now, random, tickMs: 5, segments: () => segments });
  const found = () => (f.metrics().smart_197_current_pending_sectors ?? 0) + (f.metrics().smart_5_reallocated_sectors ?? 0);
  try {
    f.set({ profile: 'sector-errors', rampSeconds: 10, intensity: 2000 });
    now = 5000; // half the ramp: 1000 defects due
    const t0 = Date.now();
    while (found() < 990 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    assert.ok(found() >= 990 && found() <= 1000, `half ramp: ${found()} defects`);
    now = 10_000;
    while (found() < 1990 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
    assert.ok(found() >= 1990 && found() <= 2000, `full ramp: ${found()} defects`);
    assert.ok(f.pendingSectors().every((p) => p.segmentId === 'v/0' || p.segmentId === 'v/1'));
  } finally {
    f.close();
  }
});

test('net-delay delays responses; net-loss resets real data-server connections', async () => {
  const slept: number[] = [];
  const f = new FaultInjector({ random: () => 0.5, sleep: async (ms) => { slept.push(ms); } });
  f.set({ profile: 'net-delay', rampSeconds: 0, intensity: 100 });
  const r = req(Op.READ, 'v/0', 0, 4096);
  assert.equal((await f.aroundRequest(r, async () => ok(r))).status, Status.OK);
  assert.deepEqual(slept, [100]); // 0.5 + 0.5 = 1 × the level
  f.clear();

  const g = new FaultInjector({ random: () => 0 }); // every response lost, every loss a reset
  g.set({ profile: 'net-loss', rampSeconds: 0, intensity: 1 });
  await assert.rejects(g.aroundRequest(r, async () => ok(r)), DropConnectionError);
  const server = new DataServer((q) => g.aroundRequest(q, async () => ok(q)), silentLogger);
  const addr = await server.listen('127.0.0.1', 0);
  const conn = new DataConnection(addr, { requestTimeoutMs: 3000 });
  try {
    await assert.rejects(conn.send({ op: Op.READ, flags: 0, epoch: 1, segmentId: 'v/0', offset: 0, length: 4096, payload: Buffer.alloc(0) }), ConnectionError);
    assert.equal(g.counters.netResets, 2);
  } finally {
    conn.close();
    g.close();
    await server.close();
  }
});

test('mem-leak really allocates and holds memory up to the level, and frees it on clear', async () => {
  const f = new FaultInjector({ tickMs: 20 });
  const rss0 = process.memoryUsage().rss;
  f.set({ profile: 'mem-leak', rampSeconds: 0, intensity: 48 });
  const until = Date.now() + 5000;
  while (f.heldBytes < 48 * 1024 * 1024 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.equal(f.heldBytes, 48 * 1024 * 1024);
  assert.equal(f.metrics().fault_mem_held_bytes, 48 * 1024 * 1024);
  const grown = process.memoryUsage().rss - rss0;
  assert.ok(grown > 24 * 1024 * 1024, `RSS grew by ${grown} bytes`);
  f.clear();
  assert.equal(f.heldBytes, 0);
});
