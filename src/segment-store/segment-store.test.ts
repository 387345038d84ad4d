import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, open, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32c } from '@node-rs/crc32';
import { SegmentStore, blockChecksum, parseSegmentId, type IoOp } from './segment-store.ts';
import { asNoSpace, BLOCK_SIZE, CorruptBlockError, NoSpaceError, OutOfRangeError } from './types.ts';
// Seeded so failures reproduce.
import { mulberry32 as prng } from '../common/prng.ts';

const BS = BLOCK_SIZE;

const randInt = (rnd: () => number, n: number) => Math.floor(rnd() * n);
function randBytes(rnd: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = randInt(rnd, 256);
  return b;
}

let root: string;
let dirCount = 0;
async function freshStore(opts?: ConstructorParameters<typeof SegmentStore>[1]): Promise<{ store: SegmentStore; dir: string }> {
  const dir = join(root, `s${dirCount++}`);
  const store = new SegmentStore(dir, opts);
  await store.open();
  return { store, dir };
}
const datPath = (dir: string, id: string) => join(dir, 'segments', ...id.split('/')) + '.dat';
const sumPath = (dir: string, id: string) => join(dir, 'segments', ...id.split('/')) + '.sum';

async function pwrite(path: string, pos: number, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, pos);
  } finally {
    await fh.close();
  }
}
async function pread(path: string, pos: number, len: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(len);
    await fh.read(b, 0, len, pos);
    return b;
  } finally {
    await fh.close();
  }
}
async function flipByte(path: string, pos: number): Promise<void> {
  const [b] = await pread(path, pos, 1);
  await pwrite(path, pos, Buffer.from([b! ^ 0x5a]));
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'presage-segstore-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('segment ids and ranges', () => {
  it('validates segment ids and rejects path tricks', () => {
    assert.deepEqual(parseSegmentId('vol-1.a_b/0'), { volume: 'vol-1.a_b', index: 0 });
    assert.deepEqual(parseSegmentId('v/123'), { volume: 'v', index: 123 });
    for (const bad of ['', 'v', 'v/', '/0', '../0', './0', '../../etc/0', 'v/01', 'v/-1', 'v/1.5', 'v/0/0', 'a b/0', `${'x'.repeat(65)}/0`, 'v/1e3', 'v\\x/0', 'v/99999999999999999']) {
      assert.throws(() => parseSegmentId(bad), Error, bad);
    }
  });

  it('rejects bad ids, sizes and ranges with typed errors', async () => {
    const { store } = await freshStore();
    await assert.rejects(store.ensure('../x/0', BS), /invalid segment id/);
    await assert.rejects(store.read('..//0', 0, 1), /invalid segment id/);
    assert.equal(store.has('../0'), false);
    await assert.rejects(store.ensure('v/0', 0), /positive multiple/);
    await assert.rejects(store.ensure('v/0', 5000), /positive multiple/);
    await assert.rejects(store.read('v/0', 0, 1), OutOfRangeError); // missing segment
    await store.ensure('v/0', 4 * BS);
    await store.ensure('v/0', 4 * BS); // idempotent with the same size
    await assert.rejects(store.ensure('v/0', 8 * BS), /exists with size/);
    await assert.rejects(store.read('v/0', 4 * BS - 1, 2), OutOfRangeError);
    await assert.rejects(store.read('v/0', -1, 1), OutOfRangeError);
    await assert.rejects(store.read('v/0', 0.5, 1), OutOfRangeError);
    await assert.rejects(store.write('v/0', 4 * BS, Buffer.alloc(1)), OutOfRangeError);
    await assert.rejects(store.trim('v/0', 0, 4 * BS + 1), OutOfRangeError);
    await assert.rejects(store.checksums('v/0', 3, 2), OutOfRangeError);
    await assert.rejects(store.flush('v/9'), OutOfRangeError);
    await assert.rejects(store.write('v/0', 0, 'abc' as unknown as Buffer), TypeError);
    assert.equal((await store.read('v/0', 4 * BS, 0)).length, 0);
    assert.deepEqual(store.list(), ['v/0']);
    await store.close();
    await assert.rejects(store.read('v/0', 0, 1), /not open/);
  });
});

