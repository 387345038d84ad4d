// Client-library benchmark: one orchestrator and ONE storage server on loopback, a volume with
// one replica, driven through PresageClient; the same access patterns against a plain local
// file through fs.promises FileHandle, side by side, to show what the network path costs.
//
//   node --import tsx bench/client-bench.ts [--duration 8] [--size-mib 1024] [--out bench/results/client-<date>.md]
//
// Every 4 KiB block carries its own volume offset in its first 8 bytes (prefill and benchmark
// writes alike), and every read checks it, so a wrong or misplaced read fails the run instead
// of producing a fast number.

import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { PresageClient, type Volume } from '../src/client/presage-client.ts';
import { TestCluster } from '../test/helpers/cluster.ts';
import { loadAverage, machineLines } from './machine-info.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;

interface Target {
  name: string;
  read(offset: number, buf: Buffer): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
}

interface Workload {
  name: string;
  blockSize: number;
  op: 'read' | 'write';
  pattern: 'random' | 'sequential';
  depth: number;
}

interface Result {
  ops: number;
  seconds: number;
  iops: number;
  mbps: number;
  p50: number;
  p99: number;
}

const WORKLOADS: Workload[] = [
  { name: '4k randread QD1', blockSize: 4 * KiB, op: 'read', pattern: 'random', depth: 1 },
  { name: '4k randread QD32', blockSize: 4 * KiB, op: 'read', pattern: 'random', depth: 32 },
  { name: '4k randwrite QD1', blockSize: 4 * KiB, op: 'write', pattern: 'random', depth: 1 },
  { name: '4k randwrite QD32', blockSize: 4 * KiB, op: 'write', pattern: 'random', depth: 32 },
  { name: '1M seqread QD1', blockSize: MiB, op: 'read', pattern: 'sequential', depth: 1 },
  { name: '1M seqwrite QD1', blockSize: MiB, op: 'write', pattern: 'sequential', depth: 1 },
  { name: '1M seqread QD8', blockSize: MiB, op: 'read', pattern: 'sequential', depth: 8 },
  { name: '1M seqwrite QD8', blockSize: MiB, op: 'write', pattern: 'sequential', depth: 8 },
];

/** Writes each 4 KiB block's volume offset into its first 8 bytes. */
function stamp(buf: Buffer, offset: number): void {
  for (let o = 0; o < buf.length; o += BLOCK) buf.writeBigUInt64LE(BigInt(offset + o), o);
}

function checkStamps(buf: Buffer, offset: number, target: string): void {
  for (let o = 0; o < buf.length; o += BLOCK) {
    const got = buf.readBigUInt64LE(o);
    if (got !== BigInt(offset + o)) throw new Error(`${target}: block at ${offset + o} holds the stamp of ${got}: wrong data returned`);
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function run(target: Target, w: Workload, size: number, seconds: number): Promise<Result> {
  const blocks = size / w.blockSize;
  let seqNext = 0;
  const lat: number[] = [];
  const base = randomBytes(w.blockSize);
  const deadline = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  const started = process.hrtime.bigint();
  const worker = async () => {
    const buf = Buffer.from(base); // one buffer per in-flight op: never mutated while in flight
    while (process.hrtime.bigint() < deadline) {
      const idx = w.pattern === 'random' ? Math.floor(Math.random() * blocks) : seqNext++ % blocks;
      const offset = idx * w.blockSize;
      const t0 = process.hrtime.bigint();
      if (w.op === 'read') {
        const data = await target.read(offset, buf);
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (data.length !== w.blockSize) throw new Error(`${target.name}: short read ${data.length}`);
        checkStamps(data, offset, target.name);
      } else {
        stamp(buf, offset);
        await target.write(offset, buf);
        lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
    }
  };
  await Promise.all(Array.from({ length: w.depth }, worker));
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  const sorted = Float64Array.from(lat).sort();
  return {
    ops: lat.length,
    seconds: secs,
    iops: lat.length / secs,
    mbps: (lat.length * w.blockSize) / secs / 1e6,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
  };
}

/** Fills the whole target with stamped data, 8 MiB at a time, 4 writes in flight. */
async function prefill(target: Target, size: number): Promise<number> {
  const chunk = 8 * MiB;
  const base = randomBytes(chunk);
  let next = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: 4 }, async () => {
    const buf = Buffer.from(base);
    while (next < size) {
      const offset = next;
      next += chunk;
      const part = buf.subarray(0, Math.min(chunk, size - offset));
      stamp(part, offset);
      await target.write(offset, part);
    }
  }));
  return (Date.now() - t0) / 1000;
}

function presageTarget(vol: Volume): Target {
  return {
    name: 'presage',
    read: (offset, buf) => vol.read(offset, buf.length),
    write: (offset, data) => vol.write(offset, data),
  };
}

function fileTarget(fh: fs.promises.FileHandle): Target {
  return {
    name: 'file',
    read: async (offset, buf) => {
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      return buf.subarray(0, bytesRead);
    },
    write: async (offset, data) => {
      const { bytesWritten } = await fh.write(data, 0, data.length, offset);
      if (bytesWritten !== data.length) throw new Error(`file: short write ${bytesWritten}`);
    },
  };
}

