// Unit tests of the auth layer: key files, the challenge-response, the keyring as the embedded
// metadata store holds it (the same KvStore path servers follow), and the role/route rules.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EmbeddedKvStore } from '../metadata/embedded-kv.ts';
import { Flag, Op } from '../protocol/messages.ts';
import { dataRequestRefusal } from '../protocol/data-policy.ts';
import { AuthError, bearerToken, loadKeyFile, newSecret, parseBearerToken, signingKeyOf, verifierOf, writeKeyFile, type Credential } from './credentials.ts';
import { SignatureError, signJson, verifySignedJson } from './signed-json.ts';
import { checkServerSignature, clientProof, newNonce, verifyProof } from './handshake.ts';
import { Keyring, KeyringConflictError, createEntity, entityKey, revokeEntity } from './keyring.ts';
import { can, httpCapability, type Identity } from './policy.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'presage-auth-'));

test('key files: written 0600 and read back; a file others can read, a bad one or a missing one is refused with a reason', () => {
  const dir = tmp();
  const file = path.join(dir, 'k.key');
  const cred = { name: 'alice', secret: newSecret() };
  writeKeyFile(file, cred, 'client');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const back = loadKeyFile(file);
  assert.equal(back.name, 'alice');
  assert.ok(back.secret.equals(cred.secret));

  fs.chmodSync(file, 0o644);
  assert.throws(() => loadKeyFile(file), (e: unknown) => e instanceof AuthError && e.code === 'ERR_PRESAGE_BAD_KEY_FILE' && /readable by others/.test(e.message));
  fs.writeFileSync(path.join(dir, 'bad.key'), '{"entity":"x","secret":"c2hvcnQ="}', { mode: 0o600 });
  assert.throws(() => loadKeyFile(path.join(dir, 'bad.key')), /32-byte secret/);
  assert.throws(() => loadKeyFile(path.join(dir, 'none.key')), /cannot read key file .*ENOENT/);
  fs.rmSync(dir, { recursive: true });
});

test('bearer tokens name their entity; the verifier holds only hashes, never the secret or the token', () => {
  const cred = { name: 'op-1', secret: newSecret() };
  const t = bearerToken(cred);
  const parsed = parseBearerToken(t)!;
  assert.equal(parsed.name, 'op-1');
  const v = verifierOf(cred.secret);
  assert.ok(parsed.hash.equals(v.tokenHash));
  for (const k of [v.storedKey, v.serverKey, v.tokenHash]) {
    assert.ok(!k.equals(cred.secret));
    assert.ok(!t.includes(k.toString('base64url')));
  }
  assert.equal(parseBearerToken('presage1.op-1.short'), undefined);
  assert.equal(parseBearerToken('Basic abc'), undefined);
});

test('challenge-response: the right key passes both ways; a wrong key, a replayed proof or a foreign verifier fails', () => {
  const cred = { name: 'srv-a', secret: newSecret() };
  const v = verifierOf(cred.secret);
  const cn = newNonce();
  const sn = newNonce();
  const proof = clientProof(cred, cn, sn);
  const sig = verifyProof(cred.name, v, cn, sn, proof);
  assert.ok(sig, 'the proof verifies');
  assert.ok(checkServerSignature(cred, cn, sn, sig), 'the server proves it holds the verifier');

  assert.equal(verifyProof(cred.name, v, cn, sn, clientProof({ name: 'srv-a', secret: newSecret() }, cn, sn)), undefined, 'wrong key');
  assert.equal(verifyProof(cred.name, v, cn, newNonce(), proof), undefined, 'a recorded proof against a fresh server nonce');
  assert.equal(verifyProof('other', v, cn, sn, proof), undefined, 'a proof bound to another name');
  const foreign = verifierOf(newSecret());
  const fakeSig = verifyProof(cred.name, foreign, cn, sn, clientProof({ name: 'srv-a', secret: Buffer.alloc(32) }, cn, sn));
  assert.equal(fakeSig, undefined);
  // A server that does not hold this entity's verifier cannot produce its signature.
  assert.equal(checkServerSignature(cred, cn, sn, Buffer.alloc(32)), false);
  assert.equal(verifyProof(cred.name, v, cn, sn, Buffer.alloc(5)), undefined, 'a short proof');
});

