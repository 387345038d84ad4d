// The data port's authentication and per-request authorisation, over real sockets, against a
// keyring held in the embedded metadata store: what a server does with a connection that does
// not authenticate, authenticates wrongly, or asks for more than its identity allows.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { AuthError, newSecret, verifierOf, type Credential } from '../auth/credentials.ts';
import { Keyring, createEntity, revokeEntity } from '../auth/keyring.ts';
import { silentLogger } from '../common/log.ts';
import { EmbeddedKvStore } from '../metadata/embedded-kv.ts';
import { FrameReader, decodeResponse, encodeRequest } from '../protocol/codec.ts';
import { DataConnection } from '../protocol/connection.ts';
import { Flag, Op, Status, type Request, type Response } from '../protocol/messages.ts';
import { DataServer } from './data-server.ts';

let kv: EmbeddedKvStore;
let keyring: Keyring;
let server: DataServer;
let addr: string;
let handled: Request[] = [];
const creds: Record<string, Credential> = {};

async function entity(name: string, spec: Omit<Parameters<typeof createEntity>[1], 'name'>): Promise<Credential> {
  const cred = { name, secret: newSecret() };
  await createEntity(kv, { name, ...spec }, verifierOf(cred.secret));
  creds[name] = cred;
  return cred;
}

before(async () => {
  kv = EmbeddedKvStore.open(':memory:');
  keyring = new Keyring(kv, { pollTimeoutMs: 200 });
  await keyring.start();
  await entity('srv', { role: 'server' });
  await entity('app', { role: 'client', volumes: ['db'] });
  await entity('ro', { role: 'client', volumes: ['db'], readOnly: true });
  await entity('watcher', { role: 'reader' });
  const handle = async (req: Request): Promise<Response> => {
    handled.push(req);
    return { op: req.op, status: Status.OK, requestId: req.requestId, epoch: req.epoch, payload: req.op === Op.READ ? Buffer.alloc(req.length, 7) : Buffer.alloc(0) };
  };
  server = new DataServer(handle, silentLogger, { keyring, handshakeTimeoutMs: 300, maxConnectionsPerPeer: 40 });
  addr = await server.listen('127.0.0.1', 0);
});

after(async () => {
  await server.close();
  await keyring.stop();
  await kv.close();
});

const req = (op: Op, segmentId: string, extra: Partial<Request> = {}): Omit<Request, 'requestId'> => ({
  op, flags: 0, epoch: 1, segmentId, offset: 0, length: op === Op.READ ? 4096 : 0, payload: Buffer.alloc(0), ...extra,
});
const write = (segmentId: string, flags = 0) => req(Op.WRITE, segmentId, { flags, length: 4096, payload: Buffer.alloc(4096, 1) });

/** Raw frames on a socket: what a peer without the client library sends. */
function raw(): Promise<{ send: (r: Request) => void; next: () => Promise<Response | undefined>; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(addr.split(':')[1]), '127.0.0.1');
    const got: Response[] = [];
    const waiters: ((r: Response | undefined) => void)[] = [];
    const reader = new FrameReader((body) => {
      const r = decodeResponse(body);
      const w = waiters.shift();
      if (w) w(r);
      else got.push(r);
    }, () => {});
    sock.on('data', (c) => reader.push(c));
    // On close, a reader still waiting gets undefined: closed without an answer.
    const closed = new Promise<void>((r) => sock.on('close', () => {
      for (const w of waiters.splice(0)) w(undefined);
      r();
    }));
    sock.on('error', () => {});
    sock.once('connect', () => resolve({
      send: (r) => sock.write(encodeRequest(r)),
      next: () => (got.length ? Promise.resolve(got.shift()!) : sock.destroyed ? Promise.resolve(undefined) : new Promise((r) => waiters.push(r))),
      closed,
    }));
    sock.once('error', reject);
  });
}

test('a connection that sends a request before authenticating is answered UNAUTHENTICATED and closed; nothing reaches the handler', async () => {
  handled = [];
  for (const r of [req(Op.READ, 'db/0'), { ...write('db/0'), length: 512, payload: Buffer.alloc(512, 1) }, req(Op.TRIM, 'db/0', { length: 4096 }), { ...write('db/0', Flag.FORWARDED), length: 512, payload: Buffer.alloc(512, 1) }, req(Op.PAUSE, 'db/0', { length: 30000 })]) {
    const c = await raw();
    c.send({ ...r, requestId: 5 });
    const res = await c.next();
    assert.equal(res?.status, Status.UNAUTHENTICATED);
    assert.match(res!.payload.toString(), /authenticate first/);
    await c.closed;
  }
  // A frame larger than any AUTH frame, before authenticating: closed at its length prefix, unread.
  const big = await raw();
  big.send({ ...write('db/0'), length: 128 * 1024, payload: Buffer.alloc(128 * 1024, 1), requestId: 6 });
  assert.equal(await big.next(), undefined);
  await big.closed;
  assert.equal(handled.length, 0);
  // Through the client library with no credential: the same refusal, as a typed error.
  const conn = new DataConnection(addr, { credential: null });
  const res = await conn.send(req(Op.READ, 'db/0'));
  assert.equal(res.status, Status.UNAUTHENTICATED);
  conn.close();
});

