// `presage nbd` on a real cluster (an orchestrator and 3 storage servers as separate processes on
// loopback), driven by the real NBD clients from Debian: nbdinfo, qemu-io, nbdcopy and fio's nbd
// engine, plus a raw socket for the malformed requests real clients never send.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as P from '../src/nbd/protocol.ts';
import { freePort, spawnPresage, TestCluster, type Proc } from './helpers/cluster.ts';
import { assertFioVerified, ensureTools, MiB, NbdRawClient, run, sha256 } from './helpers/nbd-tools.ts';

const TOOLS = ['nbdinfo', 'nbdcopy', 'qemu-io', 'fio'];

// ---- fixtures: the cluster, its volumes and one `presage nbd` process ----

const VOLUMES = [
  // name, size, segment size, replicas
  { name: 'qio', size: 16 * MiB, segment: 4 * MiB, replicas: 2 },
  { name: 'copy', size: 64 * MiB, segment: 16 * MiB, replicas: 2 },
  { name: 'fio', size: 64 * MiB, segment: 16 * MiB, replicas: 2 },
  { name: 'small', size: 3 * MiB, segment: MiB, replicas: 1 },
];

let cluster: TestCluster;
let nbd: Proc;
let port: number;
let sock: string;
let tmp: string;

before(async () => {
  ensureTools(TOOLS);
  cluster = await TestCluster.start({ servers: 3 });
  tmp = path.join(cluster.root, 'nbd-test');
  fs.mkdirSync(tmp);
  await Promise.all(VOLUMES.map(async (v) => {
    const r = await cluster.cli(['volume', 'create', v.name, '--size', String(v.size), '--segment-size', String(v.segment), '--replicas', String(v.replicas)]);
    assert.equal(r.code, 0, r.stderr);
  }));
  port = await freePort();
  sock = path.join(tmp, 'nbd.sock');
  nbd = await spawnPresage(['nbd', '--orchestrator', cluster.url, '--listen', `127.0.0.1:${port}`, '--socket', sock], /nbd export listening on/);
});

after(async () => {
  if (cluster) {
    await cluster.kill(nbd, 'SIGKILL');
    await cluster.stop();
  }
});

