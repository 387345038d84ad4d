// Shared by the NBD tests: installing and running the real NBD clients from Debian (nbdinfo,
// nbdcopy, qemu-io, fio's nbd engine), reading fio's JSON report, and a minimal NBD client over a
// raw socket for the malformed requests real clients never send.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as P from '../../src/nbd/protocol.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const MiB = 1024 * 1024;

/** The tools of `tools` that are not on PATH. */
export function missingTools(tools: readonly string[]): string[] {
  return tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
}

/** Installs the NBD clients if absent (waiting out a concurrent apt run); throws, never skips. */
export function ensureTools(tools: readonly string[]): void {
  for (let attempt = 0; attempt < 20 && missingTools(tools).length > 0; attempt++) {
    const r = spawnSync('bash', ['scripts/install-deps.sh'], { cwd: REPO, encoding: 'utf8', env: { ...process.env, PRESAGE_SKIP_BROWSER: '1' }, timeout: 600_000 });
    if (r.status === 0) break;
    if (!/lock/i.test(r.stderr ?? '')) break; // a real failure, not a concurrent dpkg
    spawnSync('sleep', ['5']);
  }
  const still = missingTools(tools);
  if (still.length) throw new Error(`NBD client tools missing after scripts/install-deps.sh: ${still.join(', ')} (apt-get install libnbd-bin qemu-utils fio)`);
}

export interface Done { code: number; stdout: string; stderr: string }

/** Runs a command to completion; a non-zero exit, a signal or the timeout is a code, not a throw. */
export function run(cmd: string, args: string[], timeoutMs = 30_000, cwd?: string): Promise<Done> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * MiB, cwd }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export interface FioJob { error: number; write: { io_bytes: number; lat_ns?: { max: number } }; read: { io_bytes: number } }

/** The first job of fio's `--output-format=json` report (fio may print notes before the JSON). */
export function fioJob(r: Done): FioJob {
  const brace = r.stdout.indexOf('{');
  assert.ok(brace >= 0, `fio printed no JSON:\n${r.stdout}\n${r.stderr}`);
  return (JSON.parse(r.stdout.slice(brace)) as { jobs: FioJob[] }).jobs[0]!;
}

/**
 * A write-then-verify fio run succeeded: exit 0, no verification complaint, `bytes` written and
 * all of them read back to verify (a run that verifies nothing would also exit 0).
 */
export function assertFioVerified(r: Done, bytes: number): FioJob {
  const tail = `${r.stderr}\n${r.stdout.slice(-3000)}`;
  assert.equal(r.code, 0, `fio failed:\n${tail}`);
  assert.doesNotMatch(r.stderr, /verify|bad magic|crc32c|error/i, tail);
  const job = fioJob(r);
  assert.equal(job.error, 0, tail);
  assert.equal(job.write.io_bytes, bytes, 'fio wrote everything');
  assert.equal(job.read.io_bytes, bytes, 'fio read everything it wrote back to verify it');
  return job;
}

/** A minimal NBD client over a raw socket: fixed newstyle handshake, options, simple replies. */
export class NbdRawClient {
  readonly socket: net.Socket;
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed = false;
  readonly closedP: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.waiter?.(); });
    this.closedP = new Promise((r) => this.socket.on('close', () => { this.closed = true; this.waiter?.(); r(); }));
    this.socket.on('error', () => { /* 'close' follows; tests look at closed / closedP */ });
  }

  /** Exactly `n` bytes; throws when the connection closes first or after `timeoutMs`. */
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

  /** Reads the server's greeting and answers with `clientFlags`; returns the server's handshake flags. */
  async handshake(clientFlags = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES): Promise<number> {
    const h = await this.read(P.HANDSHAKE_HEADER_LEN);
    assert.equal(h.readBigUInt64BE(0), P.NBDMAGIC);
    assert.equal(h.readBigUInt64BE(8), P.IHAVEOPT);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(clientFlags);
    this.write(b);
    return h.readUInt16BE(16);
  }

  /** Sends one option and collects its replies up to the final ACK or error. */
  async option(opt: number, data: Buffer = Buffer.alloc(0)): Promise<{ replyType: number; data: Buffer }[]> {
    this.write(Buffer.concat([P.encodeOptionHeader(opt, data.length), data]));
    const replies: { replyType: number; data: Buffer }[] = [];
    for (;;) {
      const h = P.decodeOptionReplyHeader(await this.read(P.OPTION_REPLY_HEADER_LEN));
      assert.equal(h.magic, P.OPT_REPLY_MAGIC);
      assert.equal(h.option, opt);
      const d = await this.read(h.length);
      replies.push({ replyType: h.replyType, data: Buffer.from(d) });
      if (h.replyType === P.NBD_REP_ACK || h.replyType >= 0x80000000) return replies;
    }
  }

  /** Full handshake ending in NBD_OPT_GO; returns the export size and transmission flags. */
  async go(name: string): Promise<{ size: number; flags: number }> {
    await this.handshake();
    const replies = await this.option(P.NBD_OPT_GO, P.encodeInfoRequest(name, []));
    const last = replies[replies.length - 1]!;
    assert.equal(last.replyType, P.NBD_REP_ACK, `GO ${name} failed: ${last.data.toString()}`);
    const info = replies.find((r) => r.replyType === P.NBD_REP_INFO && r.data.readUInt16BE(0) === P.NBD_INFO_EXPORT)!;
    return { size: Number(info.data.readBigUInt64BE(2)), flags: info.data.readUInt16BE(10) };
  }

  send(type: number, handle: bigint, offset: number | bigint, length: number, flags = 0, payload?: Buffer): void {
    const h = P.encodeRequest({ type, handle, offset, length, flags });
    this.write(payload ? Buffer.concat([h, payload]) : h);
  }

  /** One simple reply; `dataLen` bytes of data follow it only when it is not an error. */
  async reply(dataLen = 0): Promise<{ error: number; handle: bigint; data: Buffer }> {
    const r = P.decodeSimpleReply(await this.read(P.SIMPLE_REPLY_HEADER_LEN));
    assert.equal(r.magic, P.SIMPLE_REPLY_MAGIC);
    const data = r.error === 0 && dataLen > 0 ? Buffer.from(await this.read(dataLen)) : Buffer.alloc(0);
    return { error: r.error, handle: r.handle, data };
  }

  close(): void { this.socket.destroy(); }
}