describe('data path', () => {
  it('round-trips random (unaligned, multi-block) writes and trims byte for byte against a model', async () => {
    const { store } = await freshStore();
    const size = 48 * BS;
    const id = 'model/3';
    await store.ensure(id, size);
    const model = Buffer.alloc(size);
    assert.ok((await store.read(id, 0, size)).equals(model), 'unwritten segment reads as zeros');
    const rnd = prng(42);
    for (let op = 0; op < 400; op++) {
      const kind = rnd();
      const off = rnd() < 0.3 ? randInt(rnd, size / BS) * BS : randInt(rnd, size);
      const maxLen = size - off;
      const len = Math.min(maxLen, rnd() < 0.3 ? (1 + randInt(rnd, 4)) * BS : 1 + randInt(rnd, 3 * BS));
      if (kind < 0.45) {
        const data = randBytes(rnd, len);
        await store.write(id, off, data);
        data.copy(model, off);
      } else if (kind < 0.55) {
        await store.trim(id, off, len);
        model.fill(0, off, off + len);
      } else {
        const got = await store.read(id, off, len);
        assert.equal(got.length, len);
        assert.ok(got.equals(model.subarray(off, off + len)), `op ${op}: read ${off}+${len} differs from the model`);
      }
    }
    assert.ok((await store.read(id, 0, size)).equals(model));
    const { sums, corrupt } = await store.checksums(id);
    assert.deepEqual(corrupt, []);
    for (let b = 0; b < size / BS; b++) assert.equal(sums[b], blockChecksum(model.subarray(b * BS, (b + 1) * BS)), `block ${b}`);
    await store.close();
  });

  it('trim reads back zeros and leaves neighbours intact', async () => {
    const { store } = await freshStore();
    const id = 't/0';
    const size = 300 * BS; // more than one 1 MiB trim chunk
    await store.ensure(id, size);
    const data = randBytes(prng(7), size);
    await store.write(id, 0, data);
    const off = 1000;
    const len = 280 * BS + 5;
    await store.trim(id, off, len);
    const got = await store.read(id, 0, size);
    const expect = Buffer.from(data);
    expect.fill(0, off, off + len);
    assert.ok(got.equals(expect));
    const { sums } = await store.checksums(id, 1, 279);
    assert.ok(sums.every((s) => s === 0), 'whole trimmed blocks have canonical checksum 0');
    await store.close();
  });

  it('checksums() scans in chunks and matches blockChecksum; digest tracks content', async () => {
    const ops: IoOp[] = [];
    const a = await freshStore({ ioHook: (op) => void ops.push(op) });
    const b = await freshStore();
    const id = 'd/1';
    const size = 2 * 256 * BS + 2 * BS; // 2 MiB + 8 KiB: three 1 MiB chunks
    await a.store.ensure(id, size);
    await b.store.ensure(id, size);
    assert.equal(await a.store.digest(id), await b.store.digest(id), 'empty segments');
    const rnd = prng(9);
    for (let i = 0; i < 20; i++) {
      const off = randInt(rnd, size - 3 * BS);
      const d = randBytes(rnd, 1 + randInt(rnd, 3 * BS));
      await a.store.write(id, off, d);
      await b.store.write(id, off, d);
    }
    const dA = await a.store.digest(id);
    assert.match(dA, /^[0-9a-f]{16}$/);
    assert.equal(dA, await b.store.digest(id));
    const before = await b.store.read(id, 513 * BS + 7, 1);
    await b.store.write(id, 513 * BS + 7, Buffer.from([before[0]! ^ 1]));
    assert.notEqual(await b.store.digest(id), dA, 'one changed byte changes the digest');
    await b.store.write(id, 513 * BS + 7, before);
    assert.equal(await b.store.digest(id), dA, 'writing it back restores it');

    ops.length = 0;
    const { sums, corrupt } = await a.store.checksums(id);
    assert.equal(sums.length, size / BS);
    assert.deepEqual(corrupt, []);
    assert.deepEqual(ops, ['read', 'read', 'read'], 'one read per 1 MiB chunk');
    const all = await a.store.read(id, 0, size);
    for (let i = 0; i < sums.length; i++) assert.equal(sums[i], blockChecksum(all.subarray(i * BS, (i + 1) * BS)));
    const part = await a.store.checksums(id, 300, 5);
    assert.deepEqual([...part.sums], [...sums.subarray(300, 305)]);
    await a.store.close();
    await b.store.close();
  });

  it('recorded checksums equal a scan without reading data; after a crash (records not known to match) they are a scan', async () => {
    const ops: IoOp[] = [];
    const { store, dir } = await freshStore({ ioHook: (op) => void ops.push(op) });
    const id = 'r/0';
    const size = 300 * BS;
    await store.ensure(id, size);
    const rnd = prng(21);
    for (let i = 0; i < 30; i++) await store.write(id, randInt(rnd, size - 3 * BS), randBytes(rnd, 1 + randInt(rnd, 3 * BS)));
    const scanned = await store.checksums(id);
    ops.length = 0;
    const recorded = await store.checksums(id, 0, undefined, { recorded: true });
    assert.deepEqual([...recorded.sums], [...scanned.sums]);
    assert.deepEqual(recorded.corrupt, []);
    assert.deepEqual(ops, [], 'no data read');
    assert.deepEqual([...(await store.checksums(id, 17, 40, { recorded: true })).sums], [...scanned.sums.subarray(17, 57)]);
    await store.close();

    // Crash: the sidecar says B for block 5 while the disk still holds A (and no clean marker).
    const A = await pread(datPath(dir, id), 5 * BS, BS);
    const entry = Buffer.alloc(8);
    entry.writeUInt32LE(blockChecksum(Buffer.alloc(BS, 0xbb)), 0);
    entry.writeUInt32LE(blockChecksum(A), 4);
    await pwrite(sumPath(dir, id), 5 * 8, entry);
    await unlink(join(dir, 'clean-shutdown'));
    const s2 = new SegmentStore(dir);
    await s2.open();
    const after = await s2.checksums(id, 0, undefined, { recorded: true });
    assert.equal(after.sums[5], blockChecksum(A), 'what the disk holds, not the stale record');
    assert.deepEqual([...after.sums], [...scanned.sums]);
    await s2.close();
  });

  it('blockChecksum is 0 for zeros and crc32c otherwise', () => {
    assert.equal(blockChecksum(Buffer.alloc(BS)), 0);
    const b = Buffer.alloc(BS, 1);
    assert.equal(blockChecksum(b), crc32c(b));
    assert.throws(() => blockChecksum(Buffer.alloc(10)), RangeError);
  });
});

