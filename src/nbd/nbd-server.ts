// NBD export server: serves BlockDevices from a BlockDeviceProvider to real NBD clients (qemu,
// nbdcopy, fio's nbd engine, the Linux nbd driver) over TCP or a Unix socket.
//
// Handshake: fixed newstyle with NO_ZEROES; options EXPORT_NAME, LIST, ABORT, INFO, GO, and
// STARTTLS when TLS is configured (nbd/tls.ts: the option haggling then restarts inside TLS, and
// with TLS required nothing else is served before it); everything else (STRUCTURED_REPLY, meta
// contexts, ...) is refused with ERR_UNSUP, so clients fall back to simple replies. Exports are
// listed and opened only when the TLS options' authorize() allows the client's identity. Transmission: READ, WRITE, DISC, FLUSH, TRIM, WRITE_ZEROES, with FUA.
// Requests on one connection run concurrently (at most maxInFlight; the socket stops being read
// when that many are outstanding) and are answered as they complete. Requests that conflict with
// an earlier in-flight one (overlapping ranges, at least one of them modifying) wait for it, so
// overlapping writes land in arrival order and a read sees the writes sent before it; a FLUSH
// waits for every earlier modifying request on its connection before flushing the device.

import net from 'node:net';
import fs from 'node:fs';
import type { Logger } from 'pino';
import type { BlockDevice, BlockDeviceProvider } from '../client/block-device.ts';
import { CoalescingWriter } from '../common/coalescing-writer.ts';
import { silentLogger } from '../common/log.ts';
import * as P from './protocol.ts';
import { checkTlsOptions, upgradeToTls, type NbdTlsOptions } from './tls.ts';

export interface NbdServerOptions {
  logger?: Logger;
  /** Requests processed at once per connection; reading from the socket pauses at this many. Default 64. */
  maxInFlight?: number;
  /** Advertised minimum block size: 1 (byte-granular device) or 512. Default 1. */
  minBlockSize?: number;
  /** STARTTLS (PSK or x509) and export authorisation; default off (plain NBD, every export). */
  tls?: NbdTlsOptions;
}

export type NbdListenOptions = { host: string; port: number } | { path: string };

export interface NbdListenResult {
  /** "host:port" for TCP, the socket path for a Unix socket. */
  address: string;
  /** The bound port (TCP only), useful with port 0. */
  port?: number;
  /** An NBD URI for the server's root, e.g. nbd://127.0.0.1:10809 or nbd+unix:///?socket=/run/x.sock. */
  uri: string;
}

export const PREFERRED_BLOCK_SIZE = 4096;
/** Largest READ/WRITE payload we accept (the spec's default maximum). */
export const MAX_BLOCK_SIZE = 32 * 1024 * 1024;
/** A WRITE longer than this is treated as garbage: the connection is closed instead of discarding it. */
export const MAX_DISCARDABLE_WRITE = 64 * 1024 * 1024;
/** Option payloads longer than this are not read: the connection is closed. */
const MAX_OPTION_LENGTH = 64 * 1024;
/** How long close() waits for in-flight requests before cutting connections. */
const CLOSE_GRACE_MS = 5000;

const TRANSMISSION_FLAGS =
  P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_TRIM |
  P.NBD_FLAG_SEND_WRITE_ZEROES |
  // Safe because BlockDevice.flush() is volume-wide: it covers writes completed on any connection.
  P.NBD_FLAG_CAN_MULTI_CONN;

/** Command flags each command may carry; anything else is answered EINVAL. */
const ALLOWED_CMD_FLAGS: Record<number, number> = {
  [P.NBD_CMD_READ]: 0,
  [P.NBD_CMD_WRITE]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_FLUSH]: 0,
  [P.NBD_CMD_TRIM]: P.NBD_CMD_FLAG_FUA,
  [P.NBD_CMD_WRITE_ZEROES]: P.NBD_CMD_FLAG_FUA | P.NBD_CMD_FLAG_NO_HOLE,
  [P.NBD_CMD_DISC]: 0,
};

class ConnectionClosed extends Error {
  constructor(reason = 'connection closed') { super(reason); }
}

/** A protocol violation after which the stream cannot be trusted: the connection is closed. */
class ProtocolError extends Error {}

