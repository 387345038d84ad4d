// The TCP listener of the data protocol: frames in, requests handled concurrently, responses
// written as they complete. A malformed frame gets BAD_REQUEST when its request id is
// readable; an oversized or unparseable one closes that connection, with the reason logged.

import net from 'node:net';
import type { Logger } from '../common/log.ts';
import { FrameError, FrameReader, decodeRequest, encodeResponse } from '../protocol/codec.ts';
import { Status, type Request, type Response } from '../protocol/messages.ts';

/** Per-connection cap on requests being handled; reading pauses above it (backpressure). */
const MAX_IN_FLIGHT = 256;

export class DataServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly handle: (req: Request) => Promise<Response>,
    private readonly log: Logger,
  ) {
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
    const send = (res: Response) => {
      if (open) sock.write(encodeResponse(res));
    };
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
        inFlight++;
        if (inFlight >= MAX_IN_FLIGHT) sock.pause();
        this.handle(req).then(send, (err) => {
          // The handler maps every error to a response; reaching here is a bug, but not a crash.
          this.log.error({ err, peer }, 'request handler threw');
          send({ op: req.op, status: Status.IO_ERROR, requestId: req.requestId, epoch: 0, payload: Buffer.from(String(err)) });
        }).finally(() => {
          inFlight--;
          if (inFlight < MAX_IN_FLIGHT && sock.isPaused()) sock.resume();
        });
      },
      (err) => {
        this.log.warn({ peer, reason: err.message }, 'closing connection: bad frame');
        open = false;
        sock.destroy();
      },
    );
    sock.on('data', (chunk) => reader.push(chunk));
    sock.on('error', () => { /* reset by peer: close handles cleanup */ });
    sock.on('close', () => {
      open = false;
      this.sockets.delete(sock);
    });
  }
}
