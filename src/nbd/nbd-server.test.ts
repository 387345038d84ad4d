// NbdServer against the real NBD clients from Debian (nbdinfo, qemu-io, nbdcopy, fio's nbd
// engine) and a raw-socket client for the error paths the real clients never exercise.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NbdServer, MAX_BLOCK_SIZE } from './nbd-server.ts';
import { MemoryBlockDeviceProvider, type MemoryBlockDevice } from './memory-device.ts';
import * as P from './protocol.ts';
import { assertFioVerified, ensureTools, MiB, NbdRawClient, run, sha256 } from '../../test/helpers/nbd-tools.ts';

const TOOLS = ['nbdinfo', 'nbdcopy', 'qemu-io', 'fio'];

// ---- fixtures ----

let provider: MemoryBlockDeviceProvider;
let disk: MemoryBlockDevice;
let server: NbdServer;
let port: number;
let tmp: string;

before(async () => {
  ensureTools(TOOLS);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-nbd-'));
  provider = new MemoryBlockDeviceProvider();
  disk = provider.create('disk', 64 * MiB, 'test disk');
  provider.create('small', 1 * MiB);
  server = new NbdServer(provider, { maxInFlight: 16 });
  const r = await server.listen({ host: '127.0.0.1', port: 0 });
  port = r.port!;
  assert.equal(r.uri, `nbd://127.0.0.1:${port}`);
});