test('a wrong key or an unknown entity is refused at connect with an AuthError; the right key works', async () => {
  handled = [];
  for (const cred of [{ name: 'app', secret: newSecret() }, { name: 'nobody', secret: newSecret() }]) {
    const conn = new DataConnection(addr, { credential: cred });
    await assert.rejects(conn.send(req(Op.READ, 'db/0')), (e: unknown) => e instanceof AuthError && /refused .*authentication failed/.test(e.message));
    conn.close();
  }
  assert.equal(handled.length, 0);
  const ok = new DataConnection(addr, { credential: creds.app });
  const res = await ok.send(req(Op.READ, 'db/0'));
  assert.equal(res.status, Status.OK);
  assert.equal(res.payload.length, 4096);
  ok.close();
});

test('a server that does not hold the entity\'s verifier cannot pass itself off as one of the cluster', async () => {
  // A rogue listener that answers the handshake with a made-up signature.
  const rogue = new DataServer(async (r) => ({ op: r.op, status: Status.OK, requestId: r.requestId, epoch: 0, payload: Buffer.alloc(0) }), silentLogger);
  const rogueAddr = await rogue.listen('127.0.0.1', 0);
  try {
    const conn = new DataConnection(rogueAddr, { credential: creds.app });
    // Without a keyring it answers AUTH like any op: OK with an empty payload, never a valid signature.
    await assert.rejects(conn.send(req(Op.READ, 'db/0')), (e: unknown) => e instanceof AuthError && /not a server of this cluster/.test(e.message));
    conn.close();
  } finally {
    await rogue.close();
  }
});

test('per request: a client is FORBIDDEN forged FORWARDED writes, PAUSE, CHECKSUMS and other volumes; read-only grants refuse changes; a server may do all', async () => {
  handled = [];
  const app = new DataConnection(addr, { credential: creds.app });
  const forbidden = [write('db/0', Flag.FORWARDED), write('db/0', Flag.COPY), req(Op.PAUSE, 'db/0', { length: 30000 }), req(Op.CHECKSUMS, 'db/0', { length: 4096 }), req(Op.READ, 'other/0'), write('other/1')];
  for (const r of forbidden) {
    const res = await app.send(r);
    assert.equal(res.status, Status.FORBIDDEN, `${Op[r.op]} flags ${r.flags} ${r.segmentId}`);
  }
  assert.equal(handled.length, 0, 'no refused request reached the handler');
  // The connection stays usable for what is allowed.
  assert.equal((await app.send(write('db/0', Flag.FUA))).status, Status.OK);
  app.close();

  const ro = new DataConnection(addr, { credential: creds.ro });
  assert.equal((await ro.send(req(Op.READ, 'db/2'))).status, Status.OK);
  const refused = await ro.send(write('db/2'));
  assert.equal(refused.status, Status.FORBIDDEN);
  assert.match(refused.payload.toString(), /read-only/);
  ro.close();

  const reader = new DataConnection(addr, { credential: creds.watcher });
  assert.equal((await reader.send(req(Op.READ, 'db/0'))).status, Status.FORBIDDEN);
  reader.close();

  const srv = new DataConnection(addr, { credential: creds.srv });
  for (const r of [write('any/0', Flag.FORWARDED), req(Op.PAUSE, 'any/0', { length: 10 }), req(Op.CHECKSUMS, 'any/0', { length: 4096 })]) {
    assert.equal((await srv.send(r)).status, Status.OK);
  }
  srv.close();
});

test('revoking an entity closes its open connections; it cannot reconnect', async () => {
  const doomed = await entity('doomed', { role: 'client', volumes: ['*'] });
  const conn = new DataConnection(addr, { credential: doomed });
  assert.equal((await conn.send(req(Op.READ, 'x/0'))).status, Status.OK);
  const closed = new Promise<string>((r) => conn.once('closed', r));
  await revokeEntity(kv, 'doomed');
  await keyring.replica.refresh();
  assert.match(await closed, /closed/);
  const again = new DataConnection(addr, { credential: doomed });
  await assert.rejects(again.send(req(Op.READ, 'x/0')), AuthError);
  again.close();
});

test('a connection that never authenticates is closed after the handshake timeout; over the per-peer limit, connections are closed on arrival', async () => {
  const c = await raw();
  const t0 = Date.now();
  await c.closed;
  assert.ok(Date.now() - t0 < 3000, 'closed by the 300 ms handshake timeout');

  const socks: net.Socket[] = [];
  const port = Number(addr.split(':')[1]);
  let refused = 0;
  await Promise.all(Array.from({ length: 45 }, () => new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    socks.push(s);
    s.on('error', () => {});
    s.on('close', () => { refused++; resolve(); });
    // Held connections stay until the handshake timeout; a refused one closes at once.
    setTimeout(resolve, 200);
  })));
  assert.ok(refused >= 5, `at least the 5 over the limit of 40 were refused (${refused})`);
  for (const s of socks) s.destroy();
  await new Promise((r) => setTimeout(r, 400));
  // The limit counts live connections: after they close, a client connects again.
  const conn = new DataConnection(addr, { credential: creds.app });
  assert.equal((await conn.send(req(Op.READ, 'db/0'))).status, Status.OK);
  conn.close();
});