describe('presage nbd on a 3-server cluster, real NBD clients', () => {
  test('prints one ready line with both addresses', () => {
    const lines = nbd.stdout.trim().split('\n');
    assert.equal(lines.length, 1, nbd.stdout);
    assert.equal(lines[0], `nbd export listening on nbd://127.0.0.1:${port} nbd+unix:///?socket=${sock}`);
  });

  test('nbdinfo --list shows every volume with its size and description, over TCP and the Unix socket', async () => {
    for (const uri of [`nbd://127.0.0.1:${port}`, `nbd+unix:///?socket=${sock}`]) {
      const r = await run('nbdinfo', ['--list', '--json', uri]);
      assert.equal(r.code, 0, r.stderr);
      const exports = (JSON.parse(r.stdout) as { exports: { 'export-name': string; 'export-size': number; description?: string }[] }).exports;
      const byName = new Map(exports.map((e) => [e['export-name'], e]));
      assert.deepEqual([...byName.keys()].sort(), VOLUMES.map((v) => v.name).sort());
      for (const v of VOLUMES) {
        assert.equal(byName.get(v.name)!['export-size'], v.size, v.name);
      }
      assert.equal(byName.get('fio')!.description, 'presage volume, 2 replicas, 16 MiB segments');
      assert.equal(byName.get('small')!.description, 'presage volume, 1 replica, 1 MiB segments');
    }
    // The human-readable listing too (what an operator types).
    const plain = await run('nbdinfo', ['--list', `nbd://127.0.0.1:${port}`]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /export="copy":[\s\S]*export-size: 67108864/);
    // A volume created after the export started is listed at once; an unknown name is refused.
    const c = await cluster.cli(['volume', 'create', 'late', '--size', '2MiB', '--segment-size', '1MiB', '--replicas', '1']);
    assert.equal(c.code, 0, c.stderr);
    const late = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/late`]);
    assert.equal(late.code, 0, late.stderr);
    assert.equal((JSON.parse(late.stdout) as { exports: { 'export-size': number }[] }).exports[0]!['export-size'], 2 * MiB);
    // Deleted and created again with another size: the export follows the new volume.
    assert.equal((await cluster.cli(['volume', 'delete', 'late'])).code, 0);
    const again = await cluster.cli(['volume', 'create', 'late', '--size', '3MiB', '--segment-size', '1MiB', '--replicas', '1']);
    assert.equal(again.code, 0, again.stderr);
    const late2 = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/late`]);
    assert.equal(late2.code, 0, late2.stderr);
    assert.equal((JSON.parse(late2.stdout) as { exports: { 'export-size': number }[] }).exports[0]!['export-size'], 3 * MiB);
    assert.equal((await cluster.cli(['volume', 'delete', 'late'])).code, 0);
    const bad = await run('nbdinfo', [`nbd://127.0.0.1:${port}/no-such-volume`]);
    assert.notEqual(bad.code, 0);
  });

  test('qemu-io writes patterns across segment boundaries and reads them back verified', async () => {
    const uri = `nbd://127.0.0.1:${port}/qio`;
    const seg = 4 * MiB;
    // Each write straddles a 4 MiB segment boundary; 0x33 spans three segments and the later
    // 0x22 lands inside it, across a boundary (the later write must win).
    const writes: [number, number, number][] = [
      [0x11, seg - 4096, 8192],
      [0x33, seg + MiB, 2 * seg],
      [0x22, 2 * seg - 512, 1024],
      [0x44, 4 * seg - 4096, 4096], // the last block of the volume
    ];
    const cmds = writes.flatMap(([p, off, len]) => ['-c', `write -P 0x${p.toString(16)} ${off} ${len}`]);
    const r = await run('qemu-io', ['-f', 'raw', uri, ...cmds, '-c', 'flush']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.doesNotMatch(r.stdout + r.stderr, /error|fail/i);
    // Read back in a separate qemu-io process (a fresh connection): -P verifies every byte.
    const reads = [
      ['0x11', seg - 4096, 8192],
      ['0x33', seg + MiB, seg - MiB - 512],
      ['0x22', 2 * seg - 512, 1024],
      ['0x33', 2 * seg + 512, seg + MiB - 512],
      ['0x44', 4 * seg - 4096, 4096],
      ['0', 0, seg - 4096],
      ['0', seg + 4096, MiB - 4096],
    ] as const;
    const rr = await run('qemu-io', ['-f', 'raw', uri, ...reads.flatMap(([p, off, len]) => ['-c', `read -P ${p} ${off} ${len}`])]);
    assert.equal(rr.code, 0, rr.stderr + rr.stdout);
    assert.doesNotMatch(rr.stdout + rr.stderr, /Pattern verification failed|error/i);
    assert.equal((rr.stdout.match(/^read \d+\/\d+ bytes/gm) ?? []).length, reads.length, rr.stdout);
    // A wrong pattern must be detected (the check above can fail).
    const wrong = await run('qemu-io', ['-f', 'raw', uri, '-c', `read -P 0x55 ${seg - 4096} 8192`]);
    assert.match(wrong.stdout + wrong.stderr, /Pattern verification failed/);

    // And the bytes are there in the volume itself, read through the client library's CLI.
    const out = path.join(tmp, 'qio.raw');
    const ex = await cluster.cli(['volume', 'export', 'qio', out]);
    assert.equal(ex.code, 0, ex.stderr);
    const expected = Buffer.alloc(16 * MiB);
    for (const [p, off, len] of writes) expected.fill(p, off, off + len);
    const got = fs.readFileSync(out);
    assert.equal(got.length, expected.length);
    assert.ok(got.equals(expected), 'volume content differs from what qemu-io wrote');
  });

  test('nbdcopy imports a random 64 MiB file and exports it back unchanged', async () => {
    const src = path.join(tmp, 'src.bin');
    const data = randomBytes(64 * MiB);
    fs.writeFileSync(src, data);
    const want = sha256(data);
    const inR = await run('nbdcopy', ['--flush', src, `nbd://127.0.0.1:${port}/copy`], 60_000);
    assert.equal(inR.code, 0, inR.stderr);
    const dst = path.join(tmp, 'dst.bin');
    const outR = await run('nbdcopy', [`nbd+unix:///copy?socket=${sock}`, dst], 60_000);
    assert.equal(outR.code, 0, outR.stderr);
    assert.equal(sha256(fs.readFileSync(dst)), want, 'nbdcopy export differs from the imported file');
    const viaCli = path.join(tmp, 'cli.bin');
    const ex = await cluster.cli(['volume', 'export', 'copy', viaCli]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.equal(sha256(fs.readFileSync(viaCli)), want, '`presage volume export` differs from what nbdcopy imported');
    for (const f of [src, dst, viaCli]) fs.rmSync(f);
  });

  for (const bs of ['4k', '64k']) {
    test(`fio ioengine=nbd: randwrite then verify crc32c, bs=${bs}, iodepth 16, 64 MiB over 16 MiB segments x2 replicas`, async () => {
      const r = await run('fio', [
        `--name=presage-${bs}`, '--ioengine=nbd', `--uri=nbd://127.0.0.1:${port}/fio`,
        '--rw=randwrite', `--bs=${bs}`, '--size=64M', '--iodepth=16',
        '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
        '--output-format=json',
      ], 120_000, tmp);
      assertFioVerified(r, 64 * MiB);
    });
  }
});