test('keyring: entities created through the store authenticate; a name is never reused; a revoked one stops at once', async () => {
  const kv = EmbeddedKvStore.open(':memory:');
  const ring = new Keyring(kv, { pollTimeoutMs: 100 });
  await ring.start();
  try {
    const alice = { name: 'alice', secret: newSecret() };
    await createEntity(kv, { name: 'alice', role: 'client', volumes: ['db-*'], readOnly: true }, verifierOf(alice.secret));
    await assert.rejects(createEntity(kv, { name: 'alice', role: 'admin' }, verifierOf(newSecret())), KeyringConflictError);
    await assert.rejects(createEntity(kv, { name: 'bob', role: 'client' }, verifierOf(newSecret())), /at least one volume grant/);
    await assert.rejects(createEntity(kv, { name: 'bad name', role: 'reader' }, verifierOf(newSecret())), /invalid entity name/);
    await assert.rejects(createEntity(kv, { name: 'carol', role: 'root' as never }, verifierOf(newSecret())), /invalid role/);

    // An entity made a moment ago authenticates at once (a miss catches up with the store).
    const id = await ring.authorize(`Bearer ${bearerToken(alice)}`);
    assert.deepEqual(id, { name: 'alice', role: 'client', volumes: ['db-*'], readOnly: true });
    // The stored record holds verifiers, not the secret.
    const stored = (await kv.get(entityKey('alice')))!.value;
    assert.ok(!stored.includes(alice.secret.toString('base64')));

    const wrong = await ring.authorize(`Bearer ${bearerToken({ name: 'alice', secret: newSecret() })}`);
    assert.ok(wrong instanceof AuthError && wrong.code === 'ERR_PRESAGE_UNAUTHENTICATED');
    assert.ok((await ring.authorize(undefined)) instanceof AuthError);
    assert.ok((await ring.authorize('Bearer garbage')) instanceof AuthError);

    // Only a live admin's key verifies signatures (model bundles).
    const root = { name: 'root', secret: newSecret() };
    await createEntity(kv, { name: 'root', role: 'admin' }, verifierOf(root.secret));
    await ring.replica.refresh();
    assert.deepEqual(ring.trustedSigner('root'), signingKeyOf(root.secret).publicKey);
    assert.match(String(ring.trustedSigner('alice')), /its role is client/);
    assert.match(String(ring.trustedSigner('nobody')), /no such entity/);
    await revokeEntity(kv, 'root');

    let changed = 0;
    ring.on('change', () => changed++);
    await revokeEntity(kv, 'alice');
    await ring.replica.refresh();
    assert.ok(changed > 0);
    assert.equal(ring.isLive('alice'), false);
    assert.match(String(ring.trustedSigner('root')), /it was revoked/);
    assert.ok((await ring.authorize(`Bearer ${bearerToken(alice)}`)) instanceof AuthError, 'a revoked entity is refused, cached token or not');
    assert.equal(ring.list().find((e) => e.name === 'alice')?.revokedAt !== undefined, true);
    assert.ok(!JSON.stringify(ring.list()).includes('storedKey'), 'listings carry no verifier');
  } finally {
    await ring.stop();
    await kv.close();
  }
});

test('roles: capabilities per role, and the route table (open routes, servers, volumes, operating, admin)', () => {
  const id = (role: Identity['role']): Identity => ({ name: role, role });
  assert.ok(can(id('admin'), 'admin'));
  assert.ok(!can(id('operator'), 'admin'));
  assert.ok(can(id('operator'), 'operate'));
  assert.ok(!can(id('server'), 'operate'));
  assert.ok(can(id('server'), 'serve'));
  assert.ok(!can(id('client'), 'serve'));
  assert.ok(can(id('reader'), 'read'));
  assert.ok(!can(id('reader'), 'report'));

  assert.equal(httpCapability('GET', '/healthz'), null);
  assert.equal(httpCapability('GET', '/dashboard/app.js'), null);
  assert.equal(httpCapability('GET', '/'), null);
  assert.equal(httpCapability('GET', '/v1/status'), 'read');
  assert.equal(httpCapability('GET', '/metrics'), 'read');
  assert.equal(httpCapability('GET', '/v1/kv/range?prefix=/presage/'), 'read');
  assert.equal(httpCapability('POST', '/v1/servers'), 'serve');
  assert.equal(httpCapability('POST', '/v1/servers/s1/heartbeat'), 'serve');
  assert.equal(httpCapability('POST', '/v1/servers/s1/suspect'), 'report');
  assert.equal(httpCapability('POST', '/v1/servers/s1/drain'), 'operate');
  assert.equal(httpCapability('DELETE', '/v1/volumes/v'), 'volumes');
  assert.equal(httpCapability('POST', '/v1/volumes'), 'volumes');
  assert.equal(httpCapability('POST', '/v1/migrations'), 'operate');
  assert.equal(httpCapability('POST', '/v1/segments/v/0/promote'), 'operate');
  assert.equal(httpCapability('POST', '/v1/model'), 'admin');
  assert.equal(httpCapability('GET', '/v1/model'), 'read');
  assert.equal(httpCapability('POST', '/v1/copy-jobs'), 'admin');
  assert.equal(httpCapability('GET', '/v1/copy-jobs/x?waitMs=5'), 'admin');
  assert.equal(httpCapability('GET', '/v1/auth/entities'), 'admin');
  assert.equal(httpCapability('GET', '/v1/auth/whoami'), 'read');
  assert.equal(httpCapability('DELETE', '/v1/servers/s1/binding'), 'admin');
});

