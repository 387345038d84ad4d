import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { silentLogger } from '../common/log.ts';
import { FrameError, FrameReader, decodeRequest, decodeResponse, encodeRequest } from '../protocol/codec.ts';
import { DataConnection } from '../protocol/connection.ts';
import { MAX_FRAME_BYTES, MAX_IO_BYTES, Op, PROTOCOL_VERSION, Status, type Request, type Response } from '../protocol/messages.ts';
import { DataServer } from './data-server.ts';

/** Deterministic bytes, so a READ's expected data can be recomputed from its request. */
function pattern(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = (seed | 0) || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The stub storage handler: WRITE echoes its payload, READ returns `length` pattern bytes seeded
 * by the offset, everything else an empty OK. `delay(req)` holds a request back (ms), so tests
 * can make requests complete out of order.
 */
class EchoHandler {
  calls = 0;
  delay: (req: Request) => number = () => 0;
  fail: (req: Request) => boolean = () => false;
  /** Replaces the payload of the answer (a misbehaving handler); undefined keeps the echo. */
  payload: (req: Request) => Buffer | undefined = () => undefined;

  readonly handle = async (req: Request): Promise<Response> => {
    this.calls++;
    const ms = this.delay(req);
    if (ms > 0) await sleep(ms);
    if (this.fail(req)) throw new Error(`handler failure for ${req.requestId}`);
    return { op: req.op, status: Status.OK, requestId: req.requestId, epoch: req.epoch, payload: this.payload(req) ?? echoPayload(req) };
  };

  reset(): void {
    this.calls = 0;
    this.delay = () => 0;
    this.fail = () => false;
    this.payload = () => undefined;
  }
}

function echoPayload(req: Request): Buffer {
  return req.op === Op.WRITE ? Buffer.from(req.payload) : req.op === Op.READ ? pattern(req.length, req.offset) : Buffer.alloc(0);
}

/** A raw socket speaking frames: responses are decoded as they arrive; `closed` resolves on close. */
class RawClient {
  readonly responses: Response[] = [];
  readonly frameErrors: string[] = [];
  readonly closed: Promise<void>;
  private waiters: (() => void)[] = [];

  private constructor(readonly sock: net.Socket) {
    const reader = new FrameReader((body) => {
      this.responses.push(decodeResponse(body)); // a response the client cannot decode fails the test
      for (const w of this.waiters.splice(0)) w();
    }, (err) => this.frameErrors.push(err.message));
    sock.on('data', (c) => reader.push(c));
    sock.on('error', () => { /* resets are expected in garbage tests; 'close' follows */ });
    this.closed = new Promise((resolve) => sock.once('close', () => {
      for (const w of this.waiters.splice(0)) w();
      resolve();
    }));
  }

  static connect(address: string): Promise<RawClient> {
    const i = address.lastIndexOf(':');
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) }, () => resolve(new RawClient(sock)));
      sock.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.sock.destroyed;
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  /** Waits until `n` responses arrived; rejects on close or after `ms`. */
  async waitResponses(n: number, ms = 5000): Promise<Response[]> {
    const deadline = Date.now() + ms;
    while (this.responses.length < n) {
      if (this.isClosed) throw new Error(`connection closed after ${this.responses.length} of ${n} responses`);
      if (Date.now() > deadline) throw new Error(`only ${this.responses.length} of ${n} responses within ${ms} ms`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.responses;
  }

  /** Resolves true when the server closes the connection within `ms`. */
  async closesWithin(ms: number): Promise<boolean> {
    return Promise.race([this.closed.then(() => true), sleep(ms).then(() => false)]);
  }

  destroy(): void {
    this.sock.destroy();
  }
}

function req(over: Partial<Request> = {}): Request {
  return { op: Op.READ, flags: 0, requestId: 1, epoch: 5, segmentId: 'vol/0', offset: 0, length: 16, payload: Buffer.alloc(0), ...over };
}

function prefixed(body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(body.length);
  return Buffer.concat([h, body]);
}

const handler = new EchoHandler();
const server = new DataServer(handler.handle, silentLogger);
let address = '';

before(async () => {
  address = await server.listen('127.0.0.1', 0);
});
after(async () => {
  await server.close();
});

/** The server still answers a fresh connection correctly. */
async function assertServing(): Promise<void> {
  const c = await RawClient.connect(address);
  c.write(encodeRequest(req({ requestId: 4242, offset: 77, length: 100 })));
  const [r] = await c.waitResponses(1);
  assert.equal(r.status, Status.OK);
  assert.equal(r.requestId, 4242);
  assert.ok(r.payload.equals(pattern(100, 77)));
  c.destroy();
}

test('a valid request gets its response: READ data and WRITE echo byte for byte, epoch and op echoed', async () => {
  handler.reset();
  const c = await RawClient.connect(address);
  const data = pattern(70000, 3);
  c.write(encodeRequest(req({ requestId: 10, op: Op.READ, offset: 12345, length: 5000, epoch: 9 })));
  c.write(encodeRequest(req({ requestId: 11, op: Op.WRITE, length: data.length, payload: data, epoch: 0xffffffff })));
  const rs = await c.waitResponses(2);
  const byId = new Map(rs.map((r) => [r.requestId, r]));
  assert.equal(byId.get(10)?.op, Op.READ);
  assert.equal(byId.get(10)?.epoch, 9);
  assert.ok(byId.get(10)?.payload.equals(pattern(5000, 12345)));
  assert.equal(byId.get(11)?.op, Op.WRITE);
  assert.equal(byId.get(11)?.epoch, 0xffffffff);
  assert.ok(byId.get(11)?.payload.equals(data));
  assert.equal(handler.calls, 2);
  c.destroy();
});

test('malformed but length-valid frames get BAD_REQUEST with their request id; the connection stays usable', async () => {
  handler.reset();
  const good = () => Buffer.from(encodeRequest(req({ requestId: 0 })).subarray(4));
  const cases: [string, (b: Buffer) => Buffer][] = [
    ['bad version', (b) => (b.writeUInt8(PROTOCOL_VERSION + 1, 0), b)],
    ['unknown op', (b) => (b.writeUInt8(99, 1), b)],
    ['unknown flag', (b) => (b.writeUInt16BE(0x100, 2), b)],
    ['bad utf-8 id', (b) => (b.writeUInt8(0xff, 14), b)],
    ['READ with payload', (b) => Buffer.concat([b, Buffer.from([1, 2])])],
    ['truncated header', (b) => b.subarray(0, 12)],
    ['id past end', (b) => (b.writeUInt16BE(400, 12), b)],
    ['offset over 2^53', (b) => (b.writeBigUInt64BE(2n ** 60n, 19), b)],
  ];
  const c = await RawClient.connect(address);
  let id = 100;
  for (const [what, mutate] of cases) {
    id++;
    const body = good();
    body.writeUInt32BE(id, 4);
    const bad = mutate(body);
    c.write(prefixed(bad));
    const [r] = (await c.waitResponses(1)).splice(0);
    assert.equal(r.status, Status.BAD_REQUEST, what);
    assert.equal(r.requestId, id, what);
    assert.equal(r.op, bad.readUInt8(1), `${what}: op echoed`);
    assert.ok(r.payload.length > 0, `${what}: carries a reason`);
    // Still usable: a valid request right after is served.
    c.write(encodeRequest(req({ requestId: id + 1000, offset: id, length: 8 })));
    const [ok] = (await c.waitResponses(1)).splice(0);
    assert.equal(ok.status, Status.OK, `${what}: next request`);
    assert.equal(ok.requestId, id + 1000);
    assert.ok(ok.payload.equals(pattern(8, id)));
  }
  assert.equal(handler.calls, cases.length, 'malformed requests never reach the handler');
  assert.equal(c.isClosed, false);
  c.destroy();
});

test('a READ longer than MAX_IO_BYTES gets BAD_REQUEST without reaching the handler; the connection stays usable', async () => {
  handler.reset();
  const c = await RawClient.connect(address);
  // Pipelined around valid requests, so a refusal must not disturb the answers next to it.
  c.write(encodeRequest(req({ requestId: 1, offset: 5, length: 10 })));
  c.write(encodeRequest(req({ requestId: 2, length: MAX_IO_BYTES + 1, epoch: 77 })));
  c.write(encodeRequest(req({ requestId: 3, length: 0xffffffff })));
  c.write(encodeRequest(req({ requestId: 4, offset: 9, length: MAX_IO_BYTES }))); // the limit itself is allowed
  const rs = await c.waitResponses(4, 10000);
  const byId = new Map(rs.map((r) => [r.requestId, r]));
  assert.equal(byId.size, 4);
  for (const id of [2, 3]) {
    const r = byId.get(id)!;
    assert.equal(r.status, Status.BAD_REQUEST, `id ${id}`);
    assert.equal(r.op, Op.READ);
    assert.equal(r.epoch, 0, 'the server did not look at the segment');
    assert.match(r.payload.toString(), new RegExp(`exceeds ${MAX_IO_BYTES}`));
  }
  assert.equal(byId.get(1)!.status, Status.OK);
  assert.ok(byId.get(1)!.payload.equals(pattern(10, 5)));
  assert.equal(byId.get(4)!.status, Status.OK);
  assert.ok(byId.get(4)!.payload.equals(pattern(MAX_IO_BYTES, 9)));
  assert.equal(handler.calls, 2, 'only the READs within the limit reached the handler');
  // Still the same open connection: a request after the refusals is served.
  c.write(encodeRequest(req({ requestId: 5, offset: 3, length: 7 })));
  const [r5] = (await c.waitResponses(5)).slice(4);
  assert.equal(r5.requestId, 5);
  assert.ok(r5.payload.equals(pattern(7, 3)));
  assert.equal(c.isClosed, false);
  c.destroy();
});

test('a handler answer too big for a frame becomes IO_ERROR for that request; the connection stays usable', async () => {
  handler.reset();
  handler.payload = (r) => (r.op === Op.STAT ? Buffer.alloc(MAX_FRAME_BYTES + 1) : undefined);
  const c = await RawClient.connect(address);
  c.write(encodeRequest(req({ requestId: 1, op: Op.STAT, length: 0, epoch: 3 })));
  c.write(encodeRequest(req({ requestId: 2, offset: 40, length: 50 })));
  const rs = await c.waitResponses(2);
  const byId = new Map(rs.map((r) => [r.requestId, r]));
  assert.equal(byId.get(1)!.status, Status.IO_ERROR);
  assert.equal(byId.get(1)!.op, Op.STAT);
  assert.match(byId.get(1)!.payload.toString(), /exceeds the frame limit/);
  assert.deepEqual(c.frameErrors, [], 'the client never saw an oversized frame');
  assert.equal(byId.get(2)!.status, Status.OK);
  assert.ok(byId.get(2)!.payload.equals(pattern(50, 40)));
  assert.equal(c.isClosed, false);
  c.destroy();
  handler.reset();
});

test('a frame too short to carry a request id closes that connection; the server keeps serving', async () => {
  for (const body of [Buffer.alloc(0), Buffer.from([1, 1, 0, 0, 0, 0, 0])]) {
    const c = await RawClient.connect(address);
    c.write(prefixed(body));
    assert.equal(await c.closesWithin(3000), true);
    assert.equal(c.responses.length, 0);
    await assertServing();
  }
});

test('an oversized length prefix closes the connection without an answer; a new connection is served', async () => {
  handler.reset();
  for (const len of [MAX_FRAME_BYTES + 1, 0xffffffff]) {
    const c = await RawClient.connect(address);
    const h = Buffer.alloc(4);
    h.writeUInt32BE(len);
    c.write(h);
    assert.equal(await c.closesWithin(3000), true, `length ${len}`);
    assert.equal(c.responses.length, 0);
    await assertServing();
  }
  // Split across writes, after a valid request: still closed, and nothing after it is handled.
  const c = await RawClient.connect(address);
  const bad = Buffer.alloc(4);
  bad.writeUInt32BE(MAX_FRAME_BYTES + 1);
  c.write(Buffer.concat([encodeRequest(req({ requestId: 1 })), bad.subarray(0, 2)]));
  await sleep(20);
  c.write(Buffer.concat([bad.subarray(2), encodeRequest(req({ requestId: 2 }))]));
  assert.equal(await c.closesWithin(3000), true);
  assert.ok(c.responses.every((r) => r.requestId === 1));
  await assertServing();
});

test('the handler failing becomes an IO_ERROR response for that id; other requests are unaffected', async () => {
  handler.reset();
  handler.fail = (r) => r.requestId % 2 === 0;
  const c = await RawClient.connect(address);
  for (let id = 1; id <= 10; id++) c.write(encodeRequest(req({ requestId: id, offset: id })));
  const rs = await c.waitResponses(10);
  for (const r of rs) {
    assert.equal(r.status, r.requestId % 2 === 0 ? Status.IO_ERROR : Status.OK, `id ${r.requestId}`);
    if (r.status === Status.OK) assert.ok(r.payload.equals(pattern(16, r.requestId)));
  }
  c.destroy();
  handler.reset();
});

test('many pipelined requests on one connection, completed out of order, all get their own responses', async () => {
  handler.reset();
  // Over the server's per-connection in-flight cap (256), so reading pauses and resumes.
  const N = 1000;
  handler.delay = (r) => (r.requestId * 7919) % 23; // scrambles completion order
  const c = await RawClient.connect(address);
  const sent = new Map<number, Request>();
  const frames: Buffer[] = [];
  for (let i = 0; i < N; i++) {
    const id = 0xffffffff - i * 3; // ids far from small integers, including the max
    const r = i % 3 === 0
      ? req({ requestId: id, op: Op.WRITE, payload: pattern(1 + (i % 700), i), length: 1 + (i % 700), epoch: i })
      : req({ requestId: id, op: Op.READ, offset: i * 4096, length: 1 + (i % 5000), epoch: i });
    sent.set(id, r);
    frames.push(encodeRequest(r));
  }
  // One big write, then re-chunked oddly: framing must not depend on write boundaries.
  const stream = Buffer.concat(frames);
  for (let o = 0; o < stream.length; o += 65521) c.write(stream.subarray(o, o + 65521));
  const rs = await c.waitResponses(N, 20000);
  await sleep(50);
  assert.equal(rs.length, N, 'exactly one response per request');
  const seen = new Set<number>();
  for (const r of rs) {
    const q = sent.get(r.requestId);
    assert.ok(q, `response for unknown id ${r.requestId}`);
    assert.ok(!seen.has(r.requestId), `duplicate response for ${r.requestId}`);
    seen.add(r.requestId);
    assert.equal(r.status, Status.OK);
    assert.equal(r.op, q.op);
    assert.equal(r.epoch, q.epoch);
    const expected = q.op === Op.WRITE ? q.payload : pattern(q.length, q.offset);
    assert.ok(r.payload.equals(expected), `payload for ${r.requestId}`);
  }
  const order = rs.map((r) => r.requestId);
  assert.notDeepEqual(order, [...sent.keys()], 'the test must exercise out-of-order completion');
  c.destroy();
  handler.reset();
});

test('DataConnection over the server: concurrent sends resolve with their own data', async () => {
  handler.reset();
  handler.delay = (r) => (r.requestId * 31) % 11;
  const conn = new DataConnection(address, { requestTimeoutMs: 10000 });
  const results = await Promise.all(Array.from({ length: 300 }, async (_, i) => {
    const res = await conn.send({ op: Op.READ, flags: 0, epoch: 1, segmentId: 'v/1', offset: i * 512, length: 100 + i, payload: Buffer.alloc(0) });
    return res.payload.equals(pattern(100 + i, i * 512));
  }));
  assert.ok(results.every(Boolean));
  conn.close();
  handler.reset();
});

/** A response reduced to what a test can predict: everything but an error's message. */
function answerKey(r: Response): string {
  return `${r.requestId}/${r.op}/${r.status}/${r.epoch}/${r.status === Status.OK ? r.payload.toString('hex') : ''}`;
}

/**
 * What the server must answer to `bytes` with the echo handler, found by parsing the stream the
 * way the protocol says. `fatal`: the stream holds something that closes the connection (a frame
 * too short for a request id, an oversized length prefix); answers still being made are lost
 * then, so only a subset of `answers` is guaranteed.
 */
function expectedAnswers(bytes: Buffer): { answers: string[]; fatal: boolean } {
  const answers: string[] = [];
  let fatal = false;
  const reader = new FrameReader((body) => {
    if (fatal) return; // the server stops reading at the first fatal frame
    if (body.length < 8) {
      fatal = true;
      return;
    }
    let q: Request;
    try {
      q = decodeRequest(body);
    } catch (err) {
      const id = (err as FrameError).requestId!;
      answers.push(answerKey({ op: body.readUInt8(1), status: Status.BAD_REQUEST, requestId: id, epoch: 0, payload: Buffer.alloc(0) }));
      return;
    }
    const refused = q.op === Op.READ && q.length > MAX_IO_BYTES;
    answers.push(answerKey(refused
      ? { op: q.op, status: Status.BAD_REQUEST, requestId: q.requestId, epoch: 0, payload: Buffer.alloc(0) }
      : { op: q.op, status: Status.OK, requestId: q.requestId, epoch: q.epoch, payload: echoPayload(q) }));
  }, () => { fatal = true; });
  reader.push(bytes);
  return { answers, fatal };
}

test('random garbage over many connections never crashes the server and never gets a bogus answer', async () => {
  handler.reset();
  const validBody = fc.record({
    op: fc.constantFrom(Op.READ, Op.WRITE, Op.FLUSH, Op.TRIM, Op.CHECKSUMS, Op.STAT),
    requestId: fc.nat({ max: 0xffffffff }),
    len: fc.nat({ max: 64 }),
  }).map(({ op, requestId, len }) => Buffer.from(encodeRequest(req({ op, requestId, length: len, payload: op === Op.WRITE ? pattern(len, requestId) : Buffer.alloc(0) })).subarray(4)));
  const garbage = fc.oneof(
    // raw noise (its first 4 bytes are some length prefix)
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    // a correct prefix around a random body
    fc.uint8Array({ maxLength: 300 }).map((b) => prefixed(Buffer.from(b))),
    // valid frames with a few bytes overwritten (an overwritten READ length is often far above
    // MAX_IO_BYTES), then possibly noise
    fc.tuple(fc.array(validBody, { minLength: 1, maxLength: 4 }), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 4 }), fc.uint8Array({ maxLength: 20 }))
      .map(([bodies, edits, tail]) => {
        const s = Buffer.concat(bodies.map(prefixed));
        for (const [at, v] of edits) s[4 + (at % (s.length - 4))] = v;
        return Buffer.concat([s, Buffer.from(tail)]);
      }),
  );
  let uncaught: unknown;
  const onUncaught = (e: unknown) => { uncaught = e; };
  process.on('uncaughtException', onUncaught);
  let refusedReads = 0;
  try {
    // No fixed seed: each run explores new inputs. A failure prints its seed; PRESAGE_FC_SEED=<seed>
    // replays it.
    await fc.assert(fc.asyncProperty(garbage, fc.boolean(), async (bytes, splitWrites) => {
      const want = expectedAnswers(bytes);
      const c = await RawClient.connect(address);
      if (splitWrites) for (let o = 0; o < bytes.length; o += 7) c.write(bytes.subarray(o, o + 7));
      else c.write(bytes);
      c.sock.end();
      // The server ends its side once ours is ended (no half-open), so this always closes.
      assert.equal(await c.closesWithin(3000), true, 'connection did not close');
      assert.deepEqual(c.frameErrors, []);
      const got = c.responses.map(answerKey).sort();
      refusedReads += c.responses.filter((r) => r.op === Op.READ && r.status === Status.BAD_REQUEST && r.payload.toString().includes('exceeds')).length;
      if (!want.fatal) {
        assert.deepEqual(got, [...want.answers].sort(), 'exactly the predicted answers');
      } else {
        // Closed early: every answer that did come must be one the stream asked for, once.
        const left = [...want.answers];
        for (const k of got) {
          const i = left.indexOf(k);
          assert.ok(i >= 0, `unexpected answer ${k}`);
          left.splice(i, 1);
        }
      }
    }), { numRuns: 150, ...(process.env.PRESAGE_FC_SEED ? { seed: Number(process.env.PRESAGE_FC_SEED) } : {}) });
  } finally {
    process.off('uncaughtException', onUncaught);
  }
  assert.equal(uncaught, undefined);
  await assertServing();
  // Not asserted > 0: whether a run generates an oversized READ is up to the seed; the focused
  // test above covers it every time. Logged to show what a run exercised.
  console.log(`# property run: ${refusedReads} oversized READs refused`);
});