describe('malformed and out-of-range requests over a raw socket', () => {
  test('get NBD error replies; the connection and another client keep working', async () => {
    const size = 3 * MiB;
    const a = new NbdRawClient(port);
    assert.equal((await a.go('small')).size, size);
    const b = new NbdRawClient(port);
    assert.equal((await b.go('small')).size, size);

    // Data across the two 1 MiB segment boundaries, written on a, read on b.
    const data = randomBytes(MiB + 8192);
    a.send(P.NBD_CMD_WRITE, 1n, MiB - 4096, data.length, P.NBD_CMD_FLAG_FUA, data);
    assert.deepEqual(await a.reply(), { error: P.NBD_OK, handle: 1n, data: Buffer.alloc(0) });

    a.send(P.NBD_CMD_READ, 2n, size - 100, 200); // past the end
    assert.deepEqual(await a.reply(200), { error: P.NBD_EINVAL, handle: 2n, data: Buffer.alloc(0) });
    a.send(P.NBD_CMD_WRITE, 3n, size - 10, 20, 0, Buffer.alloc(20, 1));
    assert.equal((await a.reply()).error, P.NBD_ENOSPC);
    a.send(P.NBD_CMD_READ, 4n, 0xffff_ffff_ffff_f000n, 4096); // offset near 2^64
    assert.equal((await a.reply(4096)).error, P.NBD_EINVAL);
    a.send(P.NBD_CMD_TRIM, 5n, size, 4096);
    assert.equal((await a.reply()).error, P.NBD_EINVAL);
    a.send(P.NBD_CMD_WRITE_ZEROES, 6n, size - 4096, 8192);
    assert.equal((await a.reply()).error, P.NBD_ENOSPC);
    a.send(42, 7n, 0, 0); // no such command
    assert.deepEqual(await a.reply(), { error: P.NBD_EINVAL, handle: 7n, data: Buffer.alloc(0) });
    a.send(P.NBD_CMD_READ, 8n, 0, 16, P.NBD_CMD_FLAG_FUA); // FUA is not a READ flag
    assert.equal((await a.reply(16)).error, P.NBD_EINVAL);
    a.send(P.NBD_CMD_READ, 9n, 0, 64 * MiB); // longer than the maximum block size
    assert.equal((await a.reply(64 * MiB)).error, P.NBD_EINVAL);

    // The volume was not touched by any of the refused writes; a still works.
    a.send(P.NBD_CMD_READ, 10n, size - 8192, 8192);
    const tail = await a.reply(8192);
    assert.equal(tail.error, P.NBD_OK);
    assert.ok(tail.data.equals(Buffer.alloc(8192)), 'refused writes must not change the volume');

    // Bad magic: that connection is closed; the other client is still served.
    a.write(Buffer.alloc(P.REQUEST_HEADER_LEN, 0x5a));
    await a.closedP;
    b.send(P.NBD_CMD_READ, 11n, MiB - 4096, data.length);
    const back = await b.reply(data.length);
    assert.equal(back.error, P.NBD_OK);
    assert.ok(back.data.equals(data), 'second client read different bytes');
    b.send(P.NBD_CMD_DISC, 12n, 0, 0);
    await b.closedP;

    // An unknown export is refused in the handshake with an error reply, not a crash.
    const c = new NbdRawClient(port);
    await c.handshake();
    const refused = await c.option(P.NBD_OPT_GO, P.encodeInfoRequest('nope', []));
    assert.equal(refused[0]!.replyType, P.NBD_REP_ERR_UNKNOWN);
    const ok = await c.option(P.NBD_OPT_GO, P.encodeInfoRequest('small', []));
    assert.equal(ok[ok.length - 1]!.replyType, P.NBD_REP_ACK);
    c.close();
  });
});

describe('shutdown', () => {
  test('SIGTERM stops presage nbd cleanly and removes its Unix socket', async () => {
    nbd.child.kill('SIGTERM');
    assert.equal(await nbd.exited, 0, nbd.stderr);
    assert.equal(fs.existsSync(sock), false, 'the Unix socket file should be removed');
  });
});
