// NBD over TLS-PSK with real clients: `presage nbd --tls-psk-file` (TLS required) serves nbdcopy
// and qemu-io, whose PSK identities are Presage entities; each sees only the volumes it is
// granted; plain NBD and a wrong key are refused. The bytes are checked against what the
// cluster holds (`presage volume export` through the ordinary client).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, spawnPresage, TestCluster, type Proc } from './helpers/cluster.ts';
import { ensureTools, MiB, run, sha256 } from './helpers/nbd-tools.ts';

let cluster: TestCluster;
let nbd: Proc;
let port: number;
let tmp: string;
let psk: string;
const SIZE = 16 * MiB;

before(async () => {
  ensureTools(['nbdcopy', 'nbdinfo', 'qemu-io']);
  cluster = await TestCluster.start({ servers: 2 });
  tmp = path.join(cluster.root, 'tls');
  fs.mkdirSync(tmp);
  for (const v of ['secret-db', 'other']) {
    const r = await cluster.cli(['volume', 'create', v, '--size', String(SIZE), '--segment-size', String(4 * MiB), '--replicas', '2']);
    assert.equal(r.code, 0, r.stderr);
  }
  // Two client entities, each granted one volume; their PSK lines make the keys file that both
  // the export and the NBD clients read (qemu wants it named keys.psk in a directory).
  for (const [name, vol] of [['alice', 'secret-db'], ['bob', 'other']]) {
    const r = await cluster.cli(['auth', 'create', name, '--role', 'client', '--volume', vol, '--out', path.join(tmp, `${name}.key`)]);
    assert.equal(r.code, 0, r.stderr);
  }
  const lines = await cluster.cli(['auth', 'psk', path.join(tmp, 'alice.key'), path.join(tmp, 'bob.key')]);
  assert.equal(lines.code, 0, lines.stderr);
  assert.match(lines.stdout, /^alice:[0-9a-f]{64}\nbob:[0-9a-f]{64}\n$/);
  psk = path.join(tmp, 'keys.psk');
  fs.writeFileSync(psk, lines.stdout, { mode: 0o600 });
  port = await freePort();
  nbd = await spawnPresage(['nbd', '--listen', `127.0.0.1:${port}`, '--tls-psk-file', psk, '--orchestrator', cluster.url], /nbd export listening/);
});

after(async () => {
  if (nbd) await cluster.kill(nbd, 'SIGTERM');
  await cluster?.stop();
});

const uri = (user: string, vol: string, keys = psk) => `nbds://${user}@127.0.0.1:${port}/${vol}?tls-psk-file=${keys}`;

describe('presage nbd with TLS-PSK required', () => {
  test('nbdcopy writes and reads a granted volume over TLS, byte for byte what the cluster holds', async () => {
    const data = randomBytes(SIZE);
    const src = path.join(tmp, 'src.bin');
    fs.writeFileSync(src, data);
    const w = await run('nbdcopy', ['--flush', src, uri('alice', 'secret-db')], 60_000);
    assert.equal(w.code, 0, w.stderr);
    const dst = path.join(tmp, 'dst.bin');
    const r = await run('nbdcopy', [uri('alice', 'secret-db'), dst], 60_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha256(fs.readFileSync(dst)), sha256(data));
    const viaCli = path.join(tmp, 'cli.bin');
    const ex = await cluster.cli(['volume', 'export', 'secret-db', viaCli]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.equal(sha256(fs.readFileSync(viaCli)), sha256(data), 'the cluster holds what nbdcopy wrote');
    const info = await run('nbdinfo', [uri('alice', 'secret-db')]);
    assert.match(info.stdout, /newstyle-fixed with TLS/);
  });

  test('qemu-io with tls-creds-psk writes a pattern and reads it back; the cluster agrees', async () => {
    const args = [
      '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${tmp},username=alice`,
      '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},export=secret-db,tls-creds=tls0`,
      '-c', 'write -P 0x5c 1M 2M', '-c', 'read -P 0x5c 1M 2M', '-c', 'flush',
    ];
    const q = await run('qemu-io', args, 60_000);
    assert.equal(q.code, 0, q.stderr + q.stdout);
    assert.doesNotMatch(q.stdout, /Pattern verification failed/);
    const viaCli = path.join(tmp, 'cli2.bin');
    const ex = await cluster.cli(['volume', 'export', 'secret-db', viaCli]);
    assert.equal(ex.code, 0, ex.stderr);
    const held = fs.readFileSync(viaCli).subarray(MiB, 3 * MiB);
    assert.ok(held.equals(Buffer.alloc(2 * MiB, 0x5c)), 'the pattern is in the cluster');
  });

  test('refused: plain NBD (TLS required), a wrong key, and a volume the identity is not granted; listing shows only granted volumes', async () => {
    const plain = await run('nbdinfo', [`nbd://127.0.0.1:${port}/secret-db`]);
    assert.notEqual(plain.code, 0, 'plain NBD is refused');
    const plainCopy = await run('nbdcopy', [`nbd://127.0.0.1:${port}/secret-db`, path.join(tmp, 'x.bin')]);
    assert.notEqual(plainCopy.code, 0);

    const wrong = path.join(tmp, 'wrong.psk');
    fs.writeFileSync(wrong, `alice:${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const bad = await run('nbdinfo', [uri('alice', 'secret-db', wrong)]);
    assert.notEqual(bad.code, 0, 'a wrong key fails the TLS handshake');

    const bob = await run('nbdinfo', [uri('bob', 'secret-db')]);
    assert.notEqual(bob.code, 0, 'bob is not granted secret-db');
    const bobCopy = await run('nbdcopy', [uri('bob', 'secret-db'), path.join(tmp, 'y.bin')]);
    assert.notEqual(bobCopy.code, 0);
    const list = await run('nbdinfo', ['--list', uri('bob', '')]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /export="other"/);
    assert.doesNotMatch(list.stdout, /secret-db/);
    // Nothing bob or the others tried changed alice's volume.
    const viaCli = path.join(tmp, 'cli3.bin');
    const ex = await cluster.cli(['volume', 'export', 'secret-db', viaCli]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.ok(fs.readFileSync(viaCli).subarray(MiB, 3 * MiB).equals(Buffer.alloc(2 * MiB, 0x5c)));
  });

  test('a bad PSK file stops the command with a clear error', async () => {
    const loose = path.join(tmp, 'loose.psk');
    fs.writeFileSync(loose, fs.readFileSync(psk), { mode: 0o644 });
    const r = await cluster.cli(['nbd', '--listen', `127.0.0.1:${await freePort()}`, '--tls-psk-file', loose]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /readable by others/);
    const garbled = path.join(tmp, 'garbled.psk');
    fs.writeFileSync(garbled, 'alice=notakey\n', { mode: 0o600 });
    const g = await cluster.cli(['nbd', '--listen', `127.0.0.1:${await freePort()}`, '--tls-psk-file', garbled]);
    assert.equal(g.code, 1);
    assert.match(g.stderr, /garbled\.psk:1: expected identity:hexkey/);
  });
});
