// The Presage data protocol: binary, length-prefixed frames over TCP.
//
// Every frame is `u32 bodyLength` (big-endian) followed by the body. Requests carry a
// request id so many can be in flight on one connection; responses may come back in any
// order and are matched by id.
//
// Request body:
//   u8  version (1)      u8  op            u16 flags
//   u32 requestId        u32 epoch (the SMT epoch the sender believes in)
//   u16 segmentIdLength  segmentId (utf-8)
//   u64 offset           u32 length         payload (WRITE data; empty otherwise)
//
// Response body:
//   u8  version (1)      u8  op (echoed)    u8 status          u8 reserved
//   u32 requestId        u32 epoch (the server's epoch for the segment, 0 if unknown)
//   payload: READ data; CHECKSUMS listing; STAT JSON; an error's message (utf-8)

export const PROTOCOL_VERSION = 1;

/** Largest data payload in one request (a bigger I/O is split by the client). */
export const MAX_IO_BYTES = 8 * 1024 * 1024;
/** Largest accepted frame body: payload plus headers, with room to spare. */
export const MAX_FRAME_BYTES = MAX_IO_BYTES + 64 * 1024;
export const MAX_SEGMENT_ID_BYTES = 512;

export enum Op {
  READ = 1,
  WRITE = 2,
  FLUSH = 3,
  TRIM = 4,
  CHECKSUMS = 5,
  STAT = 6,
  /**
   * Sent to a primary by the copy engine: hold every new write to the segment (in-flight ones
   * finish first) for at most `length` milliseconds, so source and copy can be compared at rest.
   */
  PAUSE = 7,
  /** Ends a PAUSE early. */
  RESUME = 8,
  /**
   * The first requests on every connection (auth/handshake.ts): `offset` 0 carries the entity
   * name (as segmentId) and the client's nonce, `offset` 1 the proof. Anything else before it
   * succeeds is answered UNAUTHENTICATED and the connection closed.
   */
  AUTH = 9,
}

export const OP_NAMES: Record<number, string> = {
  [Op.READ]: 'READ', [Op.WRITE]: 'WRITE', [Op.FLUSH]: 'FLUSH', [Op.TRIM]: 'TRIM',
  [Op.CHECKSUMS]: 'CHECKSUMS', [Op.STAT]: 'STAT', [Op.PAUSE]: 'PAUSE', [Op.RESUME]: 'RESUME',
  [Op.AUTH]: 'AUTH',
};

export enum Flag {
  NONE = 0,
  /** Force unit access: the write is durable (fsynced) before it is acknowledged. */
  FUA = 1 << 0,
  /** Sent by a primary to a replica: apply locally, do not forward again. */
  FORWARDED = 1 << 1,
  /**
   * Sent by the copy engine and scrub: a READ that bypasses the write-ordering lock (used while
   * the segment is paused), or a repair WRITE that is applied locally and not forwarded.
   */
  COPY = 1 << 2,
  /**
   * CHECKSUMS only: the checksums the sidecar records for blocks whose data is known to match
   * it, without reading the data (a range with any block not known so is scanned as usual). The
   * copy engine's paused verification asks the source for it: every block it copied was verified
   * against these records when it was read, so the source need not read the segment again while
   * its writes are paused (the copy's own data is still scanned in full). Rot on the source's
   * disk is what reads and scrub catch, with or without a migration.
   */
  RECORDED = 1 << 3,
}

export enum Status {
  OK = 0,
  /** The sender's epoch differs from the server's; the response carries the server's epoch. */
  STALE = 1,
  /** The server is not a replica of this segment. */
  NOT_OWNER = 2,
  /** A block failed its checksum; the data is never returned. */
  CORRUPT = 3,
  /** Offset or length outside the segment. */
  OUT_OF_RANGE = 4,
  /** Malformed request. */
  BAD_REQUEST = 5,
  /** Temporarily unable to serve (shutting down, replica unreachable, not ready): retry. */
  UNAVAILABLE = 6,
  /** The local disk failed the operation. */
  IO_ERROR = 7,
  /** No valid authentication on this connection: the server closes it after this answer. */
  UNAUTHENTICATED = 8,
  /** The connection's identity may not make this request (role or volume grant). */
  FORBIDDEN = 9,
  /**
   * No replica of the segment has room for the write (ENOSPC). Final for this request: retrying
   * cannot help until space is freed or the orchestrator moves the segment.
   */
  NO_SPACE = 10,
}

export const STATUS_NAMES: Record<number, string> = {
  [Status.OK]: 'OK', [Status.STALE]: 'STALE', [Status.NOT_OWNER]: 'NOT_OWNER',
  [Status.CORRUPT]: 'CORRUPT', [Status.OUT_OF_RANGE]: 'OUT_OF_RANGE',
  [Status.BAD_REQUEST]: 'BAD_REQUEST', [Status.UNAVAILABLE]: 'UNAVAILABLE',
  [Status.IO_ERROR]: 'IO_ERROR', [Status.UNAUTHENTICATED]: 'UNAUTHENTICATED', [Status.FORBIDDEN]: 'FORBIDDEN',
  [Status.NO_SPACE]: 'NO_SPACE',
};

export interface Request {
  op: Op;
  flags: number;
  requestId: number;
  epoch: number;
  segmentId: string;
  offset: number;
  length: number;
  payload: Buffer;
}

export interface Response {
  op: Op;
  status: Status;
  requestId: number;
  epoch: number;
  payload: Buffer;
}

/** A typed protocol error, as raised by the client library for a non-OK response. */
export class ProtocolError extends Error {
  /**
   * Stable code to match on (never the message): 'ENOSPC' for NO_SPACE, so errno-mapping layers
   * (NBD) report a full disk as such; ERR_PRESAGE_<STATUS> otherwise.
   */
  readonly code: string;

  constructor(
    readonly status: Status,
    message: string,
    readonly epoch = 0,
  ) {
    super(`${STATUS_NAMES[status] ?? `status ${status}`}: ${message}`);
    this.name = 'ProtocolError';
    this.code = status === Status.NO_SPACE ? 'ENOSPC' : `ERR_PRESAGE_${STATUS_NAMES[status] ?? 'STATUS'}`;
  }
}
