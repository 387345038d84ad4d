// The TCP listener of the data protocol: frames in, requests handled concurrently, responses
// written as they complete. A malformed frame gets BAD_REQUEST when its request id is
// readable; an oversized or unparseable one closes that connection, with the reason logged.
// A READ longer than MAX_IO_BYTES is refused here, before any handler sees it, so no handler
// can be asked for an answer that does not fit in a frame the peer would accept. Incomplete
// frames of all connections together hold at most a server-wide budget; over it, the connection
// holding the most is closed (a flood of partial frames cannot grow memory or lock out a client).
// Requests being handled hold at most a server-wide in-flight budget of bytes (InFlightBudget);
// over it, connections wait and stop reading (backpressure, never an error).

import net from 'node:net';
import nodeTls from 'node:tls';
import { serverTls } from '../common/cluster-tls.ts';
import { NONCE_BYTES, newNonce, verifyProof } from '../auth/handshake.ts';
import type { Keyring } from '../auth/keyring.ts';
import type { Identity } from '../auth/policy.ts';
import { CoalescingWriter } from '../common/coalescing-writer.ts';
import type { Logger } from '../common/log.ts';
import { FrameError, FrameReader, RESPONSE_FIXED, decodeRequest, encodeResponseHead } from '../protocol/codec.ts';
import { dataRequestRefusal } from '../protocol/data-policy.ts';
import { PartialFrameBudget } from '../protocol/partial-frame-budget.ts';
import { InFlightBudget } from './in-flight-budget.ts';
import { MAX_FRAME_BYTES, MAX_IO_BYTES, OP_NAMES, Op, Status, type Request, type Response } from '../protocol/messages.ts';

/** Per-connection cap on requests being handled; reading pauses above it (backpressure). */
const MAX_IN_FLIGHT = 256;
/** Reading also pauses while this much response data waits to be sent (a peer not reading). */
const MAX_UNSENT_BYTES = 16 * 1024 * 1024;
/** Server-wide memory for incomplete frames (see PartialFrameBudget): 8 maximum-size frames. */
export const DEFAULT_PARTIAL_FRAME_BUDGET = 8 * MAX_FRAME_BYTES;
/** Server-wide bytes held by requests being handled (WRITE payloads, READ data): 256 MiB. */
export const DEFAULT_IN_FLIGHT_BUDGET = 256 * 1024 * 1024;
/** What a request costs the in-flight budget besides its data (its decoded form, its promise). */
const REQUEST_OVERHEAD_BYTES = 256;
/**
 * Largest frame a connection may send before it has authenticated (AUTH frames are under 700
 * bytes; a small request sent too early still gets its UNAUTHENTICATED answer): an anonymous
 * peer cannot make the server hold megabytes of a frame it will refuse anyway.
 */
const MAX_UNAUTHENTICATED_FRAME = 64 * 1024;

export interface DataServerOptions {
  partialFrameBudgetBytes?: number;
  /** Bytes all connections' requests being handled may hold (default DEFAULT_IN_FLIGHT_BUDGET). */
  inFlightBudgetBytes?: number;
  /**
   * Every connection authenticates against this keyring before its first request, and each
   * request is checked against its identity (auth/policy.ts). Without one the port is open:
   * only unit tests of the framing build a server so; a storage server always passes its keyring.
   */
  keyring?: Keyring;
  /** A connection that has not authenticated within this long is closed (default 5 s). */
  handshakeTimeoutMs?: number;
  /** A connection with nothing in flight and no frame for this long is closed (default 10 min; 0 = never). */
  idleTimeoutMs?: number;
  /** Connections one remote address may hold at once (default 512); more are closed on arrival. */
  maxConnectionsPerPeer?: number;
  /** Serve TLS with this certificate and key (default: the process's cluster TLS, if any). */
  tls?: { cert: string; key: string };
}

