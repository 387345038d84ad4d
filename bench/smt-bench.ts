// SMT metadata benchmark, both backends: load N entries into the store, full-load one client copy
// (KvReplica: time and heap bytes per entry), then the update-to-client propagation latency to 100
// watching copies. Prints a markdown report.
//
//   node --expose-gc --import tsx bench/smt-bench.ts [--entries 1000000] [--watchers 100] [--updates 300]
//
// Copies for the latency part follow one volume's prefix (1000 entries), which is what a client
// needs for the volumes it mounts; 100 full 1M-entry copies would need ~100x the per-copy heap in
// one process. Every update goes to that volume, so each one fans out to all 100 copies.
// etcd copies each have their own EtcdKvStore and Etcd3 client (own connection and watch), as 100
// client machines would; embedded copies long-poll the store object directly.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Etcd3 } from 'etcd3';
import { EmbeddedKvStore } from '../src/metadata/embedded-kv.ts';
import { EtcdKvStore } from '../src/metadata/etcd-kv.ts';
import type { KvStore } from '../src/metadata/kv.ts';
import { KvReplica } from '../src/metadata/kv-replica.ts';
import { startEtcd } from '../src/metadata/testing/etcd-process.ts';
import { machineSummary, toolVersion } from './machine-info.ts';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
}

const N = arg('entries', 1_000_000);
const WATCHERS = arg('watchers', 100);
const UPDATES = arg('updates', 300);
const PER_VOLUME = 1000;
const BATCH = 1000;
const PREFIX = '/presage/smt/';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const key = (i: number) => `${PREFIX}vol-${Math.floor(i / PER_VOLUME)}/${i % PER_VOLUME}`;
const value = (epoch: number, i: number) => JSON.stringify({ epoch, replicas: [`srv-${'abcdefgh'[i % 8]}`, `srv-${'abcdefgh'[(i + 1) % 8]}`], state: 'ok' });

interface Result {
  backend: string;
  loadS: number;
  fullLoadS: number;
  bytesPerEntry: number;
  p50: number;
  p99: number;
  max: number;
  deliveries: number;
}