describe('corruption', () => {
  it('detects a flipped byte in the data file, reads other blocks, and is repaired by a full-block write', async () => {
    const { store, dir } = await freshStore();
    const id = 'c/0';
    await store.ensure(id, 8 * BS);
    const data = randBytes(prng(3), 8 * BS);
    await store.write(id, 0, data);
    await store.flush(id);
    await flipByte(datPath(dir, id), 3 * BS + 100);

    await assert.rejects(store.read(id, 0, 8 * BS), (err: unknown) => {
      assert.ok(err instanceof CorruptBlockError);
      assert.equal(err.segmentId, id);
      assert.deepEqual(err.blocks, [3]);
      return true;
    });
    await assert.rejects(store.read(id, 3 * BS + 5, 1), CorruptBlockError);
    assert.ok((await store.read(id, 0, 3 * BS)).equals(data.subarray(0, 3 * BS)));
    assert.ok((await store.read(id, 4 * BS, 4 * BS)).equals(data.subarray(4 * BS)));
    const cs = await store.checksums(id);
    assert.deepEqual(cs.corrupt, [3]);
    await assert.rejects(store.digest(id), CorruptBlockError);
    // A partial write needs the old block: it must refuse rather than bless corrupt bytes.
    await assert.rejects(store.write(id, 3 * BS + 10, Buffer.from('x')), CorruptBlockError);
    // A whole-block write replaces it.
    const fresh = randBytes(prng(4), BS);
    await store.write(id, 3 * BS, fresh);
    assert.ok((await store.read(id, 3 * BS, BS)).equals(fresh));
    assert.deepEqual((await store.checksums(id)).corrupt, []);
    await store.close();
  });

  it('detects a flipped byte in the sidecar', async () => {
    const { store, dir } = await freshStore();
    const id = 'c/1';
    await store.ensure(id, 8 * BS);
    const data = randBytes(prng(5), 8 * BS);
    await store.write(id, 0, data);
    await flipByte(sumPath(dir, id), 5 * 8 + 1); // block 5, `cur` slot
    // Reads verify against the in-memory sidecar (what this process wrote), so the data still
    // reads correctly; the scan scrub runs reads the file and finds the rot.
    assert.ok((await store.read(id, 0, 8 * BS)).equals(data));
    assert.deepEqual((await store.checksums(id)).corrupt, [5]);
    // Without the memory copy (no cache, or after a restart) the read itself refuses the block.
    const cold = new SegmentStore(dir, { sidecarCacheBytes: 0 });
    await store.close();
    await cold.open();
    await assert.rejects(cold.read(id, 0, 8 * BS), (err: unknown) => err instanceof CorruptBlockError && err.blocks.join() === '5');
    assert.ok((await cold.read(id, 6 * BS, 2 * BS)).equals(data.subarray(6 * BS)));
    await cold.close();
  });

  it('the in-memory sidecars stay exact under eviction: random writes over more segments than the budget holds, then a cold restart', async () => {
    // 6 segments of 64 blocks (512-byte sidecars) with room for 2: every op may load or evict.
    const { store, dir } = await freshStore({ sidecarCacheBytes: 2 * 64 * 8 });
    const ids = Array.from({ length: 6 }, (_, i) => `lru/${i}`);
    const model = new Map(ids.map((id) => [id, Buffer.alloc(64 * BS)]));
    for (const id of ids) await store.ensure(id, 64 * BS);
    const rnd = prng(77);
    const ops: Promise<void>[] = [];
    for (let k = 0; k < 400; k++) {
      const id = ids[randInt(rnd, ids.length)]!;
      const b = randInt(rnd, 62);
      const n = 1 + randInt(rnd, 2);
      if (rnd() < 0.5) {
        const data = randBytes(rnd, n * BS);
        data.copy(model.get(id)!, b * BS);
        // Up to 8 writes in flight; overlapping ones apply in issue order (the range lock queues them).
        ops.push(store.write(id, b * BS, data));
        if (ops.length >= 8) await Promise.all(ops.splice(0));
      } else {
        await Promise.all(ops.splice(0));
        assert.ok((await store.read(id, b * BS, n * BS)).equals(model.get(id)!.subarray(b * BS, (b + n) * BS)), `op ${k}`);
      }
    }
    await Promise.all(ops);
    for (const id of ids) assert.ok((await store.read(id, 0, 64 * BS)).equals(model.get(id)!), id);
    await store.close();
    // The files alone (no memory copy) verify and hold the same bytes.
    const cold = new SegmentStore(dir, { sidecarCacheBytes: 0 });
    await cold.open();
    for (const id of ids) {
      assert.ok((await cold.read(id, 0, 64 * BS)).equals(model.get(id)!), `cold ${id}`);
      assert.deepEqual((await cold.checksums(id)).corrupt, []);
    }
    await cold.close();
  });

  it('nonzero data in a never-written block is corrupt', async () => {
    const { store, dir } = await freshStore();
    const id = 'c/2';
    await store.ensure(id, 4 * BS);
    await pwrite(datPath(dir, id), 2 * BS, Buffer.from('garbage'));
    await assert.rejects(store.read(id, 0, 4 * BS), (err: unknown) => err instanceof CorruptBlockError && err.blocks.join() === '2');
    await store.close();
  });
});