export class DataServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  /** What incomplete frames of all connections hold (exposed for tests and diagnostics). */
  readonly partialFrames: PartialFrameBudget;
  /** What requests being handled hold, server-wide (exposed for tests and diagnostics). */
  readonly inFlightBytes: InFlightBudget;

  private readonly keyring?: Keyring;
  private readonly handshakeTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxPerPeer: number;
  private readonly perPeer = new Map<string, number>();
  /** Authenticated connections by entity: a revoked entity's connections are closed at once. */
  private readonly byEntity = new Map<net.Socket, string>();
  /** Peers already logged for a refusal (each kind is logged once per peer, not per attempt). */
  private readonly logged = new Set<string>();

  constructor(
    private readonly handle: (req: Request) => Promise<Response>,
    private readonly log: Logger,
    opts: DataServerOptions = {},
  ) {
    this.partialFrames = new PartialFrameBudget(opts.partialFrameBudgetBytes ?? DEFAULT_PARTIAL_FRAME_BUDGET);
    this.inFlightBytes = new InFlightBudget(opts.inFlightBudgetBytes ?? DEFAULT_IN_FLIGHT_BUDGET);
    this.keyring = opts.keyring;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 5000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 600_000;
    this.maxPerPeer = opts.maxConnectionsPerPeer ?? 512;
    // TLS when the cluster speaks it: the frames then run inside TLS (same code from here on).
    const tls = opts.tls ?? serverTls();
    this.server = tls
      ? nodeTls.createServer({ ...tls, handshakeTimeout: this.handshakeTimeoutMs }, (sock) => this.onConnection(sock))
      : net.createServer((sock) => this.onConnection(sock));
    if (tls) this.server.on('tlsClientError', (err, sock) => this.logOnce('tls', sock.remoteAddress ?? '?', { reason: err.message }, 'refused a connection: TLS handshake failed'));
    this.keyring?.on('change', () => {
      for (const [sock, name] of this.byEntity) {
        if (this.keyring!.isLive(name)) continue;
        this.log.warn({ entity: name }, 'closing a connection of a revoked entity');
        sock.destroy();
      }
    });
  }

  /** Logs a refusal once per peer and kind (a hostile peer retrying must not flood the log). */
  private logOnce(kind: string, peerHost: string, fields: Record<string, unknown>, msg: string): void {
    const key = `${kind} ${peerHost}`;
    if (this.logged.has(key)) return;
    if (this.logged.size > 10000) this.logged.clear();
    this.logged.add(key);
    this.log.warn({ peer: peerHost, ...fields }, msg);
  }

  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        const a = this.server.address() as net.AddressInfo;
        resolve(`${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`);
      });
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(sock: net.Socket): void {
    const peerHost = sock.remoteAddress ?? '?';
    const held = (this.perPeer.get(peerHost) ?? 0) + 1;
    if (held > this.maxPerPeer) {
      this.logOnce('conn-limit', peerHost, { limit: this.maxPerPeer }, 'refusing a connection: too many from this peer');
      sock.destroy();
      return;
    }
    this.perPeer.set(peerHost, held);
    sock.setNoDelay(true);
    this.sockets.add(sock);
    const peer = `${sock.remoteAddress}:${sock.remotePort}`;
    // Authentication state: nothing but AUTH until `identity` is set.
    let identity: Identity | undefined;
    let pendingAuth: { name: string; clientNonce: Buffer; serverNonce: Buffer } | undefined;
    let checking = false;
    const handshakeTimer = this.keyring
      ? setTimeout(() => {
        this.logOnce('handshake-timeout', peerHost, { ms: this.handshakeTimeoutMs }, 'closing a connection that did not authenticate in time');
        sock.destroy();
      }, this.handshakeTimeoutMs)
      : undefined;
    handshakeTimer?.unref();
    let inFlight = 0;
    let open = true;
    const out = new CoalescingWriter(sock);
    // Requests decoded but not yet handed to the handler: a chunk may carry many frames, so
    // pausing the socket alone does not stop them. They wait here while the connection is congested.
    const backlog: Request[] = [];
    // READ data being fetched counts too: it will sit in the send buffer soon.
    let readBytesInFlight = 0;
    const congested = () => inFlight >= MAX_IN_FLIGHT || sock.writableLength + readBytesInFlight > MAX_UNSENT_BYTES;
    const send = (res: Response) => {
      if (!open) return;
      if (res.payload.length + RESPONSE_FIXED > MAX_FRAME_BYTES) {
        // The peer's reader would drop the connection on this frame (and every answer behind
        // it): answer this request alone with an error instead. A handler bug, not the peer's.
        this.log.error({ peer, op: res.op, requestId: res.requestId, bytes: res.payload.length }, 'response exceeds the frame limit');
        res = { op: res.op, status: Status.IO_ERROR, requestId: res.requestId, epoch: res.epoch, payload: Buffer.from(`response of ${res.payload.length} bytes exceeds the frame limit of ${MAX_FRAME_BYTES}`) };
      }
      out.writeFrame(encodeResponseHead(res), res.payload);
    };
    const costOf = (req: Request) => REQUEST_OVERHEAD_BYTES + req.payload.length + (req.op === Op.READ ? req.length : 0);
    const dispatch = (req: Request, cost: number) => {
      inFlight++;
      const readBytes = req.op === Op.READ ? req.length : 0;
      readBytesInFlight += readBytes;
      const settle = () => {
        inFlight--;
        readBytesInFlight -= readBytes;
        this.inFlightBytes.give(cost);
        pump();
      };
      const fail = (err: unknown) => {
        if ((err as { closeConnection?: boolean } | undefined)?.closeConnection === true) {
          // Fault injection (net-loss): the connection is reset instead of answered.
          open = false;
          sock.destroy();
        } else {
          // The handler maps every error to a response; reaching here is a bug, but not a crash.
          this.log.error({ err, peer }, 'request handler threw');
          send({ op: req.op, status: Status.IO_ERROR, requestId: req.requestId, epoch: 0, payload: Buffer.from(String(err)) });
        }
        settle();
      };
      // One promise reaction per request (no .then/.finally chain): a handler that throws
      // synchronously still becomes a response.
      let answer: Promise<Response>;
      try {
        answer = this.handle(req);
      } catch (err) {
        fail(err);
        return;
      }
      answer.then((res) => { send(res); settle(); }, fail);
    };
    const pump = () => {
      while (open && backlog.length > 0 && !congested()) {
        const cost = costOf(backlog[0]!);
        if (!this.inFlightBytes.tryTake(cost)) {
          // The server as a whole holds its budget: this connection waits its turn, not reading.
          this.inFlightBytes.waitForRoom(pump);
          break;
        }
        dispatch(backlog.shift()!, cost);
      }
      if (!open) return;
      if (backlog.length > 0 || congested()) sock.pause();
      else if (sock.isPaused()) sock.resume();
    };
    sock.on('drain', pump);
    const reader = new FrameReader(
      (body) => {
        let req: Request;
        try {
          req = decodeRequest(body);
        } catch (err) {
          const fe = err as FrameError;
          this.log.warn({ peer, reason: fe.message }, 'malformed request');
          if (fe.requestId !== undefined) {
            send({ op: body.length > 1 ? body.readUInt8(1) : 0, status: Status.BAD_REQUEST, requestId: fe.requestId, epoch: 0, payload: Buffer.from(fe.message) });
          } else {
            sock.destroy();
          }
          return;
        }
        if (this.keyring) {
          if (req.op === Op.AUTH || !identity) {
            authStep(req);
            return;
          }
          const refusal = dataRequestRefusal(identity, req.op, req.flags, req.segmentId);
          if (refusal !== undefined) {
            this.logOnce(`forbidden ${identity.name}`, peerHost, { entity: identity.name, op: req.op }, `refused a request: ${refusal}`);
            send({ op: req.op, status: Status.FORBIDDEN, requestId: req.requestId, epoch: 0, payload: Buffer.from(refusal) });
            return;
          }
        }
        if (req.op === Op.READ && req.length > MAX_IO_BYTES) {
          // Checked before dispatch: the answer could not be framed, and the length would also
          // count a bogus amount against the connection's unsent-bytes budget.
          send({ op: req.op, status: Status.BAD_REQUEST, requestId: req.requestId, epoch: 0, payload: Buffer.from(`READ of ${req.length} bytes exceeds ${MAX_IO_BYTES}`) });
          return;
        }
        backlog.push(req);
        pump();
      },
      (err) => {
        this.log.warn({ peer, reason: err.message }, 'closing connection: bad frame');
        open = false;
        sock.destroy();
      },
      this.keyring ? MAX_UNAUTHENTICATED_FRAME : MAX_FRAME_BYTES,
      this.partialFrames,
    );
    const refuse = (req: Request, why: string) => {
      this.logOnce('unauthenticated', peerHost, { reason: why }, 'refused an unauthenticated connection');
      send({ op: req.op, status: Status.UNAUTHENTICATED, requestId: req.requestId, epoch: 0, payload: Buffer.from(why) });
      open = false;
      sock.end();
    };
    // The server side of auth/handshake.ts. Every failure answers alike (no hint whether the
    // entity exists) and closes the connection: a peer gets one try per connection.
    const authStep = (req: Request) => {
      if (req.op !== Op.AUTH) return refuse(req, `authenticate first: ${OP_NAMES[req.op]} before AUTH`);
      if (identity) {
        send({ op: req.op, status: Status.BAD_REQUEST, requestId: req.requestId, epoch: 0, payload: Buffer.from('already authenticated') });
        return;
      }
      if (req.offset === 0 && !pendingAuth) {
        if (req.payload.length !== NONCE_BYTES) return refuse(req, 'bad AUTH: a 32-byte nonce is expected');
        pendingAuth = { name: req.segmentId, clientNonce: Buffer.from(req.payload), serverNonce: newNonce() };
        send({ op: req.op, status: Status.OK, requestId: req.requestId, epoch: 0, payload: pendingAuth.serverNonce });
        return;
      }
      if (req.offset !== 1 || !pendingAuth || req.segmentId !== pendingAuth.name || checking) return refuse(req, 'bad AUTH sequence');
      const p = pendingAuth;
      const finish = (known: ReturnType<Keyring['lookup']>) => {
        checking = false;
        if (!open) return;
        const signature = known && verifyProof(p.name, known.verifier, p.clientNonce, p.serverNonce, req.payload);
        if (!known || !signature) return refuse(req, `authentication failed for ${p.name} (unknown or revoked entity, or wrong key)`);
        identity = known.identity;
        reader.setMaxFrame(MAX_FRAME_BYTES);
        pendingAuth = undefined;
        clearTimeout(handshakeTimer);
        this.byEntity.set(sock, identity.name);
        send({ op: req.op, status: Status.OK, requestId: req.requestId, epoch: 0, payload: signature });
      };
      const known = this.keyring!.lookup(p.name);
      if (known) return finish(known);
      // Not known here yet (created a moment ago?): catch up with the keyring once, then decide.
      checking = true;
      this.keyring!.lookupFresh(p.name).then(finish, () => finish(undefined));
    };
    sock.on('data', (chunk) => reader.push(chunk));
    sock.on('error', () => { /* reset by peer: close handles cleanup */ });
    if (this.idleTimeoutMs > 0) {
      sock.setTimeout(this.idleTimeoutMs, () => {
        // Only a connection with nothing to answer is idle; a slow request keeps it open.
        if (inFlight === 0 && backlog.length === 0) sock.destroy();
      });
    }
    sock.on('close', () => {
      open = false;
      this.inFlightBytes.cancel(pump);
      clearTimeout(handshakeTimer);
      reader.release();
      this.sockets.delete(sock);
      this.byEntity.delete(sock);
      const n = (this.perPeer.get(peerHost) ?? 1) - 1;
      if (n <= 0) this.perPeer.delete(peerHost);
      else this.perPeer.set(peerHost, n);
    });
  }
}
