import {
  Flag, MAX_FRAME_BYTES, MAX_SEGMENT_ID_BYTES, OP_NAMES, Op, PROTOCOL_VERSION, Status,
  type Request, type Response,
} from './messages.ts';
import type { BudgetHolder, PartialFrameBudget } from './partial-frame-budget.ts';

const REQUEST_FIXED = 1 + 1 + 2 + 4 + 4 + 2 + 8 + 4; // without segment id and payload
export const RESPONSE_FIXED = 1 + 1 + 1 + 1 + 4 + 4;
const KNOWN_FLAGS = Flag.FUA | Flag.FORWARDED | Flag.COPY | Flag.RECORDED;

/** A body that could not be decoded. `requestId` is set when the header was readable. */
export class FrameError extends Error {
  constructor(message: string, readonly requestId?: number) {
    super(message);
    this.name = 'FrameError';
  }
}

/** AUTH requests carry a nonce or a proof (32 bytes each), never more than this. */
const MAX_AUTH_PAYLOAD = 64;

const isUint32 = (n: number) => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

/** Refuses to encode anything the decoder would reject or read back differently. */
function validateRequest(req: Request): Buffer {
  if (!(req.op in OP_NAMES)) throw new FrameError(`unknown op ${req.op}`);
  if (!Number.isInteger(req.flags) || req.flags < 0 || req.flags & ~KNOWN_FLAGS) throw new FrameError(`unknown flags ${req.flags}`);
  if (!isUint32(req.requestId)) throw new FrameError(`request id ${req.requestId} is not a 32-bit unsigned integer`);
  if (!isUint32(req.epoch)) throw new FrameError(`epoch ${req.epoch} is not a 32-bit unsigned integer`);
  if (!isUint32(req.length)) throw new FrameError(`length ${req.length} is not a 32-bit unsigned integer`);
  if (!Number.isSafeInteger(req.offset) || req.offset < 0) throw new FrameError(`offset ${req.offset} is not a non-negative safe integer`);
  if (req.op === Op.AUTH ? req.payload.length > MAX_AUTH_PAYLOAD || req.length !== 0 : req.op === Op.WRITE ? req.payload.length !== req.length : req.payload.length !== 0) {
    throw new FrameError(`${OP_NAMES[req.op]} payload of ${req.payload.length} bytes does not match length ${req.length}`);
  }
  if (req.segmentId.length === 0) throw new FrameError('empty segment id');
  const id = Buffer.from(req.segmentId, 'utf8');
  if (id.toString('utf8') !== req.segmentId) throw new FrameError('segment id is not valid unicode');
  if (id.length > MAX_SEGMENT_ID_BYTES) throw new FrameError('segment id too long');
  return id;
}

/** The whole request frame in one buffer (copies the payload; the send path uses encodeRequestHead). */
export function encodeRequest(req: Request): Buffer {
  const head = encodeRequestHead(req);
  return req.payload.length ? Buffer.concat([head, req.payload]) : head;
}

/**
 * The frame up to the payload (length prefix, fixed fields, segment id): written with the payload
 * as a second buffer of one corked write, so a WRITE's data is never copied into a frame.
 */
export function encodeRequestHead(req: Request): Buffer {
  const id = validateRequest(req);
  const bodyLen = REQUEST_FIXED + id.length + req.payload.length;
  if (bodyLen > MAX_FRAME_BYTES) throw new FrameError(`frame of ${bodyLen} bytes exceeds ${MAX_FRAME_BYTES}`);
  const head = Buffer.allocUnsafe(4 + REQUEST_FIXED + id.length);
  let o = 0;
  o = head.writeUInt32BE(bodyLen, o);
  o = head.writeUInt8(PROTOCOL_VERSION, o);
  o = head.writeUInt8(req.op, o);
  o = head.writeUInt16BE(req.flags, o);
  o = head.writeUInt32BE(req.requestId, o);
  o = head.writeUInt32BE(req.epoch, o);
  o = head.writeUInt16BE(id.length, o);
  o += id.copy(head, o);
  o = head.writeBigUInt64BE(BigInt(req.offset), o);
  head.writeUInt32BE(req.length, o);
  return head;
}

