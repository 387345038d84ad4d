// Security, interface by interface, against a real cluster (orchestrator and servers as real
// processes, each server with its own server-role key): every attempt without a credential or
// with a wrong key is refused with a clear error and has no effect, a credential of the wrong
// role is refused too, and the authorised path still works. Clients act through the CLI, in
// their own processes, with their own key files.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { AuthError, bearerToken, loadKeyFile, newSecret, type Credential } from '../src/auth/credentials.ts';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { signJson } from '../src/auth/signed-json.ts';
import { loadDefaultBundle } from '../src/prediction/model-bundle.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { DataConnection } from '../src/protocol/connection.ts';
import { Flag, Op, Status } from '../src/protocol/messages.ts';
import { TestCluster, runPresage, spawnPresage, freePort, testAdminKey } from './helpers/cluster.ts';
import { replicaDisagreements, waitFor } from './helpers/settle.ts';
import { prng, randomBytes } from './helpers/workload.ts';

const MiB = 1024 * 1024;
const SEG = 4 * MiB;

describe('security: nobody unauthenticated reads, writes, moves or steers anything', () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;
  let keys: string;
  const wrongAdmin: Credential = { name: 'admin', secret: newSecret() };
  const data = randomBytes(prng(5), SEG);
  /** The CLI as some entity (`--key-file`), in its own process. */
  const as = (keyFile: string, args: string[]) => runPresage(['--key-file', keyFile, ...args], cluster.env);
  const keyOf = (name: string) => path.join(keys, `${name}.key`);

  before(async () => {
    cluster = await TestCluster.start({ servers: 3, heartbeatTimeoutMs: 4000 });
    api = new OrchestratorClient(cluster.url);
    keys = path.join(cluster.root, 'keys');
    await api.createVolume({ name: 'vol-a', size: SEG, segmentSize: SEG, replicas: 2 });
    await api.createVolume({ name: 'vol-b', size: SEG, segmentSize: SEG, replicas: 2 });
    const c = await PresageClient.connect({ orchestratorUrl: cluster.url });
    try {
      for (const v of ['vol-a', 'vol-b']) {
        const vol = await c.openVolume(v);
        await vol.write(0, data);
        await vol.flush();
      }
    } finally {
      await c.close();
    }
    // Entities made through the CLI, as an admin would.
    for (const [name, args] of [['app', ['--role', 'client', '--volume', 'vol-a']], ['op', ['--role', 'operator']], ['viewer', ['--role', 'reader']], ['spare', ['--role', 'server']]] as const) {
      const r = await cluster.cli(['auth', 'create', name, ...args, '--out', keyOf(name)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fs.statSync(keyOf(name)).mode & 0o777, 0o600);
    }
  });

  after(async () => {
    api?.close();
    await cluster?.stop();
  });

  it('the CLI manages entities: list shows roles and grants but no key; whoami; a key file is never overwritten', async () => {
    const list = await cluster.cli(['auth', 'list', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const entities = JSON.parse(list.stdout) as { name: string; role: string; volumes?: string[] }[];
    assert.deepEqual(entities.find((e) => e.name === 'app'), { ...entities.find((e) => e.name === 'app'), role: 'client', volumes: ['vol-a'] });
    assert.ok(entities.some((e) => e.name === 'server-0' && e.role === 'server'), 'each test server has its own server entity');
    const secret = loadKeyFile(keyOf('app')).secret.toString('base64');
    assert.ok(!list.stdout.includes(secret) && !/storedKey|tokenHash/.test(list.stdout));
    const who = await as(keyOf('app'), ['auth', 'whoami']);
    assert.equal(who.code, 0, who.stderr);
    assert.match(who.stdout, /app \(role client, volumes vol-a\)/);
    const again = await cluster.cli(['auth', 'create', 'app2', '--role', 'reader', '--out', keyOf('app')]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /exists; pick another --out/);
    const dup = await cluster.cli(['auth', 'create', 'app', '--role', 'reader', '--out', path.join(keys, 'dup.key')]);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /already exists/);
    // --help names the option; no secret anywhere in it.
    const help = await cluster.cli(['auth', 'create', '--help']);
    assert.match(help.stdout, /--role/);
  });

  it('data port: without a credential READ, WRITE and TRIM are refused; a wrong key is refused at connect; nothing changes', async () => {
    const seg = (await api.segments('vol-a'))[0];
    const primary = (await api.status()).servers.find((s) => s.id === seg.replicas[0])!;
    const anon = new DataConnection(primary.dataAddr, { credential: null });
    for (const r of [
      { op: Op.READ, length: 4096, payload: Buffer.alloc(0) },
      { op: Op.WRITE, length: 4096, payload: Buffer.alloc(4096, 0xee) },
      { op: Op.TRIM, length: SEG, payload: Buffer.alloc(0) },
    ]) {
      const c = new DataConnection(primary.dataAddr, { credential: null });
      const res = await c.send({ ...r, flags: 0, epoch: seg.epoch, segmentId: seg.segmentId, offset: 0 });
      assert.equal(res.status, Status.UNAUTHENTICATED, `${Op[r.op]} without a credential`);
      assert.match(res.payload.toString(), /authenticate first/);
      c.close();
    }
    anon.close();
    const wrong = new DataConnection(primary.dataAddr, { credential: wrongAdmin });
    await assert.rejects(wrong.send({ op: Op.WRITE, flags: 0, epoch: seg.epoch, segmentId: seg.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(4096, 0xee) }),
      (e: unknown) => e instanceof AuthError && /authentication failed for admin/.test(e.message));
    wrong.close();
    assert.deepEqual(await replicaDisagreements(api, await api.segments('vol-a'), SEG), []);
  });

  it('data port: a client cannot forge a FORWARDED write onto a replica, PAUSE a segment or touch a volume it is not granted', async () => {
    const app = loadKeyFile(keyOf('app'));
    const seg = (await api.segments('vol-a'))[0];
    const st = await api.status();
    const replica = st.servers.find((s) => s.id === seg.replicas[1])!;
    const primary = st.servers.find((s) => s.id === seg.replicas[0])!;
    const forged = new DataConnection(replica.dataAddr, { credential: app });
    const res = await forged.send({ op: Op.WRITE, flags: Flag.FORWARDED, epoch: seg.epoch, segmentId: seg.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(4096, 0xee) });
    assert.equal(res.status, Status.FORBIDDEN);
    assert.match(res.payload.toString(), /only servers/);
    forged.close();
    const pauser = new DataConnection(primary.dataAddr, { credential: app });
    const paused = await pauser.send({ op: Op.PAUSE, flags: 0, epoch: seg.epoch, segmentId: seg.segmentId, offset: 0, length: 30000, payload: Buffer.alloc(0) });
    assert.equal(paused.status, Status.FORBIDDEN);
    const segB = (await api.segments('vol-b'))[0];
    const other = await pauser.send({ op: Op.READ, flags: 0, epoch: segB.epoch, segmentId: segB.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(0) });
    assert.equal(other.status, Status.FORBIDDEN);
    assert.match(other.payload.toString(), /not granted volume vol-b/);
    pauser.close();
    // No effect: the replicas agree and hold the original bytes.
    assert.deepEqual(await replicaDisagreements(api, await api.segments('vol-a'), SEG), []);

    // The authorised path, in the client's own process: its volume reads back byte for byte,
    // writes go through (not paused), and the other volume is refused with the reason.
    const out = path.join(cluster.root, 'a.bin');
    const exp = await as(keyOf('app'), ['volume', 'export', 'vol-a', out]);
    assert.equal(exp.code, 0, exp.stderr);
    assert.ok(fs.readFileSync(out).equals(data));
    const inFile = path.join(cluster.root, 'in.bin');
    const fresh = randomBytes(prng(6), SEG);
    fs.writeFileSync(inFile, fresh);
    const imp = await as(keyOf('app'), ['volume', 'import', 'vol-a', inFile]);
    assert.equal(imp.code, 0, imp.stderr);
    const back = await as(keyOf('app'), ['volume', 'export', 'vol-a', out]);
    assert.equal(back.code, 0, back.stderr);
    assert.ok(fs.readFileSync(out).equals(fresh));
    const denied = await as(keyOf('app'), ['volume', 'export', 'vol-b', path.join(cluster.root, 'b.bin')]);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /FORBIDDEN: app is not granted volume vol-b/);
    assert.deepEqual(await replicaDisagreements(api, await api.segments('vol-a'), SEG), []);
  });

  it('orchestrator REST: delete, migrate, promote, drain and kv range need a valid token and the right role', async () => {
    const seg = (await api.segments('vol-b'))[0];
    const st = await api.status();
    const spare = st.servers.find((s) => !seg.replicas.includes(s.id))!.id;
    const attempts: [string, string, unknown?][] = [
      ['DELETE', '/v1/volumes/vol-b'],
      ['POST', '/v1/migrations', { segmentId: seg.segmentId, to: spare }],
      ['POST', `/v1/segments/vol-b/0/promote`, { server: seg.replicas[1] }],
      ['POST', `/v1/servers/${seg.replicas[0]}/drain`, { reason: 'hostile' }],
      ['GET', '/v1/kv/range?prefix=/presage/'],
      ['GET', '/v1/auth/entities'],
    ];
    const call = (method: string, p: string, body: unknown, token?: string) => fetch(`${cluster.url}${p}`, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    for (const [method, p, body] of attempts) {
      const none = await call(method, p, body);
      assert.equal(none.status, 401, `${method} ${p} without a token`);
      assert.match(((await none.json()) as { error: string }).error, /authentication required/);
      const wrong = await call(method, p, body, bearerToken(wrongAdmin));
      assert.equal(wrong.status, 401, `${method} ${p} with a wrong key`);
      assert.match(((await wrong.json()) as { error: string }).error, /authentication failed for admin/);
    }
    // A reader may look but not touch; a client may not read the keyring's verifiers.
    const viewer = bearerToken(loadKeyFile(keyOf('viewer')));
    for (const [method, p, body] of attempts.slice(0, 4)) {
      const r = await call(method, p, body, viewer);
      assert.equal(r.status, 403, `${method} ${p} as a reader`);
      assert.match(((await r.json()) as { error: string }).error, /viewer \(role reader\) may not/);
    }
    assert.equal((await call('GET', '/v1/status', undefined, viewer)).status, 200);
    const client = bearerToken(loadKeyFile(keyOf('app')));
    assert.equal((await call('GET', '/v1/kv/range?prefix=/presage-auth/', undefined, client)).status, 403);
    assert.equal((await call('GET', '/v1/kv/range?prefix=/', undefined, client)).status, 403);
    assert.equal((await call('GET', '/healthz', undefined)).status, 200, '/healthz stays open');
    // No effect: the volume, the segment and the servers are as they were.
    const now = await api.status();
    assert.ok(now.volumes.some((v) => v.name === 'vol-b'));
    assert.deepEqual((await api.segments('vol-b'))[0].replicas, seg.replicas);
    assert.equal(now.operators.length, 0);
    assert.ok(now.servers.every((s) => !s.draining));
    // An operator may drain (and undrain) through the CLI.
    const d = await as(keyOf('op'), ['drain', spare]);
    assert.equal(d.code, 0, d.stderr);
    const u = await as(keyOf('op'), ['drain', spare, '--undo']);
    assert.equal(u.code, 0, u.stderr);
    await waitFor('moves started by the drain to finish', async () => (await api.status()).operators.length === 0, 60000);
  });

  it('server admin API: model pushes and copy jobs only from an admin, models only signed by one; scores only with a token; /healthz open', async () => {
    const s = cluster.servers[0];
    const base = `http://127.0.0.1:${s.adminPort}`;
    const post = (p: string, body: unknown, token?: string) => fetch(`${base}${p}`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body),
    });
    const model = { version: 'evil', modes: {} };
    const job = { segmentId: 'vol-a/0', sources: ['127.0.0.1:1'] };
    for (const [p, body] of [['/v1/model', model], ['/v1/copy-jobs', job]] as const) {
      assert.equal((await post(p, body)).status, 401, `${p} without a token`);
      assert.equal((await post(p, body, bearerToken(wrongAdmin))).status, 401, `${p} with a wrong key`);
      const byOp = await post(p, body, bearerToken(loadKeyFile(keyOf('op'))));
      assert.equal(byOp.status, 403, `${p} as an operator`);
      assert.equal((await post(p, body, bearerToken(loadKeyFile(keyOf('spare'))))).status, 403, `${p} as a server`);
    }
    // With the admin's token, the bundle itself must still be signed by a live admin, unaltered.
    const admin = testAdminKey().cred;
    const adminToken = bearerToken(admin);
    const real = { ...(await loadDefaultBundle()), version: 'signed-by-admin', createdAt: new Date().toISOString() };
    const refused = async (body: unknown, code: string, why: RegExp) => {
      const r = await post('/v1/model', body, adminToken);
      const j = (await r.json()) as { error: string; code: string };
      assert.equal(r.status, 403, `${code}: ${j.error}`);
      assert.equal(j.code, code);
      assert.match(j.error, why);
    };
    await refused(real, 'ERR_PRESAGE_UNSIGNED', /model bundle refused: the document is not signed/);
    await refused(signJson(real, loadKeyFile(keyOf('op'))), 'ERR_PRESAGE_UNTRUSTED_SIGNER', /signer "op" is not trusted: its role is operator/);
    await refused(signJson(real, wrongAdmin), 'ERR_PRESAGE_BAD_SIGNATURE', /does not match the document/);
    const altered = signJson(real, admin);
    altered.notes = 'changed after signing';
    await refused(altered, 'ERR_PRESAGE_BAD_SIGNATURE', /does not match the document/);
    const ok = await post('/v1/model', signJson(real, admin), adminToken);
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal(((await ok.json()) as { version: string }).version, 'signed-by-admin', 'a bundle signed by the admin installs');
    assert.equal((await fetch(`${base}/v1/failure-score`)).status, 401);
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const m = await fetch(`${base}/v1/model`, { headers: { authorization: `Bearer ${bearerToken(testAdminKey().cred)}` } });
    assert.equal(m.status, 200);
    assert.equal(((await m.json()) as { version: string }).version, 'signed-by-admin', 'no refused bundle was installed');
  });

  it('rogue servers: registration needs a server key; a known server cannot be taken over by another key or from another address', async () => {
    const victim = (await api.status()).servers[0];
    const reg = { id: victim.id, dataAddr: '127.0.0.1:1', adminAddr: '127.0.0.1:2', capacityBytes: 1 << 40 };
    const post = (token?: string, body: unknown = reg) => fetch(`${cluster.url}/v1/servers`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body),
    });
    assert.equal((await post()).status, 401);
    assert.equal((await post(bearerToken(loadKeyFile(keyOf('app'))))).status, 403, 'a client key cannot register');
    const spare = bearerToken(loadKeyFile(keyOf('spare')));
    const takeover = await post(spare);
    assert.equal(takeover.status, 403, 'another server key cannot take a known id');
    assert.match(((await takeover.json()) as { error: string }).error, new RegExp(`registered by ${victim.credential}`));
    // Its own key, from another address: refused too (a stolen key does not move a server).
    const own = bearerToken(loadKeyFile(path.join(cluster.serverById(victim.id).dir, 'server.key')));
    const moved = await post(own);
    assert.equal(moved.status, 403);
    assert.match(((await moved.json()) as { error: string }).error, /reappeared at 127\.0\.0\.1:1/);
    const after = (await api.status()).servers.find((s) => s.id === victim.id)!;
    assert.equal(after.dataAddr, victim.dataAddr, 'the record is unchanged');
    // A rogue process with a made-up key does not start, and says why.
    const dir = path.join(cluster.root, 'rogue');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'server.key'), JSON.stringify({ entity: 'rogue', secret: newSecret().toString('base64') }), { mode: 0o600 });
    const rogue = await spawnPresage(['server', '--dir', dir, '--orchestrator', cluster.url, '--listen', `127.0.0.1:${await freePort()}`, '--admin', `127.0.0.1:${await freePort()}`], /serving data on/, { PRESAGE_KEY_FILE: '' })
      .then(() => undefined, (err: Error) => err.message);
    assert.match(rogue ?? 'it started', /exited with 1 before ready[\s\S]*refused this server's credential: authentication failed for rogue/);
    assert.equal((await api.status()).servers.length, 3);
  });

  it('revoking an entity stops it everywhere: its next CLI call and its next data connection are refused', async () => {
    const r = await cluster.cli(['auth', 'revoke', 'app']);
    assert.equal(r.code, 0, r.stderr);
    const exp = await as(keyOf('app'), ['volume', 'export', 'vol-a', path.join(cluster.root, 'x.bin')]);
    assert.notEqual(exp.code, 0);
    assert.match(exp.stderr, /authentication failed for app/);
    const seg = (await api.segments('vol-a'))[0];
    const primary = (await api.status()).servers.find((s) => s.id === seg.replicas[0])!;
    await waitFor('the servers to see the revocation', async () => {
      const c = new DataConnection(primary.dataAddr, { credential: loadKeyFile(keyOf('app')) });
      try {
        await c.send({ op: Op.READ, flags: 0, epoch: seg.epoch, segmentId: seg.segmentId, offset: 0, length: 4096, payload: Buffer.alloc(0) });
        return false;
      } catch (err) {
        return err instanceof AuthError;
      } finally {
        c.close();
      }
    }, 10000);
  });
});