describe('crash safety and restart', () => {
  it('keeps flushed data, segments and meta across a restart', async () => {
    const { store, dir } = await freshStore();
    await store.ensure('a/0', 16 * BS);
    await store.ensure('b.vol/7', 4 * BS);
    const data = randBytes(prng(11), 10 * BS + 123);
    await store.write('a/0', 777, data);
    await store.writeMeta('a/0', { epoch: 3, fenced: false, replicas: ['s1', 's2'] });
    await store.flush();
    assert.equal((await store.info('a/0')).dirty, false);
    await store.close();

    const again = new SegmentStore(dir);
    await again.open();
    assert.deepEqual(again.list(), ['a/0', 'b.vol/7']);
    assert.ok(again.has('b.vol/7'));
    assert.ok((await again.read('a/0', 777, data.length)).equals(data));
    assert.deepEqual(await again.readMeta('a/0'), { epoch: 3, fenced: false, replicas: ['s1', 's2'] });
    assert.equal(await again.readMeta('b.vol/7'), undefined);
    assert.equal((await again.info('b.vol/7')).size, 4 * BS);
    await again.close();
  });

  it('close() waits for writes in flight, flushes them and refuses new work', async () => {
    const { store, dir } = await freshStore({ ioHook: () => new Promise((r) => setTimeout(r, 20)) });
    await store.ensure('q/0', 8 * BS);
    const data = randBytes(prng(12), 8 * BS);
    const writes = [0, 1, 2, 3].map((i) => store.write('q/0', i * 2 * BS, data.subarray(i * 2 * BS, (i + 1) * 2 * BS)));
    await store.close();
    await Promise.all(writes);
    await assert.rejects(store.write('q/0', 0, data), /not open/);
    const again = new SegmentStore(dir);
    await again.open();
    assert.ok((await again.read('q/0', 0, 8 * BS)).equals(data));
    await again.close();
  });

  it('a crash between sidecar and data write still reads the old data, even after a second crash', async () => {
    const { store, dir } = await freshStore();
    const id = 'k/0';
    await store.ensure(id, 4 * BS);
    const A = Buffer.alloc(BS, 0xaa);
    const B = Buffer.alloc(BS, 0xbb);
    const C = Buffer.alloc(BS, 0xcc);
    await store.write(id, BS, A, { fua: true });
    await store.close();
    // Crash #1 during a write of B: the sidecar got (new, on-disk), the data never arrived.
    const entry = Buffer.alloc(8);
    entry.writeUInt32LE(blockChecksum(B), 0);
    entry.writeUInt32LE(blockChecksum(A), 4);
    await pwrite(sumPath(dir, id), 1 * 8, entry);
    await unlink(join(dir, 'clean-shutdown')); // a crash leaves no clean-shutdown marker

    const s2 = new SegmentStore(dir);
    await s2.open();
    assert.ok((await s2.read(id, BS, BS)).equals(A), 'old data still verifies');
    // A write after the crash must record what is really on disk (A), not the stale `cur` (B).
    await s2.write(id, BS, C);
    const side = await pread(sumPath(dir, id), 8, 8);
    assert.equal(side.readUInt32LE(0), blockChecksum(C));
    assert.equal(side.readUInt32LE(4), blockChecksum(A));
    await s2.close();
    // Crash #2 in the same window: data is still A on disk (and, a crash, no clean-shutdown marker).
    await pwrite(datPath(dir, id), BS, A);
    await unlink(join(dir, 'clean-shutdown'));
    const s3 = new SegmentStore(dir);
    await s3.open();
    assert.ok((await s3.read(id, BS, BS)).equals(A));
    assert.ok((await s3.read(id, 0, BS)).equals(Buffer.alloc(BS)));
    await s3.close();
  });

  it('after a clean shutdown, a block whose data lost its latest write (a hole) is corrupt, not served as the old data', async () => {
    const { store, dir } = await freshStore();
    const id = 'h/0';
    await store.ensure(id, 4 * BS);
    const A = Buffer.alloc(BS, 0xaa);
    await store.write(id, BS, A, { fua: true }); // first write: the sidecar keeps (crc A, 0)
    await store.close();
    await pwrite(datPath(dir, id), BS, Buffer.alloc(BS)); // the data becomes a hole behind the store's back
    const s2 = new SegmentStore(dir);
    await s2.open();
    await assert.rejects(s2.read(id, BS, BS), (err: Error) => err instanceof CorruptBlockError && err.blocks.includes(1));
    const sums = await s2.checksums(id);
    assert.deepEqual(sums.corrupt, [1], 'scrub sees it as corrupt (to be repaired from a replica)');
    assert.ok((await s2.read(id, 0, BS)).equals(Buffer.alloc(BS)), 'a never-written block still reads as zeros');
    await s2.close();
  });

  it('survives SIGKILL of the writing process (FUA data persists, no corruption)', async () => {
    const dir = join(root, 'killed');
    const script = `
      import { SegmentStore } from ${JSON.stringify(fileURLToPath(new URL('./segment-store.ts', import.meta.url)))};
      const s = new SegmentStore(${JSON.stringify(dir)});
      await s.open();
      await s.ensure('z/0', 64 * 4096);
      await s.write('z/0', 4096 * 3 + 5, Buffer.alloc(10000, 7), { fua: true });
      const pending = [];
      for (let i = 0; i < 64; i++) pending.push(s.write('z/0', i * 4096, Buffer.alloc(4096, i + 1)));
      await s.write('z/0', 0, Buffer.alloc(4096, 9));
      process.kill(process.pid, 'SIGKILL');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const signal = await new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, sig) => res(sig)));
    assert.equal(signal, 'SIGKILL', stderr);
    const s = new SegmentStore(dir);
    await s.open();
    assert.deepEqual(s.list(), ['z/0']);
    // Every block verifies: each holds either the FUA data or one of the later writes.
    const { corrupt } = await s.checksums('z/0');
    assert.deepEqual(corrupt, []);
    assert.ok((await s.read('z/0', 0, BS)).equals(Buffer.alloc(BS, 9)));
    await s.close();
  });

  it('open() sweeps leftovers and resizes a damaged sidecar without returning unverified data', async () => {
    const { store, dir } = await freshStore();
    await store.ensure('w/0', 4 * BS);
    await store.write('w/0', 0, Buffer.alloc(BS, 1));
    await store.close();
    const vol = join(dir, 'segments', 'w');
    await writeFile(join(vol, '1.dat.tmp'), 'x');
    await writeFile(join(vol, '2.sum'), 'orphan');
    await writeFile(join(vol, '2.meta'), '{}');
    await truncate(join(vol, '0.sum'), 0); // sidecar lost its entries
    const s = new SegmentStore(dir);
    await s.open();
    assert.deepEqual((await readdir(vol)).sort(), ['0.damaged', '0.dat', '0.sum']);
    assert.equal((await stat(join(vol, '0.sum'))).size, 4 * 8);
    assert.match(s.damageOf('w/0') ?? '', /checksum file of 0 bytes, expected 32/, 'the copy is marked damaged, with why');
    await assert.rejects(s.read('w/0', 0, BS), CorruptBlockError);
    assert.ok((await s.read('w/0', BS, 3 * BS)).equals(Buffer.alloc(3 * BS)));
    await s.close();
    // The mark outlives the evidence: the resized files look whole now, the copy stays damaged.
    const again = new SegmentStore(dir);
    await again.open();
    assert.match(again.damageOf('w/0') ?? '', /checksum file of 0 bytes/);
    await again.delete('w/0');
    assert.deepEqual(await readdir(vol), [], 'deleting the copy removes the mark');
    await again.close();
  });

  it('open() keeps the geometry of a truncated data file and marks the copy damaged', async () => {
    const { store, dir } = await freshStore();
    await store.ensure('t/0', 8 * BS);
    await store.write('t/0', 0, Buffer.alloc(8 * BS, 7));
    await store.close();
    await truncate(join(dir, 'segments', 't', '0.dat'), 3 * BS);
    const s = new SegmentStore(dir);
    await s.open();
    assert.ok(s.has('t/0'));
    assert.match(s.damageOf('t/0') ?? '', /data file of 12288 bytes is shorter than its checksums \(32768 bytes\)/);
    assert.equal((await s.info('t/0')).size, 8 * BS, 'the segment keeps its size');
    assert.deepEqual((await s.checksums('t/0')).corrupt, [3, 4, 5, 6, 7], 'the lost blocks are corrupt, never zeros');
    await s.close();
    await truncate(join(dir, 'segments', 't', '0.dat'), 0);
    const s2 = new SegmentStore(dir);
    await s2.open();
    assert.ok(s2.has('t/0') && s2.damageOf('t/0'), 'an emptied data file is a damaged copy, not a missing one');
    await s2.close();
  });
});

describe('concurrency', () => {
  it('overlapping block writes and reads in flight never corrupt; each block ends with the last write issued', async () => {
    const { store } = await freshStore();
    const id = 'p/0';
    const blocks = 16;
    await store.ensure(id, blocks * BS);
    const rnd = prng(21);
    const last = new Array<number>(blocks).fill(0);
    const ops: Promise<void>[] = [];
    const pattern = (v: number, nBlocks: number) => {
      const b = Buffer.allocUnsafe(nBlocks * BS);
      for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(v, i);
      return b;
    };
    for (let i = 1; i <= 300; i++) {
      const b0 = randInt(rnd, blocks);
      const n = 1 + randInt(rnd, Math.min(4, blocks - b0));
      if (rnd() < 0.5) {
        ops.push(store.write(id, b0 * BS, pattern(i, n)));
        for (let b = b0; b < b0 + n; b++) last[b] = i;
      } else {
        const readAt = last.slice();
        ops.push(
          store.read(id, b0 * BS, n * BS).then((got) => {
            // FIFO lock: a read sees exactly the writes issued before it.
            for (let b = 0; b < n; b++) {
              const v = readAt[b0 + b]!;
              const expect = v === 0 ? Buffer.alloc(BS) : pattern(v, 1);
              assert.ok(got.subarray(b * BS, (b + 1) * BS).equals(expect), `read #${i} block ${b0 + b}`);
            }
          }),
        );
      }
    }
    await Promise.all(ops);
    const final = await store.read(id, 0, blocks * BS);
    for (let b = 0; b < blocks; b++) {
      const expect = last[b] === 0 ? Buffer.alloc(BS) : pattern(last[b]!, 1);
      assert.ok(final.subarray(b * BS, (b + 1) * BS).equals(expect), `block ${b}`);
    }
    assert.deepEqual((await store.checksums(id)).corrupt, []);
    await store.close();
  });

  it('concurrent unaligned writes and trims end equal to applying them in issue order', async () => {
    const { store } = await freshStore();
    const id = 'p/1';
    const size = 12 * BS;
    await store.ensure(id, size);
    const model = Buffer.alloc(size);
    const rnd = prng(33);
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      const off = randInt(rnd, size - 1);
      const len = 1 + randInt(rnd, Math.min(size - off, 2 * BS));
      const r = rnd();
      if (r < 0.6) {
        const d = randBytes(rnd, len);
        ops.push(store.write(id, off, d));
        d.copy(model, off);
      } else if (r < 0.7) {
        ops.push(store.trim(id, off, len));
        model.fill(0, off, off + len);
      } else {
        ops.push(store.read(id, off, len));
      }
    }
    await Promise.all(ops);
    assert.ok((await store.read(id, 0, size)).equals(model));
    await store.close();
  });

  it('delete waits for in-flight I/O, then the segment is gone', async () => {
    const { store, dir } = await freshStore();
    await store.ensure('x/0', 8 * BS);
    const w = store.write('x/0', 0, Buffer.alloc(8 * BS, 3));
    const del = store.delete('x/0');
    await w;
    await del;
    assert.equal(store.has('x/0'), false);
    await assert.rejects(store.read('x/0', 0, 1), OutOfRangeError);
    await assert.rejects(stat(datPath(dir, 'x/0')), /ENOENT/);
    await store.delete('x/0'); // absent: no error
    await store.ensure('x/0', 8 * BS);
    assert.ok((await store.read('x/0', 0, 8 * BS)).equals(Buffer.alloc(8 * BS)), 're-created segment is zeros');
    await store.close();
  });
});

