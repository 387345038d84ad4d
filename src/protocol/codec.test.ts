import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FrameError, FrameReader, decodeChecksums, decodeRequest, decodeResponse, encodeChecksums, encodeRequest, encodeResponse,
} from './codec.ts';
import { Flag, MAX_FRAME_BYTES, MAX_SEGMENT_ID_BYTES, OP_NAMES, Op, PROTOCOL_VERSION, Status, type Request, type Response } from './messages.ts';

// Offsets of the request header fields (see the layout at the top of messages.ts).
const REQUEST_FIXED = 26; // version..length, without segment id and payload
const MAX_U32 = 0xffffffff;
// Derived from messages.ts so that adding an op or a flag there keeps these tests meaningful.
const ALL_OPS = Object.keys(OP_NAMES).map(Number) as Op[];
const UNKNOWN_OPS = [0, 10, 99, 128, 255].concat(ALL_OPS.map((o) => o + 1)).filter((o) => o <= 255 && !(o in OP_NAMES));
const KNOWN_FLAGS = Object.values(Flag).filter((v): v is number => typeof v === 'number').reduce((a, b) => a | b, 0);
const UNKNOWN_FLAG_BITS = Array.from({ length: 16 }, (_, i) => 1 << i).filter((b) => !(b & KNOWN_FLAGS));
const ALL_STATUSES = [Status.OK, Status.STALE, Status.NOT_OWNER, Status.CORRUPT, Status.OUT_OF_RANGE, Status.BAD_REQUEST, Status.UNAVAILABLE, Status.IO_ERROR];

/** Deterministic filler: generating 64 KiB arrays element by element would make the properties slow. */
function bytes(len: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  let x = (seed | 0) || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const payloadArb = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 1, max: 64 }),
  fc.integer({ min: 0, max: 64 * 1024 }),
  fc.constant(64 * 1024),
).chain((len) => fc.integer().map((seed) => bytes(len, seed)));

// Segment ids: any valid unicode (no lone surrogates), 1..MAX_SEGMENT_ID_BYTES utf-8 bytes,
// with exact-maximum ids made on purpose (random strings rarely hit the limit).
const segmentIdArb = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 200 }),
  fc.constantFrom('a'.repeat(MAX_SEGMENT_ID_BYTES), 'é'.repeat(MAX_SEGMENT_ID_BYTES / 2), '\u{1F600}'.repeat(MAX_SEGMENT_ID_BYTES / 4), 'vol/0', '\0'),
).filter((s) => Buffer.byteLength(s, 'utf8') <= MAX_SEGMENT_ID_BYTES);

const u32Arb = fc.oneof(fc.constantFrom(0, 1, MAX_U32, MAX_U32 - 1, 0x7fffffff, 0x80000000), fc.nat({ max: MAX_U32 }));
const offsetArb = fc.oneof(fc.constantFrom(0, Number.MAX_SAFE_INTEGER, 2 ** 32, 2 ** 32 - 1), fc.maxSafeNat(), fc.nat());

const requestArb: fc.Arbitrary<Request> = fc.record({
  op: fc.constantFrom(...ALL_OPS),
  flags: fc.nat({ max: KNOWN_FLAGS }).map((f) => f & KNOWN_FLAGS),
  requestId: u32Arb,
  epoch: u32Arb,
  segmentId: segmentIdArb,
  offset: offsetArb,
  length: u32Arb,
  payload: payloadArb,
}).map((r) => (r.op === Op.WRITE ? { ...r, length: r.payload.length }
  // AUTH carries a nonce or a proof (at most 64 bytes) and no length.
  : r.op === Op.AUTH ? { ...r, length: 0, payload: r.payload.subarray(0, 64) }
    : { ...r, payload: Buffer.alloc(0) }));

const responseArb: fc.Arbitrary<Response> = fc.record({
  op: fc.constantFrom(...ALL_OPS),
  status: fc.constantFrom(...ALL_STATUSES),
  requestId: u32Arb,
  epoch: u32Arb,
  payload: payloadArb,
});

function body(frame: Buffer): Buffer {
  assert.equal(frame.readUInt32BE(0), frame.length - 4, 'length prefix must equal the body length');
  return frame.subarray(4);
}

function assertSameRequest(actual: Request, expected: Request): void {
  assert.deepEqual({ ...actual, payload: undefined }, { ...expected, payload: undefined });
  assert.ok(actual.payload.equals(expected.payload), 'payload differs');
}

