// The send path's framing (head encoders + payload as a second buffer, written through a
// CoalescingWriter that batches a turn's frames into one writev) against the behaviour of the
// decoder as it was before: the bytes must be exactly the one-buffer frames the protocol layout
// defines (a reference encoder written here from messages.ts, as codec.ts encoded them before
// the head/payload split), and a real loopback socket must deliver, for random frames grouped in
// random event-loop turns and mixed with malformed ones, the very requests and errors that the
// decoder gives for those bytes handed over in one piece.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { CoalescingWriter } from '../common/coalescing-writer.ts';
import { FrameReader, decodeRequest, decodeResponse, encodeRequestHead, encodeResponseHead } from './codec.ts';
import { Flag, OP_NAMES, Op, PROTOCOL_VERSION, Status, type Request, type Response } from './messages.ts';

const ALL_OPS = Object.keys(OP_NAMES).map(Number) as Op[];
const KNOWN_FLAGS = Flag.FUA | Flag.FORWARDED | Flag.COPY | Flag.RECORDED;

/** The request frame as the layout in messages.ts defines it, in one buffer (the pre-split encoder). */
function referenceRequest(req: Request): Buffer {
  const id = Buffer.from(req.segmentId, 'utf8');
  const fixed = 1 + 1 + 2 + 4 + 4 + 2 + id.length + 8 + 4;
  const b = Buffer.alloc(4 + fixed + req.payload.length);
  let o = b.writeUInt32BE(fixed + req.payload.length, 0);
  o = b.writeUInt8(PROTOCOL_VERSION, o);
  o = b.writeUInt8(req.op, o);
  o = b.writeUInt16BE(req.flags, o);
  o = b.writeUInt32BE(req.requestId, o);
  o = b.writeUInt32BE(req.epoch, o);
  o = b.writeUInt16BE(id.length, o);
  o += id.copy(b, o);
  o = b.writeBigUInt64BE(BigInt(req.offset), o);
  o = b.writeUInt32BE(req.length, o);
  req.payload.copy(b, o);
  return b;
}

/** The response frame as the layout defines it, in one buffer. */
function referenceResponse(res: Response): Buffer {
  const b = Buffer.alloc(4 + 12 + res.payload.length);
  let o = b.writeUInt32BE(12 + res.payload.length, 0);
  o = b.writeUInt8(PROTOCOL_VERSION, o);
  o = b.writeUInt8(res.op, o);
  o = b.writeUInt8(res.status, o);
  o = b.writeUInt8(0, o);
  o = b.writeUInt32BE(res.requestId, o);
  o = b.writeUInt32BE(res.epoch, o);
  res.payload.copy(b, o);
  return b;
}

const payloadArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 70_000 }))
  .chain((len) => fc.integer().map((seed) => Buffer.alloc(len, seed & 0xff)));

const requestArb: fc.Arbitrary<Request> = fc.record({
  op: fc.constantFrom(...ALL_OPS),
  flags: fc.nat({ max: KNOWN_FLAGS }).map((f) => f & KNOWN_FLAGS),
  requestId: fc.nat({ max: 0xffffffff }),
  epoch: fc.nat({ max: 0xffffffff }),
  segmentId: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => Buffer.byteLength(s) <= 255),
  offset: fc.maxSafeNat(),
  length: fc.nat({ max: 0xffffffff }),
  payload: payloadArb,
}).map((r) => (r.op === Op.WRITE ? { ...r, length: r.payload.length }
  // AUTH carries a nonce or a proof (at most 64 bytes) and no length.
  : r.op === Op.AUTH ? { ...r, length: 0, payload: r.payload.subarray(0, 64) }
    : { ...r, payload: Buffer.alloc(0) }));

const responseArb: fc.Arbitrary<Response> = fc.record({
  op: fc.constantFrom(...ALL_OPS),
  status: fc.constantFrom(Status.OK, Status.STALE, Status.NOT_OWNER, Status.CORRUPT, Status.IO_ERROR),
  requestId: fc.nat({ max: 0xffffffff }),
  epoch: fc.nat({ max: 0xffffffff }),
  payload: payloadArb,
});