after(async () => {
  await server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('real NBD clients', () => {
  test('nbdinfo --list shows every export with its size and description', async () => {
    const r = await run('nbdinfo', ['--list', `nbd://127.0.0.1:${port}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /newstyle-fixed/);
    assert.match(r.stdout, /export="disk":\s*\n\s*description: test disk\s*\n\s*export-size: 67108864 \(64M\)/);
    assert.match(r.stdout, /export="small":\s*\n\s*export-size: 1048576 \(1M\)/);
  });

  test('nbdinfo --json reports size, capabilities and block sizes; unknown export fails', async () => {
    const r = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/disk`]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { protocol: string; exports: Record<string, unknown>[] };
    assert.equal(j.protocol, 'newstyle-fixed');
    const e = j.exports[0]!;
    assert.equal(e['export-name'], 'disk');
    assert.equal(e['export-size'], 64 * MiB);
    assert.equal(e['description'], 'test disk');
    for (const cap of ['can_flush', 'can_fua', 'can_trim', 'can_zero', 'can_multi_conn']) assert.equal(e[cap], true, cap);
    assert.equal(e['is_read_only'], false);
    assert.equal(e['block_size_minimum'], 1);
    assert.equal(e['block_size_preferred'], 4096);
    assert.equal(e['block_size_maximum'], MAX_BLOCK_SIZE);

    const bad = await run('nbdinfo', [`nbd://127.0.0.1:${port}/nope`]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /export/);
  });

  test('qemu-io writes a pattern and verifies it; the device holds it byte for byte', async () => {
    const uri = `nbd://127.0.0.1:${port}/disk`;
    const r = await run('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M', '-c', 'write -z 512K 4K', '-c', 'read -P 0 512K 4K', '-c', 'flush']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /wrote 1048576\/1048576 bytes at offset 0/);
    assert.match(r.stdout, /read 1048576\/1048576 bytes at offset 0/);
    assert.match(r.stdout, /read 4096\/4096 bytes at offset 524288/);
    assert.doesNotMatch(r.stdout + r.stderr, /Pattern verification failed/);
    const expected = Buffer.alloc(MiB, 0xab);
    expected.fill(0, 512 * 1024, 512 * 1024 + 4096);
    assert.ok(disk.readSync(0, MiB).equals(expected), 'device content differs from what qemu-io wrote');

    // The verification is real: a wrong pattern is reported.
    const wrong = await run('qemu-io', ['-f', 'raw', uri, '-c', 'read -P 0xcd 0 4K']);
    assert.match(wrong.stdout + wrong.stderr, /Pattern verification failed/);
  });

  test('nbdcopy copies a 32 MiB sparse file in and back out unchanged', async () => {
    // Random data with an 8 MiB hole; the export is first filled with 0xff so zeroing must really happen.
    const size = 32 * MiB;
    const src = path.join(tmp, 'src.img');
    const a = randomBytes(12 * MiB);
    const b = randomBytes(12 * MiB);
    const fd = fs.openSync(src, 'w');
    fs.writeSync(fd, a, 0, a.length, 0);
    fs.writeSync(fd, b, 0, b.length, 20 * MiB);
    fs.closeSync(fd);
    const srcBytes = fs.readFileSync(src);
    assert.equal(srcBytes.length, size);
    provider.create('copy', size);
    provider.get('copy')!.writeSync(0, Buffer.alloc(size, 0xff));

    const dst = path.join(tmp, 'out.img');
    const inR = await run('nbdcopy', [src, `nbd://127.0.0.1:${port}/copy`]);
    assert.equal(inR.code, 0, inR.stderr);
    assert.ok(provider.get('copy')!.stats.writeZeroes >= 1, 'nbdcopy should have zeroed the hole with NBD_CMD_WRITE_ZEROES');
    assert.ok(provider.get('copy')!.readSync(0, size).equals(srcBytes), 'export content differs from the source file');
    const outR = await run('nbdcopy', [`nbd://127.0.0.1:${port}/copy`, dst]);
    assert.equal(outR.code, 0, outR.stderr);
    const out = fs.readFileSync(dst);
    assert.equal(sha256(out), sha256(srcBytes));
    assert.ok(out.equals(srcBytes));
  });

  test('fio (ioengine=nbd) random writes then verifies crc32c with no errors', async () => {
    provider.create('fio', 64 * MiB);
    const r = await run('fio', [
      '--name=nbdverify', '--ioengine=nbd', `--uri=nbd://127.0.0.1:${port}/fio`,
      '--rw=randwrite', '--bs=16k', '--size=64M', '--iodepth=16',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--runtime=20', '--output-format=json',
    ], 60_000);
    assertFioVerified(r, 64 * MiB);
  });
});

describe('protocol details over a raw socket', () => {
  test('handshake flags, option refusals and LIST', async () => {
    const c = new NbdRawClient(port);
    const flags = await c.handshake();
    assert.equal(flags, P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES);
    assert.equal((await c.option(P.NBD_OPT_STRUCTURED_REPLY))[0]!.replyType, P.NBD_REP_ERR_UNSUP);
    assert.equal((await c.option(999))[0]!.replyType, P.NBD_REP_ERR_UNSUP);
    assert.equal((await c.option(P.NBD_OPT_LIST, Buffer.from('x')))[0]!.replyType, P.NBD_REP_ERR_INVALID);
    assert.equal((await c.option(P.NBD_OPT_GO, Buffer.from([0, 0, 0, 9, 1])))[0]!.replyType, P.NBD_REP_ERR_INVALID);
    const unknown = await c.option(P.NBD_OPT_INFO, P.encodeInfoRequest('nope', []));
    assert.equal(unknown[0]!.replyType, P.NBD_REP_ERR_UNKNOWN);
    // Two exports: the empty name is ambiguous.
    assert.equal((await c.option(P.NBD_OPT_INFO, P.encodeInfoRequest('', [])))[0]!.replyType, P.NBD_REP_ERR_UNKNOWN);
    const list = await c.option(P.NBD_OPT_LIST);
    const names = list.filter((r) => r.replyType === P.NBD_REP_SERVER).map((r) => r.data.toString('utf8', 4, 4 + r.data.readUInt32BE(0)));
    assert.ok(names.includes('disk') && names.includes('small'), names.join(','));
    const info = await c.option(P.NBD_OPT_INFO, P.encodeInfoRequest('disk', [P.NBD_INFO_NAME, P.NBD_INFO_DESCRIPTION]));
    const byType = new Map(info.filter((r) => r.replyType === P.NBD_REP_INFO).map((r) => [r.data.readUInt16BE(0), r.data.subarray(2)]));
    assert.equal(byType.get(P.NBD_INFO_NAME)?.toString(), 'disk');
    assert.equal(byType.get(P.NBD_INFO_DESCRIPTION)?.toString(), 'test disk');
    assert.deepEqual([...byType.get(P.NBD_INFO_BLOCK_SIZE)!].length, 12);
    assert.equal((await c.option(P.NBD_OPT_ABORT))[0]!.replyType, P.NBD_REP_ACK);
    await c.closedP;
  });

  test('NBD_OPT_EXPORT_NAME honours NO_ZEROES; an unknown name closes the connection', async () => {
    for (const noZeroes of [true, false]) {
      const c = new NbdRawClient(port);
      await c.handshake(P.NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? P.NBD_FLAG_C_NO_ZEROES : 0));
      c.write(Buffer.concat([P.encodeOptionHeader(P.NBD_OPT_EXPORT_NAME, 5), Buffer.from('small')]));
      const r = await c.read(10 + (noZeroes ? 0 : 124));
      assert.equal(Number(r.readBigUInt64BE(0)), MiB);
      assert.ok(r.readUInt16BE(8) & P.NBD_FLAG_SEND_FLUSH);
      c.send(P.NBD_CMD_READ, 1n, 0, 16);
      const rep = await c.reply(16); // would misparse if stray zero padding had been sent
      assert.equal(rep.error, 0);
      assert.equal(rep.handle, 1n);
      c.close();
    }
    const c = new NbdRawClient(port);
    await c.handshake();
    c.write(Buffer.concat([P.encodeOptionHeader(P.NBD_OPT_EXPORT_NAME, 4), Buffer.from('nope')]));
    await c.closedP;
  });

  test('the empty export name means the only export', async () => {
    const p1 = new MemoryBlockDeviceProvider([{ name: 'solo', size: 4 * MiB }]);
    const s1 = new NbdServer(p1);
    const { port: p } = await s1.listen({ host: '127.0.0.1', port: 0 });
    try {
      const c = new NbdRawClient(p!);
      assert.equal((await c.go('')).size, 4 * MiB);
      c.close();
      const r = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${p}`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { exports: { 'export-size': number }[] }).exports[0]!['export-size'], 4 * MiB);
    } finally {
      await s1.close();
    }
  });

  test('error replies keep the connection usable; bad magic closes only that connection', async () => {
    const small = provider.get('small')!;
    const c = new NbdRawClient(port);
    const { size, flags } = await c.go('small');
    assert.equal(size, MiB);
    assert.equal(flags, P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_CAN_MULTI_CONN);

    c.send(P.NBD_CMD_READ, 0x1122334455667788n, MiB - 100, 200);
    assert.deepEqual(await c.reply(200), { error: P.NBD_EINVAL, handle: 0x1122334455667788n, data: Buffer.alloc(0) });

    c.send(P.NBD_CMD_WRITE, 2n, MiB - 10, 20, 0, Buffer.alloc(20, 1));
    assert.equal((await c.reply()).error, P.NBD_ENOSPC);

    c.send(42, 3n, 0, 0);
    assert.deepEqual(await c.reply(), { error: P.NBD_EINVAL, handle: 3n, data: Buffer.alloc(0) });

    c.send(P.NBD_CMD_READ, 4n, 0, 16, P.NBD_CMD_FLAG_FAST_ZERO); // flag not valid for READ
    assert.equal((await c.reply(16)).error, P.NBD_EINVAL);

    // Oversized but sane write: payload discarded, EINVAL, stream still in sync.
    const big = MAX_BLOCK_SIZE + 4096;
    c.send(P.NBD_CMD_WRITE, 5n, 0, big, 0, Buffer.alloc(big, 7));
    assert.deepEqual(await c.reply(), { error: P.NBD_EINVAL, handle: 5n, data: Buffer.alloc(0) });
    assert.equal(small.readSync(0, 1)[0], 0, 'oversized write must not be applied');

    small.injectError({ offset: 4096, length: 4096, ops: ['read', 'write'] });
    c.send(P.NBD_CMD_READ, 6n, 4000, 200);
    assert.equal((await c.reply(200)).error, P.NBD_EIO);
    c.send(P.NBD_CMD_WRITE, 7n, 8000, 300, 0, Buffer.alloc(300, 9));
    assert.equal((await c.reply()).error, P.NBD_EIO);
    small.clearErrors();

    const data = randomBytes(5000);
    c.send(P.NBD_CMD_WRITE, 8n, 1000, data.length, P.NBD_CMD_FLAG_FUA, data);
    assert.deepEqual(await c.reply(), { error: 0, handle: 8n, data: Buffer.alloc(0) });
    c.send(P.NBD_CMD_READ, 9n, 1000, data.length);
    assert.ok((await c.reply(data.length)).data.equals(data));
    assert.ok(small.stats.fuaWrites >= 1);

    // A second client connected meanwhile is unaffected by the first one's protocol violation.
    const c2 = new NbdRawClient(port);
    await c2.go('small');
    c.write(Buffer.alloc(P.REQUEST_HEADER_LEN, 0x5a)); // bad magic
    await c.closedP;
    c2.send(P.NBD_CMD_READ, 10n, 1000, data.length);
    const r2 = await c2.reply(data.length);
    assert.equal(r2.error, 0);
    assert.ok(r2.data.equals(data));

    // An absurd write length cannot be skipped: the connection is closed.
    c2.send(P.NBD_CMD_WRITE, 11n, 0, 0xffffff00);
    await c2.closedP;

    const c3 = new NbdRawClient(port);
    await c3.go('small');
    c3.send(P.NBD_CMD_READ, 12n, 1000, 10);
    assert.ok((await c3.reply(10)).data.equals(data.subarray(0, 10)));
    c3.close();
  });

  test('trim, write zeroes (NO_HOLE, FUA) and flush', async () => {
    const small = provider.get('small')!;
    small.writeSync(0, Buffer.alloc(MiB, 0xee));
    const c = new NbdRawClient(port);
    await c.go('small');
    const flushes = small.stats.flushes;
    c.send(P.NBD_CMD_TRIM, 1n, 65536, 131072, P.NBD_CMD_FLAG_FUA);
    c.send(P.NBD_CMD_WRITE_ZEROES, 2n, 300000, 1000, P.NBD_CMD_FLAG_NO_HOLE | P.NBD_CMD_FLAG_FUA);
    c.send(P.NBD_CMD_FLUSH, 3n, 0, 0);
    const got = new Map<bigint, number>();
    for (let i = 0; i < 3; i++) { const r = await c.reply(); got.set(r.handle, r.error); }
    assert.deepEqual([...got.entries()].sort(), [[1n, 0], [2n, 0], [3n, 0]]);
    assert.equal(small.stats.flushes, flushes + 2, 'FUA trim and FLUSH each flush the device');
    const expected = Buffer.alloc(MiB, 0xee);
    expected.fill(0, 65536, 65536 + 131072);
    expected.fill(0, 300000, 301000);
    assert.ok(small.readSync(0, MiB).equals(expected));
    c.close();
  });

  test('overlapping pipelined writes apply in arrival order; in-flight bounded; DISC waits', async () => {
    const dev = provider.create('order', 4 * MiB);
    const p2 = new NbdServer(provider, { maxInFlight: 4 });
    const { port: p } = await p2.listen({ host: '127.0.0.1', port: 0 });
    try {
      // The first (larger) write is slow: without ordering the second would land first and be overwritten.
      dev.setLatency((op, _off, len) => (op === 'write' && len === 8192 ? 80 : op === 'read' ? 5 : 0));
      const c = new NbdRawClient(p!);
      await c.go('order');
      c.send(P.NBD_CMD_WRITE, 1n, 0, 8192, 0, Buffer.alloc(8192, 0x11));
      c.send(P.NBD_CMD_WRITE, 2n, 4096, 4096, 0, Buffer.alloc(4096, 0x22));
      c.send(P.NBD_CMD_READ, 3n, 0, 8192);
      const first = await c.reply();
      const second = await c.reply();
      assert.deepEqual([first.handle, second.handle], [1n, 2n]);
      const rd = await c.reply(8192);
      assert.equal(rd.handle, 3n);
      const expected = Buffer.concat([Buffer.alloc(4096, 0x11), Buffer.alloc(4096, 0x22)]);
      assert.ok(rd.data.equals(expected), 'read must see both writes, the later one on top');
      assert.ok(dev.readSync(0, 8192).equals(expected));

      // 20 independent reads: concurrency reaches but never exceeds maxInFlight.
      dev.stats.maxInFlight = 0;
      for (let i = 0; i < 20; i++) c.send(P.NBD_CMD_READ, BigInt(100 + i), i * 65536, 512);
      const handles = new Set<bigint>();
      for (let i = 0; i < 20; i++) handles.add((await c.reply(512)).handle);
      assert.equal(handles.size, 20);
      assert.equal(dev.stats.maxInFlight, 4);

      // DISC after a slow write: the write is answered before the server closes.
      c.send(P.NBD_CMD_WRITE, 200n, 65536, 8192, 0, Buffer.alloc(8192, 0x33));
      c.send(P.NBD_CMD_DISC, 201n, 0, 0);
      const last = await c.reply();
      assert.deepEqual([last.handle, last.error], [200n, 0]);
      await c.closedP;
      assert.ok(dev.readSync(65536, 8192).equals(Buffer.alloc(8192, 0x33)));

      // A client that half-closes after sending still gets its replies.
      const ch = new NbdRawClient(p!);
      await ch.go('order');
      ch.send(P.NBD_CMD_WRITE, 300n, 0, 8192, 0, Buffer.alloc(8192, 0x44));
      ch.socket.end();
      assert.deepEqual(await ch.reply(), { error: 0, handle: 300n, data: Buffer.alloc(0) });
      await ch.closedP;

      // An abrupt disconnect with requests in flight leaves no connection behind.
      const c2 = new NbdRawClient(p!);
      await c2.go('order');
      for (let i = 0; i < 3; i++) c2.send(P.NBD_CMD_WRITE, BigInt(i), 0, 8192, 0, Buffer.alloc(8192, 1));
      await new Promise((r) => setTimeout(r, 20));
      c2.close();
      await c2.closedP;
      const deadline = Date.now() + 2000;
      while (p2.connectionCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(p2.connectionCount, 0);
    } finally {
      dev.setLatency(undefined);
      await p2.close();
    }
  });

  test('serves over a Unix socket too', async () => {
    const sock = path.join(tmp, 'nbd.sock');
    const s = new NbdServer(provider);
    const r = await s.listen({ path: sock });
    assert.equal(r.address, sock);
    try {
      const out = await run('nbdinfo', ['--size', `nbd+unix:///small?socket=${sock}`]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(out.stdout.trim(), String(MiB));
    } finally {
      await s.close();
    }
    assert.equal(fs.existsSync(sock), false);
  });
});
