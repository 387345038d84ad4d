// Request timeouts of a data connection, against real sockets: a short per-call timeout gives
// up on that request only; the connection's full timeout takes the connection down (the server
// is treated as gone) and fails everything else in flight; answered requests leave no timer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ConnectionError, ConnectionPool, DataConnection, RequestTimeoutError } from './connection.ts';
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

test('a pool with a local endpoint hands requests for its address to the handler (no socket) and dials every other address', async () => {
  const srv = await server();
  const seen: { requestId: number; offset: number }[] = [];
  const pool = new ConnectionPool({
    requestTimeoutMs: 2000,
    local: {
      address: '127.0.0.1:1', // nothing listens there: a socket would fail
      handle: async (req) => {
        seen.push({ requestId: req.requestId, offset: req.offset });
        if (req.offset === 9) throw Object.assign(new Error('injected reset'), { closeConnection: true });
        return { op: req.op, status: Status.OK, requestId: req.requestId, epoch: 3, payload: Buffer.from('here') };
      },
    },
  });
  try {
    const a = await pool.get('127.0.0.1:1').send(read(0));
    const b = await pool.get('127.0.0.1:1').send(read(4096));
    assert.equal(a.payload.toString(), 'here');
    assert.equal(b.epoch, 3);
    assert.deepEqual(seen, [{ requestId: 1, offset: 0 }, { requestId: 2, offset: 4096 }], 'each request gets its own id');
    // An injected connection reset looks like one on a socket: a ConnectionError.
    await assert.rejects(pool.get('127.0.0.1:1').send(read(9)), ConnectionError);
    const remote = await pool.get(srv.addr).send(read(0));
    assert.equal(remote.payload.toString(), 'ok', 'other addresses still go over the network');
  } finally {
    pool.closeAll();
    await srv.close();
  }
});
