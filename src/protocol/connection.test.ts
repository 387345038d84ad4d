// Request timeouts of a data connection, against real sockets: a short per-call timeout gives
// up on that request only; the connection's full timeout takes the connection down (the server
// is treated as gone) and fails everything else in flight; answered requests leave no timer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ConnectionError, DataConnection, RequestTimeoutError } from './connection.ts';
import { FrameReader, decodeRequest, encodeResponse } from './codec.ts';
import { Op, Status } from './messages.ts';

/** A server that answers READs of offset 0 and never answers anything else. */
async function server(): Promise<{ addr: string; close: () => Promise<void> }> {
  const socks = new Set<net.Socket>();
  const srv = net.createServer((sock) => {
    socks.add(sock);
    const reader = new FrameReader((body) => {
      const req = decodeRequest(body);
      if (req.offset === 0) sock.write(encodeResponse({ op: req.op, status: Status.OK, requestId: req.requestId, epoch: 1, payload: Buffer.from('ok') }));
    }, () => sock.destroy());
    sock.on('data', (c) => reader.push(c));
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  return {
    addr: `127.0.0.1:${port}`,
    close: () => {
      for (const s of socks) s.destroy();
      return new Promise((r) => srv.close(() => r()));
    },
  };
}

const read = (offset: number) => ({ op: Op.READ, flags: 0, epoch: 1, segmentId: 'v/0', offset, length: 2, payload: Buffer.alloc(0) });

test('a per-call timeout rejects that request only; the full timeout closes the connection and fails the rest', async () => {
  const s = await server();
  const conn = new DataConnection(s.addr, { requestTimeoutMs: 400 });
  try {
    const answered = await conn.send(read(0));
    assert.equal(answered.payload.toString(), 'ok');
    const t0 = performance.now();
    await assert.rejects(conn.send(read(4096), 100), (err: unknown) => err instanceof RequestTimeoutError && /100 ms/.test((err as Error).message));
    const waited = performance.now() - t0;
    assert.ok(waited >= 99 && waited < 400, `per-call timeout after ${waited.toFixed(0)} ms`);
    assert.equal(conn.isClosed, false, 'a short per-call timeout keeps the connection');
    assert.equal((await conn.send(read(0))).status, Status.OK);
    // Full timeout: this request times out and takes the connection (and the one without a timeout) down.
    const never = conn.send(read(8192), 0);
    const full = conn.send(read(8192));
    await assert.rejects(full, RequestTimeoutError);
    await assert.rejects(never, (err: unknown) => err instanceof ConnectionError && /timed out after 400 ms/.test((err as Error).message));
    assert.equal(conn.isClosed, true);
    assert.equal(conn.inFlight, 0);
  } finally {
    conn.close();
    await s.close();
  }
});