// A peer that pipelines READs and never reads the answers must not make the server buffer every
// response in memory: the server stops reading its requests until the responses drain.
test('a peer that does not read its responses makes the server stop reading (bounded memory)', async () => {
  handler.reset();
  const c = await RawClient.connect(address);
  c.sock.pause(); // never read: the kernel buffers fill, then the server's user-space buffer would
  const N = 200;
  const frames = Array.from({ length: N }, (_, i) => encodeRequest(req({ requestId: i + 1, length: 1024 * 1024 })));
  c.write(Buffer.concat(frames));
  await sleep(1500);
  const handled = handler.calls;
  c.destroy();
  handler.reset();
  // 200 MiB of responses cannot fit in socket buffers: a server applying backpressure stops early.
  assert.ok(handled < N / 2, `server handled ${handled} of ${N} 1 MiB READs for a peer that reads nothing`);
});

test('a flood of partial frames stays within the server-wide budget; the biggest holders are closed and a real client\'s write still completes', async () => {
  const MiB = 1024 * 1024;
  const budget = 8 * MiB;
  const h = new EchoHandler();
  const small = new DataServer(h.handle, silentLogger, { partialFrameBudgetBytes: budget });
  const addr = await small.listen('127.0.0.1', 0);
  try {
    // 12 peers each announce a 7 MiB frame and send 3 MiB of it, then nothing.
    const flood = await Promise.all(Array.from({ length: 12 }, () => RawClient.connect(addr)));
    const head = Buffer.alloc(4);
    head.writeUInt32BE(7 * MiB);
    for (const f of flood) f.write(Buffer.concat([head, Buffer.alloc(3 * MiB, 0xee)]));
    await sleep(500);
    assert.ok(small.partialFrames.total <= budget, `incomplete frames hold ${small.partialFrames.total} bytes, over the ${budget} budget`);
    const closed = (await Promise.all(flood.map((f) => f.closesWithin(2000)))).filter(Boolean).length;
    assert.ok(closed >= 12 - Math.floor(budget / (3 * MiB)), `only ${closed} flooding connections were closed`);
    // A real client's 1 MiB write, sent in two halves so it too is incomplete for a while.
    const c = await RawClient.connect(addr);
    const data = pattern(MiB, 5);
    const frame = encodeRequest(req({ op: Op.WRITE, requestId: 77, length: MiB, payload: data }));
    c.write(frame.subarray(0, frame.length >> 1));
    await sleep(100);
    c.write(frame.subarray(frame.length >> 1));
    const [res] = await c.waitResponses(1);
    assert.equal(res!.status, Status.OK);
    assert.ok(res!.payload.equals(data), 'the write went through whole');
    c.destroy();
    for (const f of flood) f.destroy();
    await sleep(100);
    assert.equal(small.partialFrames.total, 0, 'closed connections release what they held');
  } finally {
    await small.close();
  }
});