/** Asserts `fn` throws a FrameError (and nothing else) and returns it. */
function frameError(fn: () => unknown): FrameError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof FrameError, `expected FrameError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
    return err;
  }
  assert.fail('expected a FrameError, nothing was thrown');
}

/** A valid request body with the given header fields overridden (for targeted malformed cases). */
function validBody(over: Partial<Request> = {}): Buffer {
  return Buffer.from(body(encodeRequest({
    op: Op.READ, flags: 0, requestId: 0xabcdef01, epoch: 7, segmentId: 'vol/3', offset: 4096, length: 4096, payload: Buffer.alloc(0), ...over,
  })));
}

// ---------------------------------------------------------------------------------------------
// Round trips

test('request round trip: encode then decode gives the same request, re-encoding gives the same bytes', () => {
  fc.assert(fc.property(requestArb, (req) => {
    const frame = encodeRequest(req);
    const decoded = decodeRequest(body(frame));
    assertSameRequest(decoded, req);
    assert.ok(encodeRequest(decoded).equals(frame));
  }), { numRuns: 400 });
});

test('response round trip for every op and status', () => {
  fc.assert(fc.property(responseArb, (res) => {
    const frame = encodeResponse(res);
    const decoded = decodeResponse(body(frame));
    assert.deepEqual({ ...decoded, payload: undefined }, { ...res, payload: undefined });
    assert.ok(decoded.payload.equals(res.payload));
    assert.ok(encodeResponse(decoded).equals(frame));
  }), { numRuns: 300 });
});

test('request edges: max request id, max epoch, offset 2^53-1, max-length segment id, empty and 64 KiB WRITE', () => {
  for (const segmentId of ['x'.repeat(MAX_SEGMENT_ID_BYTES), 'ü'.repeat(MAX_SEGMENT_ID_BYTES / 2)]) {
    for (const payload of [Buffer.alloc(0), bytes(65536, 3)]) {
      const req: Request = { op: Op.WRITE, flags: KNOWN_FLAGS, requestId: MAX_U32, epoch: MAX_U32, segmentId, offset: Number.MAX_SAFE_INTEGER, length: payload.length, payload };
      const frame = encodeRequest(req);
      assert.equal(frame.length, 4 + REQUEST_FIXED + MAX_SEGMENT_ID_BYTES + payload.length);
      assertSameRequest(decodeRequest(body(frame)), req);
    }
  }
});

test('the largest frame that fits MAX_FRAME_BYTES encodes and decodes; one byte more is a FrameError', () => {
  const segmentId = 'v/0';
  const room = MAX_FRAME_BYTES - REQUEST_FIXED - segmentId.length;
  const payload = bytes(room, 9);
  const req: Request = { op: Op.WRITE, flags: 0, requestId: 5, epoch: 1, segmentId, offset: 0, length: room, payload };
  const frame = encodeRequest(req);
  assert.equal(frame.length, 4 + MAX_FRAME_BYTES);
  assertSameRequest(decodeRequest(body(frame)), req);
  frameError(() => encodeRequest({ ...req, payload: bytes(room + 1, 9), length: room + 1 }));
});

test('encodeRequest rejects a segment id over the limit with FrameError', () => {
  frameError(() => encodeRequest({ op: Op.READ, flags: 0, requestId: 1, epoch: 1, segmentId: 'a'.repeat(MAX_SEGMENT_ID_BYTES + 1), offset: 0, length: 1, payload: Buffer.alloc(0) }));
  // Multi-byte characters count in bytes, not characters.
  frameError(() => encodeRequest({ op: Op.READ, flags: 0, requestId: 1, epoch: 1, segmentId: 'é'.repeat(MAX_SEGMENT_ID_BYTES / 2 + 1), offset: 0, length: 1, payload: Buffer.alloc(0) }));
});

// encodeRequest refuses every field that would otherwise go on the wire as a *different* request
// (silent wrong answer), produce a frame the decoder rejects, or fail with a RangeError.
const encoderGaps: [string, Partial<Request>][] = [
  ['empty segment id (decoder rejects id length 0)', { segmentId: '' }],
  ['lone surrogate in segment id (silently becomes U+FFFD)', { segmentId: 'v/\uD800' }],
  ['request id 2^32 (silently wraps to 0)', { requestId: 2 ** 32 }],
  ['epoch 2^32+1 (silently wraps to 1)', { epoch: 2 ** 32 + 1 }],
  ['length 2^32+5 (silently wraps to 5)', { length: 2 ** 32 + 5 }],
  ['negative offset (RangeError)', { offset: -1 }],
  ['fractional offset (RangeError)', { offset: 1.5 }],
  ['offset 2^53 (encoded; decoder rejects)', { offset: 2 ** 53 }],
  ['WRITE length differing from payload (decoder rejects)', { op: Op.WRITE, length: 10, payload: Buffer.alloc(3) }],
  ['unknown flag bit (decoder rejects)', { flags: 1 << 15 }],
  ['flags over 16 bits (RangeError)', { flags: 1 << 16 }],
  ['unknown op (decoder rejects)', { op: 200 as Op }],
];
for (const [what, over] of encoderGaps) {
  test(`encodeRequest rejects with FrameError: ${what}`, () => {
    const base: Request = { op: Op.READ, flags: 0, requestId: 1, epoch: 1, segmentId: 'v/0', offset: 0, length: 1, payload: Buffer.alloc(0) };
    frameError(() => encodeRequest({ ...base, ...over }));
  });
}

// ---------------------------------------------------------------------------------------------
// Malformed request bodies

test('truncated request bodies: under 8 bytes no request id; from 8 bytes on the id is reported', () => {
  const full = validBody({ requestId: 0x01020304 });
  for (let n = 0; n < full.length; n++) {
    const err = frameError(() => decodeRequest(full.subarray(0, n)));
    if (n < 8) assert.equal(err.requestId, undefined, `length ${n}`);
    else assert.equal(err.requestId, 0x01020304, `length ${n}`);
  }
  // The same for a WRITE, whose truncation inside the payload is a length mismatch.
  const w = validBody({ op: Op.WRITE, requestId: 77, payload: bytes(100, 1), length: 100 });
  for (let n = 8; n < w.length; n++) assert.equal(frameError(() => decodeRequest(w.subarray(0, n))).requestId, 77);
});

test('bad version, unknown op, unknown flags give FrameError with the request id', () => {
  for (const version of [0, 2, 255]) {
    const b = validBody({ requestId: 11 });
    b.writeUInt8(version, 0);
    assert.equal(frameError(() => decodeRequest(b)).requestId, 11, `version ${version}`);
  }
  assert.ok(UNKNOWN_OPS.length >= 3);
  for (const op of UNKNOWN_OPS) {
    const b = validBody({ requestId: 12 });
    b.writeUInt8(op, 1);
    const err = frameError(() => decodeRequest(b));
    assert.equal(err.requestId, 12);
    assert.match(err.message, /op/);
  }
  assert.ok(UNKNOWN_FLAG_BITS.length > 0);
  for (const flags of [...UNKNOWN_FLAG_BITS, 0xffff, Flag.FUA | UNKNOWN_FLAG_BITS[0]]) {
    const b = validBody({ requestId: 13 });
    b.writeUInt16BE(flags, 2);
    const err = frameError(() => decodeRequest(b));
    assert.equal(err.requestId, 13);
    assert.match(err.message, /flag/);
  }
});

test('segment id: zero length, over the limit, past the end of the frame, invalid utf-8', () => {
  const withId = (idBytes: Buffer, declared = idBytes.length) => {
    const b = Buffer.alloc(REQUEST_FIXED + idBytes.length);
    b.writeUInt8(PROTOCOL_VERSION, 0);
    b.writeUInt8(Op.READ, 1);
    b.writeUInt32BE(99, 4);
    b.writeUInt16BE(declared, 12);
    idBytes.copy(b, 14);
    return b;
  };
  assert.deepEqual(decodeRequest(withId(Buffer.from('ok'))).segmentId, 'ok'); // the helper builds valid bodies
  assert.equal(frameError(() => decodeRequest(withId(Buffer.alloc(0)))).requestId, 99);
  assert.equal(frameError(() => decodeRequest(withId(Buffer.alloc(MAX_SEGMENT_ID_BYTES + 1, 0x61)))).requestId, 99);
  assert.equal(frameError(() => decodeRequest(withId(Buffer.from('abc'), 200))).requestId, 99);
  const badUtf8 = [
    [0xff], [0xfe], [0x61, 0x80], [0xc3], [0xc3, 0x28], [0xc0, 0x80] /* overlong NUL */, [0xe0, 0x80, 0x80],
    [0xed, 0xa0, 0x80] /* encoded surrogate */, [0xf4, 0x90, 0x80, 0x80] /* > U+10FFFF */, [0xf0, 0x9f, 0x98] /* cut 4-byte */,
  ];
  for (const seq of badUtf8) {
    const err = frameError(() => decodeRequest(withId(Buffer.from(seq))));
    assert.equal(err.requestId, 99, `bytes ${seq}`);
    assert.match(err.message, /utf-8/);
  }
  // A byte order mark is a valid character and must survive as one.
  assert.equal(decodeRequest(withId(Buffer.from([0xef, 0xbb, 0xbf, 0x61]))).segmentId, '\uFEFFa');
});

test('payload length mismatch: WRITE with more or fewer bytes than declared, non-WRITE with a payload', () => {
  const w = validBody({ op: Op.WRITE, requestId: 21, payload: bytes(10, 2), length: 10 });
  const lenAt = w.length - 10 - 4;
  for (const declared of [0, 9, 11, MAX_U32]) {
    const b = Buffer.from(w);
    b.writeUInt32BE(declared, lenAt);
    assert.equal(frameError(() => decodeRequest(b)).requestId, 21, `declared ${declared}`);
  }
  assert.equal(frameError(() => decodeRequest(Buffer.concat([w, Buffer.from([0])]))).requestId, 21);
  for (const op of ALL_OPS.filter((o) => o !== Op.WRITE && o !== Op.AUTH)) {
    const b = Buffer.concat([validBody({ op, requestId: 22 }), Buffer.from([1])]);
    assert.equal(frameError(() => decodeRequest(b)).requestId, 22, `op ${op}`);
  }
  // AUTH: up to 64 bytes of nonce or proof and no length; more, or a length, is malformed.
  const auth = validBody({ op: Op.AUTH, requestId: 23, length: 0, payload: bytes(32, 3) });
  assert.equal(decodeRequest(auth).payload.length, 32);
  assert.equal(frameError(() => decodeRequest(Buffer.concat([auth, bytes(33, 4)]))).requestId, 23);
  const withLength = Buffer.from(auth);
  withLength.writeUInt32BE(1, auth.length - 32 - 4);
  assert.equal(frameError(() => decodeRequest(withLength)).requestId, 23);
  assert.throws(() => encodeRequest({ op: Op.AUTH, flags: 0, requestId: 1, epoch: 0, segmentId: 'a', offset: 0, length: 0, payload: bytes(65, 1) }), FrameError);
});

test('offset above 2^53-1 is rejected (never rounded)', () => {
  for (const big of [2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 1n]) {
    const b = validBody({ requestId: 31, segmentId: 's' });
    b.writeBigUInt64BE(big, 14 + 1);
    assert.equal(frameError(() => decodeRequest(b)).requestId, 31);
  }
});

test('garbage bodies: decodeRequest throws only FrameError, or returns a request that re-encodes to the same bytes', () => {
  const check = (b: Uint8Array) => {
    const buf = Buffer.from(b);
    let req: Request;
    try {
      req = decodeRequest(buf);
    } catch (err) {
      assert.ok(err instanceof FrameError, `threw ${(err as Error)?.name}: ${(err as Error)?.message}`);
      if (buf.length >= 8) assert.equal(err.requestId, buf.readUInt32BE(4));
      else assert.equal(err.requestId, undefined);
      return;
    }
    assert.ok(body(encodeRequest(req)).equals(buf), 'decoded a request that encodes differently: a silent wrong answer');
  };
  // Pure noise: almost always rejected early.
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), check), { numRuns: 500 });
  // Valid bodies with a few bytes mutated, cut or extended: these reach the deep checks.
  const mutated = fc.tuple(
    requestArb.filter((r) => r.payload.length <= 256),
    fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }),
    fc.integer({ min: -8, max: 8 }),
  ).map(([req, edits, resize]) => {
    let b = Buffer.from(body(encodeRequest(req)));
    for (const [at, v] of edits) b[at % REQUEST_FIXED < 14 ? at % 14 : at % b.length] = v;
    if (resize < 0) b = b.subarray(0, Math.max(0, b.length + resize));
    else if (resize > 0) b = Buffer.concat([b, bytes(resize, resize)]);
    return new Uint8Array(b);
  });
  fc.assert(fc.property(mutated, check), { numRuns: 1500 });
});

// ---------------------------------------------------------------------------------------------
// Responses

test('malformed responses: too short, bad version (with id), unknown status (with id)', () => {
  const ok = body(encodeResponse({ op: Op.READ, status: Status.OK, requestId: 41, epoch: 3, payload: Buffer.from('hi') }));
  for (let n = 0; n < 12; n++) frameError(() => decodeResponse(ok.subarray(0, n)));
  const v = Buffer.from(ok);
  v.writeUInt8(2, 0);
  assert.equal(frameError(() => decodeResponse(v)).requestId, 41);
  for (const status of [Status.NO_SPACE + 1, 12, 200, 255]) {
    const s = Buffer.from(ok);
    s.writeUInt8(status, 2);
    assert.equal(frameError(() => decodeResponse(s)).requestId, 41);
  }
});

test('garbage responses: decodeResponse throws only FrameError', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
    try {
      const res = decodeResponse(Buffer.from(b));
      assert.ok(res.status in Status);
    } catch (err) {
      assert.ok(err instanceof FrameError, `threw ${(err as Error)?.name}`);
    }
  }), { numRuns: 500 });
});

// ---------------------------------------------------------------------------------------------
// FrameReader

function collect(maxFrame?: number) {
  const frames: Buffer[] = [];
  const errors: FrameError[] = [];
  // Copy each body: the reader may hand out views of buffers the caller later reuses.
  const reader = new FrameReader((b) => frames.push(Buffer.from(b)), (e) => errors.push(e), maxFrame);
  return { reader, frames, errors };
}

const prefixed = (b: Buffer) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length);
  return Buffer.concat([h, b]);
};

test('FrameReader: every split point of a stream yields the same frames in order', () => {
  const bodies = [Buffer.alloc(0), Buffer.from([1]), bytes(3, 1), bytes(4, 2), bytes(5, 3), Buffer.alloc(0), bytes(40, 4)];
  const stream = Buffer.concat(bodies.map(prefixed));
  for (let i = 0; i <= stream.length; i++) {
    for (const j of [i, Math.min(stream.length, i + 1), Math.min(stream.length, i + 5)]) {
      const { reader, frames, errors } = collect();
      reader.push(stream.subarray(0, i));
      reader.push(stream.subarray(i, j));
      reader.push(stream.subarray(j));
      assert.deepEqual(frames, bodies, `split at ${i}/${j}`);
      assert.equal(errors.length, 0);
    }
  }
  // Byte by byte.
  const { reader, frames } = collect();
  for (let i = 0; i < stream.length; i++) reader.push(stream.subarray(i, i + 1));
  assert.deepEqual(frames, bodies);
});

test('FrameReader: random chunkings of a random stream reassemble all frames, in order', () => {
  const arb = fc.tuple(
    fc.array(fc.oneof(fc.nat({ max: 40 }), fc.nat({ max: 5000 })).chain((n) => fc.integer().map((s) => bytes(n, s))), { maxLength: 25 }),
    fc.array(fc.nat(), { maxLength: 60 }),
  );
  fc.assert(fc.property(arb, ([bodies, cuts]) => {
    const stream = Buffer.concat(bodies.map(prefixed));
    const points = [...new Set(cuts.map((c) => (stream.length ? c % (stream.length + 1) : 0)))].sort((a, b) => a - b);
    const { reader, frames, errors } = collect();
    let prev = 0;
    for (const p of [...points, stream.length]) {
      reader.push(stream.subarray(prev, p)); // includes empty chunks on repeated points
      prev = p;
    }
    assert.equal(errors.length, 0);
    assert.equal(frames.length, bodies.length);
    frames.forEach((f, i) => assert.ok(f.equals(bodies[i]), `frame ${i}`));
  }), { numRuns: 300 });
});

test('FrameReader: an incomplete frame is held back until its last byte arrives', () => {
  const { reader, frames } = collect();
  const s = prefixed(bytes(100, 5));
  reader.push(s.subarray(0, 103));
  assert.equal(frames.length, 0);
  reader.push(s.subarray(103));
  assert.equal(frames.length, 1);
  assert.ok(frames[0].equals(bytes(100, 5)));
});

test('FrameReader: an oversized length prefix calls onError once and nothing after, even for valid frames', () => {
  for (const split of [false, true]) {
    const { reader, frames, errors } = collect(100);
    const good = prefixed(bytes(100, 1)); // exactly the limit: accepted
    const bad = Buffer.alloc(4);
    bad.writeUInt32BE(101);
    const stream = Buffer.concat([good, good, bad, good, prefixed(Buffer.alloc(0))]);
    if (split) for (let i = 0; i < stream.length; i += 3) reader.push(stream.subarray(i, i + 3));
    else reader.push(stream);
    reader.push(good);
    reader.push(bad);
    assert.equal(frames.length, 2, 'the frames before the bad prefix are delivered');
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof FrameError);
    assert.match(errors[0].message, /101/);
  }
  // Default limit: MAX_FRAME_BYTES is allowed (it waits for the body), one more is not.
  for (const [len, fails] of [[MAX_FRAME_BYTES, false], [MAX_FRAME_BYTES + 1, true], [MAX_U32, true]] as const) {
    const { reader, frames, errors } = collect();
    const h = Buffer.alloc(4);
    h.writeUInt32BE(len);
    reader.push(h);
    assert.equal(errors.length, fails ? 1 : 0, `length ${len}`);
    assert.equal(frames.length, 0);
  }
});

test('FrameReader: onFrame may throw; the reader stays consistent for the next push', () => {
  const seen: number[] = [];
  const reader = new FrameReader((b) => {
    seen.push(b[0]);
    if (b[0] === 2) throw new Error('handler failed');
  }, () => assert.fail('no frame error expected'));
  const stream = Buffer.concat([1, 2, 3].map((v) => prefixed(Buffer.from([v]))));
  assert.throws(() => reader.push(stream), /handler failed/);
  reader.push(Buffer.alloc(0));
  reader.push(prefixed(Buffer.from([4])));
  assert.deepEqual(seen, [1, 2, 3, 4]);
});

// ---------------------------------------------------------------------------------------------
// CHECKSUMS payload

test('checksums payload round trip', () => {
  fc.assert(fc.property(
    fc.array(fc.nat({ max: MAX_U32 }), { maxLength: 2000 }),
    fc.array(fc.nat({ max: MAX_U32 }), { maxLength: 50 }),
    (sums, corrupt) => {
      const enc = encodeChecksums(Uint32Array.from(sums), corrupt);
      assert.equal(enc.length, 8 + 4 * sums.length + 4 * corrupt.length);
      const dec = decodeChecksums(enc);
      assert.deepEqual([...dec.sums], sums);
      assert.deepEqual(dec.corrupt, corrupt);
    },
  ), { numRuns: 200 });
});

test('checksums payload: too short, truncated, trailing bytes, count mismatch', () => {
  const good = encodeChecksums(Uint32Array.from([1, 2, 3]), [2]);
  for (let n = 0; n < good.length; n++) frameError(() => decodeChecksums(good.subarray(0, n)));
  frameError(() => decodeChecksums(Buffer.concat([good, Buffer.alloc(1)])));
  frameError(() => decodeChecksums(Buffer.concat([good, Buffer.alloc(4)])));
  const bigN = Buffer.from(good);
  bigN.writeUInt32BE(MAX_U32, 0);
  frameError(() => decodeChecksums(bigN));
  const bigM = Buffer.from(good);
  bigM.writeUInt32BE(MAX_U32, 16);
  frameError(() => decodeChecksums(bigM));
  const smallM = Buffer.from(good);
  smallM.writeUInt32BE(0, 16);
  frameError(() => decodeChecksums(smallM));
});

test('checksums garbage: only FrameError, or a listing that re-encodes to the same bytes', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat({ max: 4 }), fc.nat({ max: 4 }), (raw, n, m) => {
    // Half the time give the counts plausible values so the length checks are exercised.
    const b = Buffer.from(raw);
    if (b.length >= 8 && n % 2 === 0) {
      b.writeUInt32BE(n, 0);
      if (b.length >= 8 + 4 * n) b.writeUInt32BE(m, 4 + 4 * n);
    }
    try {
      const { sums, corrupt } = decodeChecksums(b);
      assert.ok(encodeChecksums(sums, corrupt).equals(b));
    } catch (err) {
      assert.ok(err instanceof FrameError, `threw ${(err as Error)?.name}`);
    }
  }), { numRuns: 1000 });
});