test('data requests: servers and admins send anything; a client only plain I/O on granted volumes, read-only if so', () => {
  const client: Identity = { name: 'app', role: 'client', volumes: ['db', 'logs-*'] };
  const ro: Identity = { ...client, name: 'ro', readOnly: true };
  assert.equal(dataRequestRefusal({ name: 's', role: 'server' }, Op.WRITE, Flag.FORWARDED, 'x/0'), undefined);
  assert.equal(dataRequestRefusal({ name: 'a', role: 'admin' }, Op.PAUSE, 0, 'x/0'), undefined);
  assert.equal(dataRequestRefusal(client, Op.WRITE, Flag.FUA, 'db/3'), undefined);
  assert.equal(dataRequestRefusal(client, Op.READ, 0, 'logs-2026/0'), undefined);
  assert.match(dataRequestRefusal(client, Op.READ, 0, 'other/0')!, /not granted volume other/);
  assert.match(dataRequestRefusal(client, Op.READ, 0, 'dbx/0')!, /not granted/);
  assert.match(dataRequestRefusal(client, Op.WRITE, Flag.FORWARDED, 'db/0')!, /only servers/);
  assert.match(dataRequestRefusal(client, Op.READ, Flag.COPY, 'db/0')!, /only servers/);
  assert.match(dataRequestRefusal(client, Op.PAUSE, 0, 'db/0')!, /only servers/);
  assert.match(dataRequestRefusal(client, Op.CHECKSUMS, 0, 'db/0')!, /only servers/);
  assert.equal(dataRequestRefusal(ro, Op.READ, 0, 'db/0'), undefined);
  assert.match(dataRequestRefusal(ro, Op.TRIM, 0, 'db/0')!, /read-only/);
  assert.match(dataRequestRefusal({ name: 'r', role: 'reader' }, Op.READ, 0, 'db/0')!, /no data access/);
  assert.match(dataRequestRefusal({ name: 'o', role: 'operator' }, Op.READ, 0, 'db/0')!, /no data access/);
});

test('signed JSON: a signature survives the wire (stringify, parse), binds every byte, and names the signer', () => {
  const admin: Credential = { name: 'admin', secret: newSecret() };
  const key = verifierOf(admin.secret).signingKey!;
  assert.equal(key.length, 32);
  assert.deepEqual(signingKeyOf(admin.secret).publicKey, key, 'the signing key is derived from the secret: a standby with the same key file signs the same');
  const doc = { version: 'v1', modes: { a: [1, 2.5, -0, 1e-300] }, notes: 'ünïcode' };
  const wire = JSON.parse(JSON.stringify(signJson(doc, admin)));
  const trusted = (name: string) => (name === 'admin' ? key : 'no such entity');
  assert.deepEqual(verifySignedJson(wire, trusted), JSON.parse(JSON.stringify(doc)));
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return (err as SignatureError).code;
    }
    return 'accepted';
  };
  assert.equal(code(() => verifySignedJson({ ...wire, notes: 'x' }, trusted)), 'ERR_PRESAGE_BAD_SIGNATURE');
  assert.equal(code(() => verifySignedJson({ ...wire, extra: 1 }, trusted)), 'ERR_PRESAGE_BAD_SIGNATURE');
  assert.equal(code(() => verifySignedJson(doc, trusted)), 'ERR_PRESAGE_UNSIGNED');
  assert.equal(code(() => verifySignedJson(JSON.parse(JSON.stringify(signJson(doc, { name: 'mallory', secret: newSecret() }))), trusted)), 'ERR_PRESAGE_UNTRUSTED_SIGNER');
  assert.equal(code(() => verifySignedJson({ ...wire, signature: { signer: 'admin', alg: 'rsa', value: '' } }, trusted)), 'ERR_PRESAGE_BAD_SIGNATURE');
});
