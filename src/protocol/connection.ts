// Client side of the data protocol: one TCP connection with many requests in flight, matched
// to their responses by request id. Used by the client library and by servers forwarding
// writes to their peers.

import net from 'node:net';
import tls from 'node:tls';
import { clientCa } from '../common/cluster-tls.ts';
import { EventEmitter } from 'node:events';
import { CoalescingWriter } from '../common/coalescing-writer.ts';
import { AuthError, processCredential, type Credential } from '../auth/credentials.ts';
import { checkServerSignature, clientProof, newNonce } from '../auth/handshake.ts';
import { FrameReader, decodeResponse, encodeRequestHead, type FrameError } from './codec.ts';
import { Op, Status, type Request, type Response } from './messages.ts';

/** The connection failed or closed before the response arrived: the request may or may not have been applied. */
export class ConnectionError extends Error {
  constructor(message: string, readonly address: string) {
    super(`${address}: ${message}`);
    this.name = 'ConnectionError';
  }
}

/** No response within the request timeout. */
export class RequestTimeoutError extends ConnectionError {
  constructor(address: string, ms: number) {
    super(`no response within ${ms} ms`, address);
    this.name = 'RequestTimeoutError';
  }
}

/** The peer could not be reached or dropped the connection (not merely slow): worth reporting as a suspect. */
export function isUnreachable(err: unknown): boolean {
  return err instanceof ConnectionError && !(err instanceof RequestTimeoutError);
}

interface Pending {
  resolve: (r: Response) => void;
  reject: (e: Error) => void;
  /** performance.now() after which the request times out (Infinity: never). */
  deadline: number;
  timeoutMs: number;
}

/**
 * How often a connection looks for timed-out requests. One sweep timer per connection instead of
 * a setTimeout per request (which cost a timer allocation and two timer-list operations on every
 * I/O); a timeout fires up to this much late.
 */
const SWEEP_MS = 50;

export interface ConnectionOptions {
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /**
   * A server in this same process: requests to its address are handed to its request handler
   * directly, with no socket (an NBD export running inside a storage server). Same answers,
   * same checks, one process and one loopback hop fewer.
   */
  local?: LocalEndpoint;
  /**
   * Who this connection authenticates as (auth/handshake.ts) before its first request; default
   * the process's credential. `null`: none (only a server built without a keyring accepts that).
   */
  credential?: Credential | null;
}

/** A request handler reachable in-process under a data address. */
export interface LocalEndpoint {
  address: string;
  handle(req: Request): Promise<Response>;
}

/** Where a request can be sent: a connection to a server, or a server in this process. */
export interface RequestChannel {
  send(req: Omit<Request, 'requestId'>, timeoutMs?: number): Promise<Response>;
}

/** The in-process channel: request ids are assigned as a connection would, timeouts do not apply. */
class LocalChannel implements RequestChannel {
  private nextId = 1;

  constructor(private readonly endpoint: LocalEndpoint) {}

  send(req: Omit<Request, 'requestId'>): Promise<Response> {
    const requestId = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    return this.endpoint.handle({ ...req, requestId }).catch((err: unknown) => {
      // What a socket would have shown: an injected connection reset is a ConnectionError.
      if ((err as { closeConnection?: boolean } | undefined)?.closeConnection === true) throw new ConnectionError('connection reset', this.endpoint.address);
      throw err;
    });
  }
}

export class DataConnection extends EventEmitter {
  private socket?: net.Socket;
  private out?: CoalescingWriter;
  private connecting?: Promise<void>;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private readonly connectTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private sweeper?: NodeJS.Timeout;
  private readonly credential: Credential | undefined;