/** Pull-style reader over a socket: read exactly n bytes; pauses the socket when enough is buffered. */
class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private pending: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private closedError: Error | undefined;

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- socket listeners of several signatures
  private readonly listeners: [string, (...a: any[]) => void][] = [];

  constructor(private readonly socket: net.Socket, private readonly highWater = 4 * 1024 * 1024) {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const on = (ev: string, fn: (...a: any[]) => void) => {
      socket.on(ev, fn);
      this.listeners.push([ev, fn]);
    };
    on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.pending && this.buffered >= this.pending.n) {
        const p = this.pending;
        this.pending = undefined;
        p.resolve(this.take(p.n));
      }
      if (!this.pending && this.buffered >= this.highWater) socket.pause();
    });
    const fail = (e: Error) => {
      this.closedError ??= e;
      const p = this.pending;
      this.pending = undefined;
      p?.reject(this.closedError);
    };
    on('end', () => fail(new ConnectionClosed('client closed the connection')));
    on('close', () => fail(new ConnectionClosed('connection closed')));
    on('error', (e: Error) => fail(new ConnectionClosed(`socket error: ${e.message}`)));
  }

  /** Stops reading the socket (it is handed to TLS); returns how many bytes were left unread. */
  detach(): number {
    for (const [ev, fn] of this.listeners) this.socket.off(ev, fn);
    this.listeners.length = 0;
    return this.buffered;
  }

  read(n: number): Promise<Buffer> {
    if (this.buffered >= n) return Promise.resolve(this.take(n));
    if (this.closedError) return Promise.reject(this.closedError);
    if (this.pending) return Promise.reject(new Error('SocketReader: concurrent reads'));
    return new Promise((resolve, reject) => {
      this.pending = { n, resolve, reject };
      this.socket.resume();
    });
  }

  /** Reads and drops n bytes without holding them all in memory. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const step = Math.min(n, 1024 * 1024);
      await this.read(step);
      n -= step;
    }
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0];
    if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let pos = 0;
      while (pos < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - pos);
        c.copy(out, pos, 0, k);
        pos += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    if (this.buffered < this.highWater && !this.closedError) this.socket.resume();
    return out;
  }
}

type Kind = 'read' | 'modify' | 'flush';
interface InFlight { kind: Kind; start: number; end: number; done: Promise<void> }

interface ResolvedExport { name: string; device: BlockDevice; description?: string }

class NbdConnection {
  reader: SocketReader;
  private out: CoalescingWriter;
  /** Set once STARTTLS completed: the client's TLS identity (PSK username or certificate CN). */
  private tlsIdentity: string | undefined;
  private tlsDone = false;
  private readonly log: Logger;
  private inFlight: InFlight[] = [];
  private slotWaiters: (() => void)[] = [];
  private stopping = false;

  constructor(
    public socket: net.Socket,
    private readonly provider: BlockDeviceProvider,
    private readonly opts: Required<Pick<NbdServerOptions, 'maxInFlight' | 'minBlockSize'>> & { tls?: NbdTlsOptions },
    logger: Logger,
    peer: string,
  ) {
    this.log = logger.child({ peer });
    this.reader = new SocketReader(socket);
    this.out = new CoalescingWriter(socket);
  }

  /** Runs the whole connection; never throws. */
  async run(): Promise<void> {
    try {
      const exp = await this.handshake();
      if (!exp) return;
      this.log.info({ export: exp.name, size: exp.device.size }, 'nbd: transmission started');
      await this.transmit(exp.device);
    } catch (e) {
      if (e instanceof ConnectionClosed) {
        this.log.debug({ reason: e.message }, 'nbd: connection ended');
        // The client may only have shut down its sending side: answer what it already asked.
        await this.settle();
        this.socket.end();
        return;
      }
      if (e instanceof ProtocolError) this.log.warn({ reason: e.message }, 'nbd: closing connection after protocol error');
      else this.log.error({ err: e }, 'nbd: closing connection after internal error');
      this.socket.destroy();
    }
  }

  /** Stops reading new requests, lets in-flight ones finish (up to a grace period), then closes. */
  async shutdown(): Promise<void> {
    this.stopping = true;
    await this.settle();
    this.socket.destroy();
  }

  /** Waits for in-flight requests, at most CLOSE_GRACE_MS (a hung device must not pin the connection). */
  private async settle(): Promise<void> {
    if (this.inFlight.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.inFlight.map((f) => f.done)),
      new Promise((r) => { timer = setTimeout(r, CLOSE_GRACE_MS); }),
    ]);
    clearTimeout(timer);
  }

  // ---- handshake ----

  private send(b: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  private async handshake(): Promise<ResolvedExport | undefined> {
    this.send(P.encodeHandshake(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES));
    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    if (clientFlags & ~(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES)) {
      throw new ProtocolError(`client sent unknown client flags 0x${clientFlags.toString(16)}`);
    }
    const fixed = (clientFlags & P.NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;
    const noZeroes = (clientFlags & P.NBD_FLAG_C_NO_ZEROES) !== 0;

    for (;;) {
      if (this.stopping) throw new ConnectionClosed('server shutting down');
      const h = P.decodeOptionHeader(await this.reader.read(P.OPTION_HEADER_LEN));
      if (h.magic !== P.IHAVEOPT) throw new ProtocolError(`bad option magic 0x${h.magic.toString(16)}`);
      if (h.length > MAX_OPTION_LENGTH) throw new ProtocolError(`${P.optionName(h.option)} payload of ${h.length} bytes is too long`);
      const data = await this.reader.read(h.length);
      const reply = (type: number, payload?: Buffer) => this.send(P.encodeOptionReply(h.option, type, payload));
      const error = (type: number, message: string) => {
        this.log.debug({ option: P.optionName(h.option), message }, 'nbd: option refused');
        reply(type, Buffer.from(message, 'utf8'));
      };
      this.log.debug({ option: P.optionName(h.option), length: h.length }, 'nbd: option');

      if (this.opts.tls?.mode === 'require' && !this.tlsDone && h.option !== P.NBD_OPT_STARTTLS && h.option !== P.NBD_OPT_ABORT) {
        // EXPORT_NAME has no error reply: refusing it means closing.
        if (h.option === P.NBD_OPT_EXPORT_NAME) throw new ProtocolError('NBD_OPT_EXPORT_NAME before STARTTLS while TLS is required');
        error(P.NBD_REP_ERR_TLS_REQD, 'this server requires TLS: use STARTTLS (nbds:// with tls-psk-file=, or qemu tls-creds)');
        continue;
      }

      switch (h.option) {
        case P.NBD_OPT_STARTTLS: {
          const t = this.opts.tls;
          if (!t || t.mode === 'off') { error(P.NBD_REP_ERR_UNSUP, 'TLS is not configured on this server'); break; }
          if (this.tlsDone) { error(P.NBD_REP_ERR_INVALID, 'TLS is already on'); break; }
          if (data.length !== 0) { error(P.NBD_REP_ERR_INVALID, 'NBD_OPT_STARTTLS takes no data'); break; }
          reply(P.NBD_REP_ACK);
          if (this.reader.detach() !== 0) throw new ProtocolError('data sent after NBD_OPT_STARTTLS before the TLS handshake');
          let up: Awaited<ReturnType<typeof upgradeToTls>>;
          try {
            up = await upgradeToTls(this.socket, t);
          } catch (err) {
            throw new ProtocolError((err as Error).message);
          }
          this.socket = up.socket;
          this.reader = new SocketReader(up.socket);
          this.out = new CoalescingWriter(up.socket);
          this.tlsIdentity = up.identity;
          this.tlsDone = true;
          this.log.info({ identity: up.identity }, 'nbd: TLS on');
          break; // the option haggling continues inside TLS
        }
        case P.NBD_OPT_EXPORT_NAME: {
          const name = data.toString('utf8');
          if (!(await this.allowed(name))) throw new ProtocolError(`NBD_OPT_EXPORT_NAME for "${name}", which ${this.tlsIdentity ?? 'this client'} may not use`);
          const exp = await this.resolveExport(name);
          // This option has no error reply: the spec's only way to refuse is to close.
          if (!exp) throw new ProtocolError(`NBD_OPT_EXPORT_NAME for unknown export "${name}"`);
          this.send(P.encodeExportNameReply(exp.device.size, TRANSMISSION_FLAGS, noZeroes));
          return exp;
        }
        case P.NBD_OPT_ABORT:
          reply(P.NBD_REP_ACK);
          this.socket.end();
          throw new ConnectionClosed('client aborted the handshake');
        case P.NBD_OPT_LIST: {
          if (data.length !== 0) { error(P.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data'); break; }
          const exports = await this.provider.list();
          for (const e of exports) if (await this.allowed(e.name)) reply(P.NBD_REP_SERVER, P.encodeServerReplyData(e.name, e.description));
          reply(P.NBD_REP_ACK);
          break;
        }
        case P.NBD_OPT_INFO:
        case P.NBD_OPT_GO: {
          const req = P.decodeInfoRequest(data);
          if (!req) { error(P.NBD_REP_ERR_INVALID, `malformed ${P.optionName(h.option)} request`); break; }
          let exp: ResolvedExport | undefined;
          if (!(await this.allowed(req.name))) { error(P.NBD_REP_ERR_POLICY, `${this.tlsIdentity ?? 'this client'} may not use export "${req.name}"`); break; }
          try {
            exp = await this.resolveExport(req.name);
          } catch (e) {
            this.log.warn({ err: e, export: req.name }, 'nbd: opening export failed');
            error(P.NBD_REP_ERR_UNKNOWN, `cannot open export "${req.name}": ${(e as Error).message}`);
            break;
          }
          if (!exp) { error(P.NBD_REP_ERR_UNKNOWN, `unknown export "${req.name}"`); break; }
          reply(P.NBD_REP_INFO, P.encodeInfoExport(exp.device.size, TRANSMISSION_FLAGS));
          // Sent unasked too: our values are the protocol defaults except the preferred size, a hint.
          reply(P.NBD_REP_INFO, P.encodeInfoBlockSize(this.opts.minBlockSize, PREFERRED_BLOCK_SIZE, MAX_BLOCK_SIZE));
          if (req.infos.includes(P.NBD_INFO_NAME)) reply(P.NBD_REP_INFO, P.encodeInfoString(P.NBD_INFO_NAME, exp.name));
          if (req.infos.includes(P.NBD_INFO_DESCRIPTION) && exp.description) {
            reply(P.NBD_REP_INFO, P.encodeInfoString(P.NBD_INFO_DESCRIPTION, exp.description));
          }
          reply(P.NBD_REP_ACK);
          if (h.option === P.NBD_OPT_GO) return exp;
          break;
        }
        default:
          // Non-fixed newstyle clients cannot parse error replies: closing is all we may do.
          if (!fixed) throw new ProtocolError(`unsupported option ${P.optionName(h.option)} from a non-fixed-newstyle client`);
          error(P.NBD_REP_ERR_UNSUP, `${P.optionName(h.option)} is not supported`);
      }
    }
  }

  /** Whether this client's TLS identity may use an export (always, without an authorize hook). */
  private async allowed(name: string): Promise<boolean> {
    const auth = this.opts.tls?.authorize;
    if (!auth) return true;
    try {
      return await auth(this.tlsIdentity, name);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, identity: this.tlsIdentity }, 'nbd: authorisation check failed');
      return false;
    }
  }

  /** The empty name means the only export, when there is exactly one (as qemu-nbd does). */
  private async resolveExport(name: string): Promise<ResolvedExport | undefined> {
    const list = await this.provider.list();
    let entry = list.find((e) => e.name === name);
    if (!entry && name === '' && list.length === 1) entry = list[0];
    if (!entry) return undefined;
    const device = await this.provider.open(entry.name);
    if (!device) return undefined;
    return { name: entry.name, device, description: entry.description };
  }

  // ---- transmission ----

  private async transmit(device: BlockDevice): Promise<void> {
    for (;;) {
      // Backpressure: stop reading requests while maxInFlight are outstanding or replies pile up.
      while (this.inFlight.length >= this.opts.maxInFlight) await new Promise<void>((r) => this.slotWaiters.push(r));
      if (this.socket.writableNeedDrain) await new Promise<void>((r) => { this.socket.once('drain', r); this.socket.once('close', r); });
      if (this.stopping) return;

      const req = P.decodeRequest(await this.reader.read(P.REQUEST_HEADER_LEN));
      if (req.magic !== P.REQUEST_MAGIC) throw new ProtocolError(`bad request magic 0x${req.magic.toString(16)}`);

      if (req.type === P.NBD_CMD_DISC) {
        this.stopping = true;
        await this.settle();
        this.log.info('nbd: client disconnected (NBD_CMD_DISC)');
        this.socket.end();
        return;
      }

      let payload: Buffer | undefined;
      if (req.type === P.NBD_CMD_WRITE) {
        if (req.length > MAX_DISCARDABLE_WRITE) {
          throw new ProtocolError(`NBD_CMD_WRITE of ${req.length} bytes is absurd; cannot stay in sync`);
        }
        if (req.length > MAX_BLOCK_SIZE) {
          await this.reader.skip(req.length); // keep the stream in sync, then refuse
          this.replyError(req, P.NBD_EINVAL, `write of ${req.length} bytes exceeds the maximum block size ${MAX_BLOCK_SIZE}`);
          continue;
        }
        payload = await this.reader.read(req.length);
      }
      this.dispatch(device, req, payload);
    }
  }

  /** Validates a request and starts it; the reply is sent when it completes. */
  private dispatch(device: BlockDevice, req: P.Request, payload: Buffer | undefined): void {
    const allowed = ALLOWED_CMD_FLAGS[req.type];
    if (allowed === undefined) return this.replyError(req, P.NBD_EINVAL, `unsupported command ${P.commandName(req.type)}`);
    if (req.flags & ~allowed) return this.replyError(req, P.NBD_EINVAL, `flags 0x${req.flags.toString(16)} not valid for ${P.commandName(req.type)}`);

    const fua = (req.flags & P.NBD_CMD_FLAG_FUA) !== 0;
    const start = req.offset;
    const end = req.offset + req.length;
    const outOfRange = end > device.size;
    let kind: Kind;
    let work: () => Promise<Buffer | undefined>;
    switch (req.type) {
      case P.NBD_CMD_READ:
        if (req.length > MAX_BLOCK_SIZE) return this.replyError(req, P.NBD_EINVAL, `read of ${req.length} bytes exceeds the maximum block size`);
        if (outOfRange) return this.replyError(req, P.NBD_EINVAL, `read [${start}, ${end}) beyond the end (${device.size})`);
        kind = 'read';
        work = () => (req.length === 0 ? Promise.resolve(Buffer.alloc(0)) : device.read(start, req.length));
        break;
      case P.NBD_CMD_WRITE:
        if (outOfRange) return this.replyError(req, P.NBD_ENOSPC, `write [${start}, ${end}) beyond the end (${device.size})`);
        kind = 'modify';
        work = async () => { if (req.length > 0) await device.write(start, payload!, { fua }); return undefined; };
        break;
      case P.NBD_CMD_WRITE_ZEROES:
        if (outOfRange) return this.replyError(req, P.NBD_ENOSPC, `write zeroes [${start}, ${end}) beyond the end (${device.size})`);
        kind = 'modify';
        // NO_HOLE only forbids punching a hole; a device may always allocate, so it needs nothing here.
        work = async () => { if (req.length > 0) await device.writeZeroes(start, req.length, { fua }); return undefined; };
        break;
      case P.NBD_CMD_TRIM:
        if (outOfRange) return this.replyError(req, P.NBD_EINVAL, `trim [${start}, ${end}) beyond the end (${device.size})`);
        kind = 'modify';
        work = async () => {
          if (req.length > 0) await device.trim(start, req.length);
          if (fua) await device.flush(); // BlockDevice.trim has no FUA of its own
          return undefined;
        };
        break;
      case P.NBD_CMD_FLUSH:
        kind = 'flush';
        work = async () => { await device.flush(); return undefined; };
        break;
      default:
        return this.replyError(req, P.NBD_EINVAL, `unsupported command ${P.commandName(req.type)}`);
    }

    const deps = this.inFlight.filter((f) => conflicts(kind, start, end, f)).map((f) => f.done);
    const entry: InFlight = { kind, start, end, done: Promise.resolve() };
    entry.done = (async () => {
      if (deps.length) await Promise.all(deps);
      try {
        const data = await work();
        this.reply(req, P.NBD_OK, data);
      } catch (e) {
        this.log.warn({ err: e, cmd: P.commandName(req.type), offset: start, length: req.length }, 'nbd: device error');
        this.reply(req, errnoFor(e));
      }
    })().finally(() => {
      this.inFlight.splice(this.inFlight.indexOf(entry), 1);
      this.slotWaiters.shift()?.();
    });
    this.inFlight.push(entry);
  }

  private replyError(req: P.Request, errno: number, message: string): void {
    this.log.debug({ cmd: P.commandName(req.type), offset: req.offset, length: req.length, errno, message }, 'nbd: request refused');
    this.reply(req, errno);
  }

  private reply(req: P.Request, errno: number, data?: Buffer): void {
    if (this.socket.destroyed) return;
    if (data && data.length > 0 && errno === P.NBD_OK) {
      // Header and data go out back to back, with every other reply of this turn, in one writev.
      this.out.writeFrame(P.encodeSimpleReply(errno, req.handle), data);
    } else {
      this.out.write(P.encodeSimpleReply(errno, req.handle));
    }
  }
}

/** Must a new request of `kind` over [start, end) wait for the earlier in-flight `f`? */
function conflicts(kind: Kind, start: number, end: number, f: InFlight): boolean {
  if (kind === 'flush') return f.kind === 'modify'; // flush covers every write sent before it
  if (f.kind === 'flush') return false;
  if (kind === 'read' && f.kind === 'read') return false;
  return start < f.end && f.start < end;
}

/** Maps a device error to an NBD errno: a known `code` where there is one, EIO otherwise. */
function errnoFor(e: unknown): number {
  const code = (e as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOSPC': return P.NBD_ENOSPC;
    case 'EPERM': case 'EROFS': case 'EACCES': return P.NBD_EPERM;
    case 'ENOMEM': return P.NBD_ENOMEM;
    case 'EINVAL': return P.NBD_EINVAL;
    default: return e instanceof RangeError ? P.NBD_EINVAL : P.NBD_EIO;
  }
}

export class NbdServer {
  private readonly log: Logger;
  private readonly opts: Required<Pick<NbdServerOptions, 'maxInFlight' | 'minBlockSize'>> & { tls?: NbdTlsOptions };
  private server: net.Server | undefined;
  private socketPath: string | undefined;
  private readonly connections = new Set<NbdConnection>();

  constructor(private readonly provider: BlockDeviceProvider, opts: NbdServerOptions = {}) {
    this.log = opts.logger ?? silentLogger;
    const maxInFlight = opts.maxInFlight ?? 64;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new Error(`maxInFlight must be a positive integer, got ${maxInFlight}`);
    const minBlockSize = opts.minBlockSize ?? 1;
    if (minBlockSize !== 1 && minBlockSize !== 512) throw new Error(`minBlockSize must be 1 or 512, got ${minBlockSize}`);
    if (opts.tls) checkTlsOptions(opts.tls);
    this.opts = { maxInFlight, minBlockSize, tls: opts.tls };
  }

  /** Number of client connections currently open. */
  get connectionCount(): number { return this.connections.size; }

  async listen(opts: NbdListenOptions): Promise<NbdListenResult> {
    if (this.server) throw new Error('NbdServer is already listening');
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    server.on('error', (e) => this.log.error({ err: e }, 'nbd: listener error'));
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(new Error(`cannot listen for NBD on ${'path' in opts ? opts.path : `${opts.host}:${opts.port}`}: ${e.message}`));
      server.once('error', onError);
      const done = () => { server.off('error', onError); resolve(); };
      if ('path' in opts) server.listen(opts.path, done);
      else server.listen(opts.port, opts.host, done);
    });
    this.server = server;
    let result: NbdListenResult;
    if ('path' in opts) {
      this.socketPath = opts.path;
      result = { address: opts.path, uri: `nbd+unix:///?socket=${opts.path}` };
    } else {
      const a = server.address() as net.AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      result = { address: `${host}:${a.port}`, port: a.port, uri: `nbd://${host}:${a.port}` };
    }
    this.log.info({ address: result.address }, 'nbd: listening');
    return result;
  }

  /** Stops accepting, lets in-flight requests finish (briefly), closes every connection. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((r) => server.close(() => r()));
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await closed;
    if (this.socketPath) {
      try { fs.unlinkSync(this.socketPath); } catch { /* already gone */ }
      this.socketPath = undefined;
    }
  }

  private accept(socket: net.Socket): void {
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix';
    socket.setNoDelay(true);
    const conn = new NbdConnection(socket, this.provider, this.opts, this.log, peer);
    this.connections.add(conn);
    socket.on('close', () => this.connections.delete(conn));
    this.log.debug({ peer }, 'nbd: client connected');
    void conn.run();
  }
}