/** Decodes a request body (without the length prefix). Throws FrameError when malformed. */
export function decodeRequest(body: Buffer): Request {
  if (body.length < 8) throw new FrameError(`request body of ${body.length} bytes is too short`);
  const requestId = body.readUInt32BE(4);
  const fail = (msg: string): never => { throw new FrameError(msg, requestId); };
  if (body.length < REQUEST_FIXED) fail(`request body of ${body.length} bytes is too short`);
  const version = body.readUInt8(0);
  if (version !== PROTOCOL_VERSION) fail(`unsupported protocol version ${version}`);
  const op = body.readUInt8(1);
  if (!(op in OP_NAMES)) fail(`unknown op ${op}`);
  const flags = body.readUInt16BE(2);
  if (flags & ~KNOWN_FLAGS) fail(`unknown flags 0x${flags.toString(16)}`);
  const epoch = body.readUInt32BE(8);
  const idLen = body.readUInt16BE(12);
  if (idLen === 0 || idLen > MAX_SEGMENT_ID_BYTES) fail(`bad segment id length ${idLen}`);
  if (body.length < REQUEST_FIXED + idLen) fail('segment id runs past the end of the frame');
  const idBytes = body.subarray(14, 14 + idLen);
  const segmentId = idBytes.toString('utf8');
  // Reject ids that are not valid utf-8 rather than silently mapping them to U+FFFD.
  if (!Buffer.from(segmentId, 'utf8').equals(idBytes)) fail('segment id is not valid utf-8');
  let o = 14 + idLen;
  const offsetBig = body.readBigUInt64BE(o);
  if (offsetBig > BigInt(Number.MAX_SAFE_INTEGER)) fail('offset too large');
  o += 8;
  const length = body.readUInt32BE(o);
  o += 4;
  const payload = body.subarray(o);
  if (op === Op.WRITE) {
    if (payload.length !== length) fail(`WRITE length ${length} but ${payload.length} payload bytes`);
  } else if (op === Op.AUTH) {
    if (payload.length > MAX_AUTH_PAYLOAD || length !== 0) fail(`AUTH carries at most ${MAX_AUTH_PAYLOAD} bytes and no length`);
  } else if (payload.length !== 0) {
    fail(`${OP_NAMES[op]} must not carry a payload`);
  }
  return { op, flags, requestId, epoch, segmentId, offset: Number(offsetBig), length, payload };
}

/** The whole response frame in one buffer (copies the payload; the send path uses encodeResponseHead). */
export function encodeResponse(res: Response): Buffer {
  const head = encodeResponseHead(res);
  return res.payload.length ? Buffer.concat([head, res.payload]) : head;
}

/** The frame up to the payload; the payload (a READ's data) follows as its own buffer, uncopied. */
export function encodeResponseHead(res: Response): Buffer {
  const bodyLen = RESPONSE_FIXED + res.payload.length;
  const head = Buffer.allocUnsafe(4 + RESPONSE_FIXED);
  let o = 0;
  o = head.writeUInt32BE(bodyLen, o);
  o = head.writeUInt8(PROTOCOL_VERSION, o);
  o = head.writeUInt8(res.op, o);
  o = head.writeUInt8(res.status, o);
  o = head.writeUInt8(0, o);
  o = head.writeUInt32BE(res.requestId >>> 0, o);
  head.writeUInt32BE(res.epoch >>> 0, o);
  return head;
}