describe('io hook, flush, info, meta', () => {
  it('the ioHook can delay and fail operations', async () => {
    const seen: string[] = [];
    let failOp: IoOp | undefined;
    let delayMs = 0;
    const { store } = await freshStore({
      ioHook: async (op, segmentId, bytes) => {
        seen.push(`${op}:${segmentId}:${bytes}`);
        if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
        if (op === failOp) throw new Error(`injected ${op} failure`);
      },
    });
    const id = 'h/0';
    await store.ensure(id, 4 * BS);
    const good = Buffer.alloc(100, 5);
    await store.write(id, 10, good);
    delayMs = 60;
    const t0 = performance.now();
    assert.ok((await store.read(id, 10, 100)).equals(good));
    assert.ok(performance.now() - t0 >= 55, 'read was delayed by the hook');
    delayMs = 0;

    failOp = 'write';
    await assert.rejects(store.write(id, 10, Buffer.alloc(100, 6)), /injected write failure/);
    assert.ok((await store.read(id, 10, 100)).equals(good), 'failed write changed nothing');
    failOp = 'read';
    await assert.rejects(store.read(id, 0, 1), /injected read failure/);
    await assert.rejects(store.checksums(id), /injected read failure/);
    failOp = 'trim';
    await assert.rejects(store.trim(id, 0, BS), /injected trim failure/);
    failOp = 'flush';
    assert.equal((await store.info(id)).dirty, true);
    await assert.rejects(store.flush(id), /injected flush failure/);
    await assert.rejects(store.write(id, 0, Buffer.alloc(1), { fua: true }), /injected flush failure/);
    assert.equal((await store.info(id)).dirty, true, 'still dirty after a failed flush');
    failOp = undefined;
    await store.flush();
    assert.equal((await store.info(id)).dirty, false);
    assert.ok(seen.includes(`write:${id}:100`) && seen.includes(`read:${id}:100`) && seen.includes(`trim:${id}:${BS}`) && seen.includes(`flush:${id}:0`));
    await store.close();
  });

  it('info reports sparse allocation and dirtiness', async () => {
    const { store } = await freshStore();
    const id = 'i/0';
    await store.ensure(id, 256 * BS);
    const before = await store.info(id);
    assert.equal(before.size, 256 * BS);
    assert.equal(before.dirty, false);
    assert.ok(before.allocatedBytes < 16 * BS, `sparse: ${before.allocatedBytes}`);
    await store.write(id, 0, Buffer.alloc(BS, 1));
    assert.equal((await store.info(id)).dirty, true);
    await store.write(id, BS, Buffer.alloc(BS, 1), { fua: true });
    assert.equal((await store.info(id)).dirty, false);
    await store.close();
  });

  it('writeMeta replaces atomically, readMeta returns it, delete removes it', async () => {
    const { store, dir } = await freshStore();
    const id = 'm/0';
    await assert.rejects(store.writeMeta(id, { a: 1 }), OutOfRangeError);
    await store.ensure(id, BS);
    assert.equal(await store.readMeta(id), undefined);
    await Promise.all([store.writeMeta(id, { epoch: 1 }), store.writeMeta(id, { epoch: 2 })]);
    assert.deepEqual(await store.readMeta(id), { epoch: 2 });
    await assert.rejects(store.writeMeta(id, [] as unknown as Record<string, unknown>), TypeError);
    assert.deepEqual((await readdir(join(dir, 'segments', 'm'))).sort(), ['0.dat', '0.meta', '0.sum']);
    await store.delete(id);
    assert.equal(await store.readMeta(id), undefined);
    assert.deepEqual(await readdir(join(dir, 'segments', 'm')), []);
    await store.close();
  });
});

it('a full filesystem (ENOSPC, EDQUOT) becomes a NoSpaceError with code ENOSPC; other errors pass unchanged', () => {
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  const edquot = Object.assign(new Error('EDQUOT: disk quota exceeded, write'), { code: 'EDQUOT' });
  for (const err of [enospc, edquot]) {
    const e = asNoSpace(err, 'v/3');
    assert.ok(e instanceof NoSpaceError);
    assert.equal(e.code, 'ENOSPC');
    assert.equal(e.segmentId, 'v/3');
    assert.match(e.message, /^segment v\/3: no space left/);
    assert.equal(asNoSpace(e, 'v/3'), e, 'converted once');
  }
  const eio = Object.assign(new Error('EIO'), { code: 'EIO' });
  assert.equal(asNoSpace(eio, 'v/3'), eio);
});