test('head + payload is byte for byte the one-buffer request frame of the protocol layout', () => {
  fc.assert(fc.property(requestArb, (req) => {
    assert.ok(Buffer.concat([encodeRequestHead(req), req.payload]).equals(referenceRequest(req)));
  }), { numRuns: 400 });
});

test('head + payload is byte for byte the one-buffer response frame of the protocol layout', () => {
  fc.assert(fc.property(responseArb, (res) => {
    assert.ok(Buffer.concat([encodeResponseHead(res), res.payload]).equals(referenceResponse(res)));
  }), { numRuns: 400 });
});

/** What the decoder makes of a byte stream: each frame's request, or its error message; then any stream error. */
function decodeAll(chunks: Buffer[]): string[] {
  const out: string[] = [];
  const reader = new FrameReader((body) => {
    try {
      const r = decodeRequest(body);
      out.push(JSON.stringify({ ...r, payload: r.payload.toString('hex') }));
    } catch (err) {
      out.push(`error: ${(err as Error).message}`);
    }
  }, (err) => out.push(`stream: ${err.message}`));
  for (const c of chunks) reader.push(c);
  return out;
}

/** One item to send: a valid request, or a valid frame with body bytes overwritten (malformed). */
type Item = { req: Request; corrupt?: { at: number; byte: number }[] };
const itemArb: fc.Arbitrary<Item> = fc.record({
  req: requestArb,
  corrupt: fc.option(fc.array(fc.record({ at: fc.nat(), byte: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 4 }), { nil: undefined }),
});

/** The item's bytes as the reference encoder gives them (corruption applied to the body only, so the stream stays in sync). */
function itemBytes(item: Item): Buffer {
  const b = referenceRequest(item.req);
  for (const c of item.corrupt ?? []) b[4 + (c.at % (b.length - 4))] = c.byte;
  return b;
}

test('a real socket delivers random and malformed frames, batched per turn by the CoalescingWriter, exactly as the decoder reads the same bytes in one piece', async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.array(itemArb, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 8 }),
      async (turns) => {
        const items = turns.flat();
        const expected = decodeAll([Buffer.concat(items.map(itemBytes))]);
        const total = items.reduce((n, it) => n + itemBytes(it).length, 0);
        const received: Buffer[] = [];
        const arrived = new Promise<void>((resolve) => {
          server.once('connection', (s) => {
            let n = 0;
            s.on('data', (c: Buffer) => {
              received.push(c);
              n += c.length;
              if (n >= total) resolve();
            });
          });
        });
        const sock = net.connect(port, '127.0.0.1');
        await new Promise<void>((r) => sock.once('connect', r));
        sock.setNoDelay(true);
        const out = new CoalescingWriter(sock);
        for (const turn of turns) {
          for (const it of turn) {
            if (it.corrupt) out.write(itemBytes(it)); // malformed: raw bytes, as a peer might send
            else out.writeFrame(encodeRequestHead(it.req), it.req.payload);
          }
          await new Promise((r) => setImmediate(r)); // the next turn
        }
        await arrived;
        sock.destroy();
        assert.deepEqual(decodeAll(received), expected);
      },
    ), { numRuns: 40 });
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test('responses through the CoalescingWriter decode to what was sent, in order', async () => {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    await fc.assert(fc.asyncProperty(fc.array(responseArb, { minLength: 1, maxLength: 30 }), async (responses) => {
      const got: Response[] = [];
      const done = new Promise<void>((resolve, reject) => {
        server.once('connection', (s) => {
          const reader = new FrameReader((body) => {
            got.push(decodeResponse(body));
            if (got.length === responses.length) resolve();
          }, reject);
          s.on('data', (c: Buffer) => reader.push(c));
        });
      });
      const sock = net.connect(port, '127.0.0.1');
      await new Promise<void>((r) => sock.once('connect', r));
      const out = new CoalescingWriter(sock);
      for (const res of responses) out.writeFrame(encodeResponseHead(res), res.payload);
      await done;
      sock.destroy();
      assert.equal(got.length, responses.length);
      got.forEach((g, i) => {
        const want = responses[i]!;
        assert.deepEqual({ ...g, payload: g.payload.toString('hex') }, { ...want, payload: want.payload.toString('hex') });
      });
    }), { numRuns: 40 });
  } finally {
    await new Promise((r) => server.close(r));
  }
});
