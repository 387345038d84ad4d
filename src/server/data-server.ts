// The TCP listener of the data protocol: frames in, requests handled concurrently, responses
// written as they complete. A malformed frame gets BAD_REQUEST when its request id is
// readable; an oversized or unparseable one closes that connection, with the reason logged.
// A READ longer than MAX_IO_BYTES is refused here, before any handler sees it, so no handler
// can be asked for an answer that does not fit in a frame the peer would accept. Incomplete
// frames of all connections together hold at most a server-wide budget; over it, the connection
// holding the most is closed (a flood of partial frames cannot grow memory or lock out a client).

import net from 'node:net';
import { CoalescingWriter } from '../common/coalescing-writer.ts';
import type { Logger } from '../common/log.ts';
import { FrameError, FrameReader, RESPONSE_FIXED, decodeRequest, encodeResponseHead } from '../protocol/codec.ts';
import { PartialFrameBudget } from '../protocol/partial-frame-budget.ts';
import { MAX_FRAME_BYTES, MAX_IO_BYTES, Op, Status, type Request, type Response } from '../protocol/messages.ts';

/** Per-connection cap on requests being handled; reading pauses above it (backpressure). */
const MAX_IN_FLIGHT = 256;
/** Reading also pauses while this much response data waits to be sent (a peer not reading). */
const MAX_UNSENT_BYTES = 16 * 1024 * 1024;
/** Server-wide memory for incomplete frames (see PartialFrameBudget): 8 maximum-size frames. */
export const DEFAULT_PARTIAL_FRAME_BUDGET = 8 * MAX_FRAME_BYTES;

export class DataServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  /** What incomplete frames of all connections hold (exposed for tests and diagnostics). */
  readonly partialFrames: PartialFrameBudget;

  constructor(
    private readonly handle: (req: Request) => Promise<Response>,
    private readonly log: Logger,
    opts: { partialFrameBudgetBytes?: number } = {},
  ) {
    this.partialFrames = new PartialFrameBudget(opts.partialFrameBudgetBytes ?? DEFAULT_PARTIAL_FRAME_BUDGET);
    this.server = net.createServer((sock) => this.onConnection(sock));
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
    sock.setNoDelay(true);
    this.sockets.add(sock);
    const peer = `${sock.remoteAddress}:${sock.remotePort}`;
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
    const dispatch = (req: Request) => {
      inFlight++;
      const readBytes = req.op === Op.READ ? req.length : 0;
      readBytesInFlight += readBytes;
      const settle = () => {
        inFlight--;
        readBytesInFlight -= readBytes;
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
      while (open && backlog.length > 0 && !congested()) dispatch(backlog.shift()!);
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
      MAX_FRAME_BYTES,
      this.partialFrames,
    );
    sock.on('data', (chunk) => reader.push(chunk));
    sock.on('error', () => { /* reset by peer: close handles cleanup */ });
    sock.on('close', () => {
      open = false;
      reader.release();
      this.sockets.delete(sock);
    });
  }
}