export function decodeResponse(body: Buffer): Response {
  if (body.length < RESPONSE_FIXED) throw new FrameError(`response body of ${body.length} bytes is too short`);
  const version = body.readUInt8(0);
  const requestId = body.readUInt32BE(4);
  if (version !== PROTOCOL_VERSION) throw new FrameError(`unsupported protocol version ${version}`, requestId);
  const op = body.readUInt8(1);
  const status = body.readUInt8(2);
  if (!(status in Status)) throw new FrameError(`unknown status ${status}`, requestId);
  return { op, status, requestId, epoch: body.readUInt32BE(8), payload: body.subarray(RESPONSE_FIXED) };
}

/**
 * Splits a byte stream into frame bodies. Feed it socket chunks; it calls `onFrame` for each
 * complete body and `onError` once (then stops) for a frame longer than `maxFrame`, since after
 * a bad length prefix the stream cannot be resynchronised.
 */
export class FrameReader implements BudgetHolder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  /** With a budget, the bytes of an incomplete frame count against it (see PartialFrameBudget). */
  constructor(
    private readonly onFrame: (body: Buffer) => void,
    private readonly onError: (err: FrameError) => void,
    private maxFrame = MAX_FRAME_BYTES,
    private readonly budget?: PartialFrameBudget,
  ) {}

  /** Changes the largest frame accepted from now on (a server raises it once a peer authenticated). */
  setMaxFrame(bytes: number): void {
    this.maxFrame = bytes;
  }

  push(chunk: Buffer): void {
    if (this.failed) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.drain();
    if (this.budget && !this.failed) this.budget.update(this, this.buffered);
  }

  evict(reason: string): void {
    if (this.failed) return;
    this.failed = true;
    this.chunks = [];
    this.buffered = 0;
    this.onError(new FrameError(reason));
  }

  /** Forget what this reader held (its connection closed). */
  release(): void {
    this.chunks = [];
    this.buffered = 0;
    this.budget?.update(this, 0);
  }

  private drain(): void {
    while (this.buffered >= 4) {
      const head = this.peek(4);
      const len = head.readUInt32BE(0);
      if (len > this.maxFrame) {
        this.failed = true;
        this.chunks = [];
        this.buffered = 0;
        this.budget?.update(this, 0);
        this.onError(new FrameError(`frame of ${len} bytes exceeds the limit of ${this.maxFrame}`));
        return;
      }
      if (this.buffered < 4 + len) return;
      const frame = this.take(4 + len);
      this.onFrame(frame.subarray(4));
      if (this.failed) return;
    }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length >= n) return this.chunks[0];
    this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}

/** CHECKSUMS payload: u32 count, count × u32 block checksums, u32 nCorrupt, nCorrupt × u32 block indexes. */
export function encodeChecksums(sums: Uint32Array, corrupt: number[]): Buffer {
  const buf = Buffer.allocUnsafe(8 + 4 * sums.length + 4 * corrupt.length);
  let o = buf.writeUInt32BE(sums.length, 0);
  for (const s of sums) o = buf.writeUInt32BE(s, o);
  o = buf.writeUInt32BE(corrupt.length, o);
  for (const c of corrupt) o = buf.writeUInt32BE(c, o);
  return buf;
}

export function decodeChecksums(buf: Buffer): { sums: Uint32Array; corrupt: number[] } {
  if (buf.length < 8) throw new FrameError('CHECKSUMS payload too short');
  const n = buf.readUInt32BE(0);
  if (buf.length < 8 + 4 * n) throw new FrameError('CHECKSUMS payload truncated');
  const sums = new Uint32Array(n);
  for (let i = 0; i < n; i++) sums[i] = buf.readUInt32BE(4 + 4 * i);
  const m = buf.readUInt32BE(4 + 4 * n);
  if (buf.length !== 8 + 4 * n + 4 * m) throw new FrameError('CHECKSUMS payload has a bad length');
  const corrupt: number[] = [];
  for (let i = 0; i < m; i++) corrupt.push(buf.readUInt32BE(8 + 4 * n + 4 * i));
  return { sums, corrupt };
}