  constructor(readonly address: string, opts: ConnectionOptions = {}) {
    super();
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 3000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 15000;
    this.credential = opts.credential === undefined ? processCredential() : opts.credential ?? undefined;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Closed for good: the pool replaces a closed connection with a new one. */
  get isClosed(): boolean {
    return this.closed;
  }

  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new ConnectionError('connection closed', this.address));
    if (this.socket) return Promise.resolve();
    if (this.connecting) return this.connecting;
    const idx = this.address.lastIndexOf(':');
    const host = this.address.slice(0, idx).replace(/^\[|\]$/g, '');
    const port = Number(this.address.slice(idx + 1));
    this.connecting = new Promise<void>((resolve, reject) => {
      // TLS when the cluster speaks it: the server's certificate must chain to the cluster CA
      // and name the address dialled (common/cluster-tls.ts).
      const ca = clientCa();
      const sock: net.Socket = ca ? tls.connect({ host, port, ca, servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port });
      sock.setNoDelay(true);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new ConnectionError(`connect timed out after ${this.connectTimeoutMs} ms`, this.address));
      }, this.connectTimeoutMs);
      sock.once(ca ? 'secureConnect' : 'connect', () => {
        // Requests wait until the handshake is done: `socket` is set only then. The connect
        // timeout covers the handshake too (a silent server cannot hold a caller forever).
        const out = new CoalescingWriter(sock);
        this.authenticate(out).then(() => {
          clearTimeout(timer);
          this.socket = sock;
          this.out = out;
          this.connecting = undefined;
          resolve();
        }, (err: Error) => {
          clearTimeout(timer);
          this.connecting = undefined;
          this.closed = true;
          sock.destroy();
          reject(err);
        });
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        if (!this.socket) {
          this.connecting = undefined;
          this.closed = true;
          reject(new ConnectionError(err.message, this.address));
        }
      });
      const reader = new FrameReader(
        (body) => this.onFrame(body),
        (err: FrameError) => this.fail(`bad frame from server: ${err.message}`),
      );
      sock.on('data', (chunk) => reader.push(chunk));
      sock.on('close', () => this.fail('connection closed by peer'));
    });
    return this.connecting;
  }

  /**
   * Sends a request (its requestId is assigned here) and resolves with the response, whatever its
   * status. A request that runs into the connection's full request timeout takes the connection
   * down with it (the server is treated as gone); a shorter, per-call timeout (a read that could
   * go to another replica) only gives up on that one request.
   */
  send(req: Omit<Request, 'requestId'>, timeoutMs = this.requestTimeoutMs): Promise<Response> {
    // Connected (the common case): no await before the write, one promise per request.
    if (!this.socket) {
      if (this.closed) return Promise.reject(new ConnectionError('connection closed', this.address));
      return this.connect().then(() => this.send(req, timeoutMs));
    }
    if (this.closed) return Promise.reject(new ConnectionError('connection closed', this.address));
    const requestId = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    let head: Buffer;
    try {
      head = encodeRequestHead({ ...req, requestId });
    } catch (err) {
      return Promise.reject(err);
    }
    const out = this.out!;
    return new Promise<Response>((resolve, reject) => {
      const p: Pending = { resolve, reject, timeoutMs, deadline: timeoutMs > 0 ? performance.now() + timeoutMs : Infinity };
      if (timeoutMs > 0 && !this.sweeper) this.sweeper = setInterval(this.sweep, SWEEP_MS);
      this.pending.set(requestId, p);
      // Every caller awaits the answer before reusing the payload's buffer (see CoalescingWriter).
      out.writeFrame(head, req.payload);
    });
  }

  close(): void {
    this.fail('connection closed');
  }

  /** The mutual challenge-response (auth/handshake.ts); an AuthError when either side fails it. */
  private async authenticate(out: CoalescingWriter): Promise<void> {
    const cred = this.credential;
    if (!cred) return;
    const clientNonce = newNonce();
    const refused = (res: Response) => new AuthError(`${this.address} refused ${cred.name}: ${res.payload.toString('utf8') || `status ${res.status}`}`, 'ERR_PRESAGE_UNAUTHENTICATED');
    const challenge = await this.exchange(out, { op: Op.AUTH, flags: 0, epoch: 0, segmentId: cred.name, offset: 0, length: 0, payload: clientNonce });
    if (challenge.status !== Status.OK) throw refused(challenge);
    const serverNonce = challenge.payload;
    const done = await this.exchange(out, { op: Op.AUTH, flags: 0, epoch: 0, segmentId: cred.name, offset: 1, length: 0, payload: clientProof(cred, clientNonce, serverNonce) });
    if (done.status !== Status.OK) throw refused(done);
    if (!checkServerSignature(cred, clientNonce, serverNonce, done.payload)) {
      throw new AuthError(`${this.address} could not prove it knows ${cred.name}'s verifier: not a server of this cluster`, 'ERR_PRESAGE_UNAUTHENTICATED');
    }
  }

  /** One request/response of the handshake, before the connection is open to callers. */
  private exchange(out: CoalescingWriter, req: Omit<Request, 'requestId'>): Promise<Response> {
    const requestId = this.nextId++;
    return new Promise<Response>((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject, timeoutMs: 0, deadline: Infinity });
      out.writeFrame(encodeRequestHead({ ...req, requestId }), req.payload);
    });
  }

  /** Times out the requests past their deadline; stops itself when nothing is in flight. */
  private readonly sweep = (): void => {
    if (this.pending.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      return;
    }
    const now = performance.now();
    let takeDown = 0;
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(id);
      p.reject(new RequestTimeoutError(this.address, p.timeoutMs));
      // A server that stops answering is treated as gone: later requests reconnect.
      if (p.timeoutMs >= this.requestTimeoutMs) takeDown = p.timeoutMs;
    }
    if (takeDown) this.fail(`request timed out after ${takeDown} ms`);
  };

  private onFrame(body: Buffer): void {
    let res: Response;
    try {
      res = decodeResponse(body);
    } catch (err) {
      this.fail(`bad response: ${(err as Error).message}`);
      return;
    }
    const p = this.pending.get(res.requestId);
    if (!p) return; // a response to a request that already timed out
    this.pending.delete(res.requestId);
    p.resolve(res);
  }

  private fail(reason: string): void {
    if (this.closed && this.pending.size === 0 && !this.socket) return;
    this.closed = true;
    const sock = this.socket;
    this.socket = undefined;
    this.out = undefined;
    sock?.destroy();
    const err = new ConnectionError(reason, this.address);
    for (const [, p] of this.pending) p.reject(err);
    this.pending.clear();
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.emit('closed', reason);
  }
}

/** One live connection per server address, re-dialled after a failure. */
export class ConnectionPool {
  private readonly conns = new Map<string, DataConnection>();
  private readonly local?: LocalChannel;

  constructor(private readonly opts: ConnectionOptions = {}) {
    if (opts.local) this.local = new LocalChannel(opts.local);
  }

  get requestTimeoutMs(): number {
    return this.opts.requestTimeoutMs ?? 15000;
  }

  get(address: string): RequestChannel {
    if (this.local && address === this.opts.local!.address) return this.local;
    let c = this.conns.get(address);
    if (!c || c.isClosed) {
      c = new DataConnection(address, this.opts);
      const conn = c;
      conn.once('closed', () => {
        if (this.conns.get(address) === conn) this.conns.delete(address);
      });
      this.conns.set(address, c);
    }
    return c;
  }

  /** Closes the connection to one address: its requests in flight fail at once with a ConnectionError. */
  close(address: string): void {
    this.conns.get(address)?.close();
    this.conns.delete(address);
  }

  closeAll(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }
}