const fmt = (n: number, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '8' },
      'size-mib': { type: 'string', default: '1024' },
      out: { type: 'string' },
      only: { type: 'string' },
    },
  });
  const seconds = Number(values.duration);
  const size = Number(values['size-mib']) * MiB;
  if (!(seconds > 0) || !(size >= 64 * MiB) || size % (64 * MiB) !== 0) throw new Error('need --duration > 0 and --size-mib a positive multiple of 64');
  const workloads = values.only ? WORKLOADS.filter((w) => w.name.includes(values.only!)) : WORKLOADS;
  const header = machineLines({ notes: [`libuv threadpool: ${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'} threads (bounds the file target's real concurrency)`] });

  const log = (s: string) => process.stderr.write(`${s}\n`);
  log(`starting orchestrator + 1 server ...`);
  const cluster = await TestCluster.start({ servers: 1 });
  let client: PresageClient | undefined;
  let fh: fs.promises.FileHandle | undefined;
  const stop = async () => {
    await client?.close().catch(() => {});
    await fh?.close().catch(() => {});
    await cluster.stop();
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  try {
    client = await PresageClient.connect({ orchestratorUrl: cluster.url });
    await client.api.createVolume({ name: 'bench', size, segmentSize: 64 * MiB, replicas: 1 });
    const vol = await client.openVolume('bench');
    const presage = presageTarget(vol);
    // Same filesystem as the server's data directory (both under the cluster's temp root).
    const filePath = path.join(cluster.root, 'reference.img');
    fh = await fs.promises.open(filePath, 'w+');
    await fh.truncate(size);
    const file = fileTarget(fh);

    log(`prefilling ${size / MiB} MiB ...`);
    const pf = await prefill(presage, size);
    await vol.flush();
    const ff = await prefill(file, size);
    await fh.sync();
    log(`prefill: presage ${fmt(pf, 1)} s (${fmt(size / MiB / pf, 0)} MiB/s), file ${fmt(ff, 1)} s`);

    const rows: { w: Workload; p: Result; f: Result }[] = [];
    for (const w of workloads) {
      const p = await run(presage, w, size, seconds);
      await vol.flush();
      const f = await run(file, w, size, seconds);
      await fh.sync();
      rows.push({ w, p, f });
      log(`${w.name}: presage ${fmt(p.iops, 0)} IOPS p50 ${fmt(p.p50, 3)} ms | file ${fmt(f.iops, 0)} IOPS p50 ${fmt(f.p50, 3)} ms`);
    }

    const out: string[] = [];
    out.push(`# Client-library benchmark, ${new Date().toISOString().slice(0, 10)}`, '');
    out.push('Machine (shared with other engineers\' builds and tests, so numbers are noisy):', '', ...header, '');
    out.push(`Setup: orchestrator + 1 storage server on loopback; volume ${size / MiB} MiB, 64 MiB segments, 1 replica, prefilled;`);
    out.push(`reference: a ${size / MiB} MiB local file on the same filesystem via fs.promises FileHandle. ${seconds} s per workload and target;`);
    out.push('writes without FUA/flush on both sides (a flush/fsync follows each write workload, outside the timing);');
    out.push('the data set fits in the page cache, so reads are cache hits on both sides: this measures the software path, not the disk.');
    out.push(`Prefill: presage ${fmt(pf, 1)} s (${fmt(size / MiB / pf, 0)} MiB/s), file ${fmt(ff, 1)} s (${fmt(size / MiB / ff, 0)} MiB/s).`, '');
    out.push('| workload | target | ops | IOPS | MB/s | p50 ms | p99 ms |', '|---|---|---:|---:|---:|---:|---:|');
    for (const { w, p, f } of rows) {
      out.push(`| ${w.name} | presage | ${p.ops} | ${fmt(p.iops, 0)} | ${fmt(p.mbps, 1)} | ${fmt(p.p50, 3)} | ${fmt(p.p99, 3)} |`);
      out.push(`| ${w.name} | file | ${f.ops} | ${fmt(f.iops, 0)} | ${fmt(f.mbps, 1)} | ${fmt(f.p50, 3)} | ${fmt(f.p99, 3)} |`);
    }
    out.push('', 'Presage / file ratios (IOPS below 1 = slower; latency above 1 = slower):', '');
    out.push('| workload | IOPS ratio | p50 ratio | p99 ratio |', '|---|---:|---:|---:|');
    for (const { w, p, f } of rows) out.push(`| ${w.name} | ${fmt(p.iops / f.iops)} | ${fmt(p.p50 / f.p50, 1)} | ${fmt(p.p99 / f.p99, 1)} |`);
    out.push('', `Client stats: ${JSON.stringify(client.stats)}; load average at end: ${loadAverage()}`, '');
    const text = out.join('\n');
    process.stdout.write(`${text}\n`);
    if (values.out) {
      fs.mkdirSync(path.dirname(values.out), { recursive: true });
      fs.writeFileSync(values.out, `${text}\nCommand: \`node --import tsx bench/client-bench.ts ${process.argv.slice(2).join(' ')}\`\n`);
      log(`wrote ${values.out}`);
    }
  } finally {
    await stop();
  }
}

main().catch((err) => {
  process.stderr.write(`client-bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
