// `presage nbd` on a real cluster (an orchestrator and 3 storage servers as separate processes on
// loopback), driven by the real NBD clients from Debian: nbdinfo, qemu-io, nbdcopy and fio's nbd
// engine, plus a raw socket for the malformed requests real clients never send.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as P from '../src/nbd/protocol.ts';
import { freePort, REPO, spawnPresage, TestCluster, type Proc } from './helpers/cluster.ts';

const TOOLS = ['nbdinfo', 'nbdcopy', 'qemu-io', 'fio'];
const MiB = 1024 * 1024;

function missingTools(): string[] {
  return TOOLS.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
}

/** Installs the NBD clients if absent (waiting out a concurrent apt run); fails, never skips. */
function ensureTools(): void {
  for (let attempt = 0; attempt < 20 && missingTools().length > 0; attempt++) {
    const r = spawnSync('bash', ['scripts/install-deps.sh'], { cwd: REPO, encoding: 'utf8', env: { ...process.env, PRESAGE_SKIP_BROWSER: '1' }, timeout: 600_000 });
    if (r.status === 0) break;
    if (!/lock/i.test(r.stderr ?? '')) break; // a real failure, not a concurrent dpkg
    spawnSync('sleep', ['5']);
  }
  const still = missingTools();
  if (still.length) throw new Error(`NBD client tools missing after scripts/install-deps.sh: ${still.join(', ')} (apt-get install libnbd-bin qemu-utils fio)`);
}

function run(cmd: string, args: string[], timeoutMs = 30_000, cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * MiB, cwd }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A minimal NBD client over a raw socket: fixed newstyle handshake, GO, simple replies. */
class RawClient {
  readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed = false;
  readonly closedP: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.waiter?.(); });
    this.closedP = new Promise((r) => this.socket.on('close', () => { this.closed = true; this.waiter?.(); r(); }));
    this.socket.on('error', () => {});
  }

  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.closed) throw new Error(`connection closed with ${this.buf.length}/${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes`);
      await new Promise<void>((r) => { this.waiter = r; setTimeout(r, left); });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  write(b: Buffer): void { this.socket.write(b); }

  async option(opt: number, data: Buffer): Promise<{ replyType: number; data: Buffer }[]> {
    this.write(Buffer.concat([P.encodeOptionHeader(opt, data.length), data]));
    const replies: { replyType: number; data: Buffer }[] = [];
    for (;;) {
      const h = P.decodeOptionReplyHeader(await this.read(P.OPTION_REPLY_HEADER_LEN));
      assert.equal(h.magic, P.OPT_REPLY_MAGIC);
      const d = await this.read(h.length);
      replies.push({ replyType: h.replyType, data: Buffer.from(d) });
      if (h.replyType === P.NBD_REP_ACK || h.replyType >= 0x80000000) return replies;
    }
  }

  async handshake(): Promise<void> {
    const h = await this.read(P.HANDSHAKE_HEADER_LEN);
    assert.equal(h.readBigUInt64BE(0), P.NBDMAGIC);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES);
    this.write(b);
  }

  /** Handshake + NBD_OPT_GO; returns the export size. */
  async go(name: string): Promise<number> {
    await this.handshake();
    const replies = await this.option(P.NBD_OPT_GO, P.encodeInfoRequest(name, []));
    const last = replies[replies.length - 1]!;
    assert.equal(last.replyType, P.NBD_REP_ACK, `GO ${name} failed: ${last.data.toString()}`);
    const info = replies.find((r) => r.replyType === P.NBD_REP_INFO && r.data.readUInt16BE(0) === P.NBD_INFO_EXPORT)!;
    return Number(info.data.readBigUInt64BE(2));
  }

  send(type: number, handle: bigint, offset: number | bigint, length: number, flags = 0, payload?: Buffer): void {
    const h = P.encodeRequest({ type, handle, offset, length, flags });
    this.write(payload ? Buffer.concat([h, payload]) : h);
  }

  async reply(dataLen = 0): Promise<{ error: number; handle: bigint; data: Buffer }> {
    const r = P.decodeSimpleReply(await this.read(P.SIMPLE_REPLY_HEADER_LEN));
    assert.equal(r.magic, P.SIMPLE_REPLY_MAGIC);
    const data = r.error === 0 && dataLen > 0 ? Buffer.from(await this.read(dataLen)) : Buffer.alloc(0);
    return { error: r.error, handle: r.handle, data };
  }

  close(): void { this.socket.destroy(); }
}

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
  ensureTools();
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
      assert.equal(r.code, 0, r.stderr + r.stdout.slice(-2000));
      assert.doesNotMatch(r.stderr, /verify|bad magic|crc32c/i);
      const job = (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] }).jobs[0]!;
      assert.equal(job.error, 0);
      assert.equal(job.write.io_bytes, 64 * MiB);
      assert.equal(job.read.io_bytes, 64 * MiB, 'fio did not read everything back to verify');
    });
  }
});

describe('malformed and out-of-range requests over a raw socket', () => {
  test('get NBD error replies; the connection and another client keep working', async () => {
    const size = 3 * MiB;
    const a = new RawClient(port);
    assert.equal(await a.go('small'), size);
    const b = new RawClient(port);
    assert.equal(await b.go('small'), size);

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
    const c = new RawClient(port);
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
