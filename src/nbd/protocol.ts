// Network Block Device protocol: constants and wire encoding, per
// https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md (fixed newstyle handshake,
// simple replies). Every integer on the wire is big-endian.

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server -> client, 16 bits). */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;

/** Client flags (client -> server, 32 bits). */
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Option types. */
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_PEEK_EXPORT = 4;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

/** Option reply types; errors have bit 31 set. */
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const REP_ERR = 0x80000000;
export const NBD_REP_ERR_UNSUP = REP_ERR + 1;
export const NBD_REP_ERR_POLICY = REP_ERR + 2;
export const NBD_REP_ERR_INVALID = REP_ERR + 3;
export const NBD_REP_ERR_PLATFORM = REP_ERR + 4;
export const NBD_REP_ERR_TLS_REQD = REP_ERR + 5;
export const NBD_REP_ERR_UNKNOWN = REP_ERR + 6;
export const NBD_REP_ERR_SHUTDOWN = REP_ERR + 7;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = REP_ERR + 8;
export const NBD_REP_ERR_TOO_BIG = REP_ERR + 9;

/** Information types for NBD_OPT_INFO / NBD_OPT_GO. */
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

/** Transmission flags (16 bits). */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

/** Command types. */
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;
export const NBD_CMD_RESIZE = 8;

/** Command flags (16 bits). */
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

/** Error values carried in replies (Linux errno numbers, as the spec mandates). */
export const NBD_OK = 0;
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

export const HANDSHAKE_HEADER_LEN = 18; // NBDMAGIC + IHAVEOPT + 16-bit flags
export const OPTION_HEADER_LEN = 16; // IHAVEOPT + option + length
export const OPTION_REPLY_HEADER_LEN = 20; // magic + option + reply type + length
export const REQUEST_HEADER_LEN = 28;
export const SIMPLE_REPLY_HEADER_LEN = 16;
export const EXPORT_NAME_REPLY_ZEROES = 124;

const NAMES = (prefix: string, table: Record<string, number>): Map<number, string> =>
  new Map(Object.entries(table).map(([k, v]) => [v, prefix + k]));
const COMMAND_NAMES = NAMES('NBD_CMD_', {
  READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7, RESIZE: 8,
});
const OPTION_NAMES = NAMES('NBD_OPT_', {
  EXPORT_NAME: 1, ABORT: 2, LIST: 3, PEEK_EXPORT: 4, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10, EXTENDED_HEADERS: 11,
});
/** For logs: "NBD_CMD_WRITE" or "cmd#42". */
export function commandName(type: number): string { return COMMAND_NAMES.get(type) ?? `cmd#${type}`; }
export function optionName(opt: number): string { return OPTION_NAMES.get(opt) ?? `opt#${opt}`; }

// ---- handshake ----

/** The server's first 18 bytes of the fixed newstyle handshake. */
export function encodeHandshake(flags: number): Buffer {
  const b = Buffer.alloc(HANDSHAKE_HEADER_LEN);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

export interface OptionHeader { magic: bigint; option: number; length: number }

export function decodeOptionHeader(b: Buffer): OptionHeader {
  return { magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

export function encodeOptionHeader(option: number, length: number): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_LEN);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(length, 12);
  return b;
}

export function encodeOptionReply(option: number, replyType: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_REPLY_HEADER_LEN + data.length);
  b.writeBigUInt64BE(OPT_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(replyType >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, OPTION_REPLY_HEADER_LEN);
  return b;
}

export interface OptionReplyHeader { magic: bigint; option: number; replyType: number; length: number }

export function decodeOptionReplyHeader(b: Buffer): OptionReplyHeader {
  return { magic: b.readBigUInt64BE(0), option: b.readUInt32BE(8), replyType: b.readUInt32BE(12), length: b.readUInt32BE(16) };
}

/** NBD_REP_SERVER payload: 32-bit name length, name, then the optional free-form details. */
export function encodeServerReplyData(name: string, description?: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description ?? '', 'utf8');
  const b = Buffer.alloc(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

/** NBD_INFO_EXPORT: size and transmission flags. */
export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(NBD_INFO_EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

export function encodeInfoString(infoType: typeof NBD_INFO_NAME | typeof NBD_INFO_DESCRIPTION, text: string): Buffer {
  const t = Buffer.from(text, 'utf8');
  const b = Buffer.alloc(2 + t.length);
  b.writeUInt16BE(infoType, 0);
  t.copy(b, 2);
  return b;
}

export function encodeInfoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

/** Reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : EXPORT_NAME_REPLY_ZEROES));
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

export interface InfoRequest { name: string; infos: number[] }

/**
 * Parses the NBD_OPT_INFO / NBD_OPT_GO payload: 32-bit name length, name, 16-bit count, 16-bit
 * info types. Returns undefined when the lengths do not add up (the caller answers ERR_INVALID).
 */
export function decodeInfoRequest(data: Buffer): InfoRequest | undefined {
  if (data.length < 6) return undefined;
  const nameLen = data.readUInt32BE(0);
  if (nameLen > data.length - 6) return undefined;
  const name = data.toString('utf8', 4, 4 + nameLen);
  const count = data.readUInt16BE(4 + nameLen);
  if (data.length !== 6 + nameLen + 2 * count) return undefined;
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(6 + nameLen + 2 * i));
  return { name, infos };
}

export function encodeInfoRequest(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(6 + n.length + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
  return b;
}

// ---- transmission ----

export interface Request {
  magic: number;
  flags: number;
  type: number;
  /** Opaque to the server: echoed in the reply. Kept as raw bytes so nothing is lost. */
  handle: Buffer;
  offset: number;
  length: number;
}

export function decodeRequest(b: Buffer): Request {
  const offset = b.readBigUInt64BE(16);
  return {
    magic: b.readUInt32BE(0),
    flags: b.readUInt16BE(4),
    type: b.readUInt16BE(6),
    handle: Buffer.from(b.subarray(8, 16)),
    // Offsets beyond 2^53 cannot be valid for any export we serve; saturate so range checks fail.
    offset: offset > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(offset),
    length: b.readUInt32BE(24),
  };
}

export function encodeRequest(r: { flags?: number; type: number; handle: bigint | Buffer; offset: number | bigint; length: number; magic?: number }): Buffer {
  const b = Buffer.alloc(REQUEST_HEADER_LEN);
  b.writeUInt32BE(r.magic ?? REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags ?? 0, 4);
  b.writeUInt16BE(r.type, 6);
  if (Buffer.isBuffer(r.handle)) r.handle.copy(b, 8, 0, 8);
  else b.writeBigUInt64BE(r.handle, 8);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
  b.writeUInt32BE(r.length, 24);
  return b;
}

export function encodeSimpleReply(error: number, handle: Buffer): Buffer {
  const b = Buffer.alloc(SIMPLE_REPLY_HEADER_LEN);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  handle.copy(b, 8, 0, 8);
  return b;
}

export interface SimpleReply { magic: number; error: number; handle: bigint }

export function decodeSimpleReply(b: Buffer): SimpleReply {
  return { magic: b.readUInt32BE(0), error: b.readUInt32BE(4), handle: b.readBigUInt64BE(8) };
}