test('requests being handled hold at most the server-wide in-flight budget; over it, connections wait (no error) and every write completes whole', async () => {
  const KiB = 1024;
  const budget = 2 * 1024 * KiB;
  let active = 0;
  let peak = 0;
  let peakBytes = 0;
  const gate: (() => void)[] = [];
  const small: DataServer = new DataServer(async (r) => {
    active++;
    peak = Math.max(peak, active);
    peakBytes = Math.max(peakBytes, small.inFlightBytes.used);
    await new Promise<void>((resolve) => gate.push(resolve));
    active--;
    return { op: r.op, status: Status.OK, requestId: r.requestId, epoch: r.epoch, payload: echoPayload(r) };
  }, silentLogger, { inFlightBudgetBytes: budget });
  const addr = await small.listen('127.0.0.1', 0);
  try {
    // 3 connections each pipeline 4 writes of 512 KiB: 6 MiB asked, 2 MiB allowed at once.
    const conns = await Promise.all([0, 1, 2].map(() => RawClient.connect(addr)));
    const data = (c: number, i: number) => pattern(512 * KiB, 1000 * c + i + 1);
    conns.forEach((c, ci) => c.write(Buffer.concat([0, 1, 2, 3].map((i) => encodeRequest(req({ op: Op.WRITE, requestId: i + 1, length: 512 * KiB, payload: data(ci, i) }))))));
    await sleep(400);
    assert.ok(small.inFlightBytes.used <= budget, `requests hold ${small.inFlightBytes.used} bytes, over the ${budget} budget`);
    assert.equal(active, 3, 'as many 512 KiB writes as fit in 2 MiB are being handled; the rest wait');
    assert.ok(small.inFlightBytes.waits > 0, 'connections waited for room');
    // Release them as they come: everything completes, in order per connection, byte for byte.
    const releaser = setInterval(() => gate.splice(0).forEach((g) => g()), 20);
    try {
      for (const [ci, c] of conns.entries()) {
        const res = await c.waitResponses(4, 10000);
        assert.deepEqual(res.map((r) => r.status), [Status.OK, Status.OK, Status.OK, Status.OK]);
        res.forEach((r, i) => assert.ok(r.payload.equals(data(ci, r.requestId - 1)), `connection ${ci} write ${i} echoed whole`));
      }
    } finally {
      clearInterval(releaser);
    }
    assert.ok(peak <= 3 && peakBytes <= budget, `at most 3 handled at once (peak ${peak}, ${peakBytes} bytes)`);
    assert.equal(small.inFlightBytes.used, 0, 'every request gave its bytes back');
    for (const c of conns) c.destroy();
    // One request bigger than the whole budget still goes through (alone).
    const tiny = new DataServer(handler.handle, silentLogger, { inFlightBudgetBytes: 1024 });
    const a2 = await tiny.listen('127.0.0.1', 0);
    try {
      const c = await RawClient.connect(a2);
      const big = pattern(64 * KiB, 9);
      c.write(encodeRequest(req({ op: Op.WRITE, requestId: 5, length: big.length, payload: big })));
      const [r] = await c.waitResponses(1);
      assert.ok(r!.status === Status.OK && r!.payload.equals(big));
      c.destroy();
    } finally {
      await tiny.close();
    }
  } finally {
    gate.splice(0).forEach((g) => g());
    await small.close();
  }
});