function heap(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function load(store: KvStore, parallel: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      for (;;) {
        const start = next;
        next += BATCH;
        if (start >= N) return;
        const put = [];
        for (let i = start; i < Math.min(N, start + BATCH); i++) put.push({ key: key(i), value: value(1, i) });
        await store.txn({ put });
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}

async function fullLoad(source: KvStore): Promise<{ seconds: number; bytesPerEntry: number }> {
  const before = heap();
  const t0 = performance.now();
  const copy = new KvReplica(source, PREFIX, { follow: false });
  await copy.start();
  const seconds = (performance.now() - t0) / 1000;
  if (copy.size !== N) throw new Error(`full load got ${copy.size} entries, expected ${N}`);
  // Spot-check content byte for byte.
  for (const i of [0, 1, N >> 1, N - 1]) {
    if (copy.get(key(i)) !== value(1, i)) throw new Error(`full load: wrong value for ${key(i)}`);
  }
  const after = heap();
  await copy.stop();
  return { seconds, bytesPerEntry: (after - before) / N };
}

async function propagation(writer: KvStore, sources: KvStore[]): Promise<{ lat: number[] }> {
  const volPrefix = `${PREFIX}vol-0/`;
  const copies = sources.map((s) => new KvReplica(s, volPrefix, { pollTimeoutMs: 30_000, retryDelayMs: 100 }));
  await Promise.all(copies.map((c) => c.start()));
  const sent = new Map<string, number>(); // value -> send time
  const lat: number[] = [];
  let pending = 0;
  let wake: (() => void) | undefined;
  for (const c of copies) {
    c.on('change', (ev) => {
      const t = sent.get(ev.value ?? '');
      if (t === undefined) return;
      lat.push(performance.now() - t);
      if (--pending === 0) wake?.();
    });
  }
  for (let u = 0; u < UPDATES; u++) {
    const i = u % PER_VOLUME;
    const v = value(2 + u, i);
    pending += copies.length;
    sent.set(v, performance.now());
    await writer.txn({ put: [{ key: key(i), value: v }] });
    await new Promise((r) => setTimeout(r, 10)); // a paced stream, not one burst
  }
  if (pending > 0) {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${pending} deliveries missing after 30 s`)), 30_000);
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
  await Promise.all(copies.map((c) => c.stop()));
  return { lat };
}

function summarize(backend: string, loadS: number, full: { seconds: number; bytesPerEntry: number }, lat: number[]): Result {
  const s = [...lat].sort((a, b) => a - b);
  return { backend, loadS, fullLoadS: full.seconds, bytesPerEntry: full.bytesPerEntry, p50: pct(s, 50), p99: pct(s, 99), max: s[s.length - 1]!, deliveries: s.length };
}

async function embedded(): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'presage-smt-bench-'));
  const store = EmbeddedKvStore.open(join(dir, 'meta.db'));
  try {
    const loadS = await load(store, 1);
    const full = await fullLoad(store);
    const { lat } = await propagation(store, Array.from({ length: WATCHERS }, () => store));
    return summarize('embedded (SQLite, in-process)', loadS, full, lat);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function etcd(): Promise<Result> {
  // Progress notifications every second, as recommended for deployments (see etcd-kv.ts).
  const proc = await startEtcd({ progressNotifyMs: 1000, maxTxnOps: BATCH });
  const writer = EtcdKvStore.connect(proc.url);
  const clients: Etcd3[] = [];
  try {
    const loadS = await load(writer, 4);
    const reader = EtcdKvStore.connect(proc.url);
    const full = await fullLoad(reader);
    await reader.close();
    const sources = Array.from({ length: WATCHERS }, () => {
      const c = new Etcd3({ hosts: proc.endpoint });
      clients.push(c);
      return new EtcdKvStore(c);
    });
    const { lat } = await propagation(writer, sources);
    await Promise.all(sources.map((s) => s.close()));
    return summarize('etcd (EtcdKvStore, 1 member)', loadS, full, lat);
  } finally {
    for (const c of clients) c.close();
    await writer.close();
    await proc.stop();
  }
}

const results: Result[] = [];
const t0 = performance.now();
results.push(await embedded());
results.push(await etcd());
const total = (performance.now() - t0) / 1000;

const f = (x: number, d = 1) => x.toFixed(d);
console.log(`# SMT metadata benchmark\n`);
console.log(`- date: ${new Date().toISOString()}`);
console.log(`- machine: ${machineSummary()} (shared with other work); ${toolVersion('etcd')}`);
console.log(`- entries: ${N} under ${PREFIX}vol-N/I (${PER_VOLUME} per volume), values like ${value(1, 0)}`);
console.log(`- load: txns of ${BATCH} puts (embedded: 1 writer; etcd: 4 concurrent writers)`);
console.log(`- full load: one KvReplica of the whole ${PREFIX} prefix (etcd: ranges of 10000 keys at one revision); heap delta after gc / entries`);
console.log(`- propagation: ${WATCHERS} KvReplicas following ${PREFIX}vol-0/, ${UPDATES} single-key updates 10 ms apart; latency from before the txn to each copy's change event`);
console.log(`- total run time: ${f(total, 0)} s\n`);
console.log('| backend | load (s) | load rate (entries/s) | full load (s) | heap / entry (B) | propagation p50 (ms) | p99 (ms) | max (ms) | deliveries |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(`| ${r.backend} | ${f(r.loadS)} | ${f(N / r.loadS, 0)} | ${f(r.fullLoadS)} | ${f(r.bytesPerEntry, 0)} | ${f(r.p50, 2)} | ${f(r.p99, 2)} | ${f(r.max, 2)} | ${r.deliveries} |`);
}
