// fio through `presage nbd` while the cluster changes under it: segments migrate and a server
// drains during a verified random-write run, then a server holding primaries is SIGKILLed during
// another. Real processes throughout (an orchestrator, 4 storage servers, `presage nbd`), real fio
// with its nbd engine and crc32c verification, and afterwards `fio --verify_only`, nbdcopy and
// `presage volume export` to show the data is intact once everything has settled.
//
// Each volume is written by exactly one fio pass starting from zeros, and fio's random map writes
// every block exactly once, so a lost or misplaced write leaves zeros or another offset's block:
// both fail crc32c/header verification. verify_backlog makes fio read blocks back while the
// migrations and the failover are still running, not only at the end.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import type { SegmentView } from '../src/api/types.ts';
import { freePort, spawnPresage, TestCluster, type Proc } from './helpers/cluster.ts';
import { assertFioVerified, ensureTools, fioJob, MiB, run, sha256, type Done, type FioJob } from './helpers/nbd-tools.ts';
import { replicaDisagreements, settled, sleep, waitFor } from './helpers/settle.ts';

const VOL_SIZE = 64 * MiB;
const SEG = 8 * MiB;
const TOOLS = ['nbdcopy', 'fio'];
/**
 * Write rate caps: 16384 blocks take ~33 s (migrations: 7 moves, ~12 s on an idle machine) and
 * ~23 s (failover and re-replication: ~8 s), so the cluster changes overlap fio's I/O with margin.
 */
const MIGRATE_IOPS = 500;
const KILL_IOPS = 700;

interface FioRun {
  /** Whether fio is still running (the cluster events must overlap its I/O). */
  running(): boolean;
  done: Promise<Done>;
}

const liveFio = new Set<ChildProcess>();

/** Starts fio in the background; it is SIGKILLed if it outlives timeoutMs (or the test fails). */
function startFio(args: string[], cwd: string, timeoutMs: number): FioRun {
  const child = spawn('fio', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  liveFio.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  let exited = false;
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<Done>((resolve) => child.once('exit', (code, sig) => {
    exited = true;
    liveFio.delete(child);
    clearTimeout(timer);
    resolve({ code: code ?? (sig ? -1 : -2), stdout, stderr: stderr + (sig ? `\n(fio killed by ${sig})` : '') });
  }));
  return { running: () => !exited, done };
}

/**
 * One verified random-write pass over the whole export: writes every 4 KiB block once in random
 * order (16 in flight), reads each batch of 256 back while writing (verify_backlog), then reads
 * whatever is left. Writes are rate-capped (writeIops) so the pass lasts long enough to overlap
 * the cluster changes. The same job with 'verify-only' regenerates the offsets and checksums from
 * the seed and re-reads everything; there verify_backlog must be off (fio 3.33 then silently
 * verifies nothing — the corrupted-copy check below guards against that).
 */
function fioArgs(name: string, target: string[], seed: number, mode: { writeIops: number } | 'verify-only'): string[] {
  return [
    `--name=${name}`, ...target,
    '--rw=randwrite', '--bs=4k', `--size=${VOL_SIZE}`, '--iodepth=16',
    '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', `--randseed=${seed}`,
    ...(mode === 'verify-only' ? ['--verify_only'] : ['--verify_backlog=256', `--rate_iops=,${mode.writeIops}`]),
    '--output-format=json',
  ];
}

describe('fio through presage nbd while the cluster changes', () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;
  let nbd: Proc;
  let uriBase: string;
  let tmp: string;
  const t0 = Date.now();
  const log = (msg: string) => console.log(`# +${((Date.now() - t0) / 1000).toFixed(1)}s ${msg}`);

  before(async () => {
    ensureTools(TOOLS);
    cluster = await TestCluster.start({
      servers: 4,
      heartbeatTimeoutMs: 2000,
      serverArgs: () => ['--gc-grace', '1500', '--scrub-interval', '0'],
    });
    api = new OrchestratorClient(cluster.url);
    tmp = path.join(cluster.root, 'nbd-failures');
    fs.mkdirSync(tmp);
    const port = await freePort();
    nbd = await spawnPresage(['nbd', '--orchestrator', cluster.url, '--listen', `127.0.0.1:${port}`], /nbd export listening on/);
    uriBase = `nbd://127.0.0.1:${port}`;
    log('cluster and nbd export up');
  });

  after(async () => {
    for (const c of liveFio) c.kill('SIGKILL');
    if (cluster) {
      await cluster.kill(nbd, 'SIGKILL');
      await cluster.stop();
    }
  });

  /** Starts the verified write pass on a fresh volume of 8 segments x 2 replicas. */
  async function startPass(name: string, seed: number, writeIops: number): Promise<FioRun> {
    await api.createVolume({ name, size: VOL_SIZE, segmentSize: SEG, replicas: 2 });
    const f = startFio(fioArgs(name, ['--ioengine=nbd', `--uri=${uriBase}/${name}`], seed, { writeIops }), tmp, 150_000);
    await sleep(1500); // fio connects and is writing
    if (!f.running()) assert.fail(`fio ended at once: ${JSON.stringify(await f.done)}`);
    return f;
  }

  /** fio exited 0, wrote every block once and read every block back with no verify error. */
  async function assertFioClean(f: FioRun): Promise<FioJob> {
    return assertFioVerified(await f.done, VOL_SIZE);
  }

  async function assertReplicasAgree(name: string): Promise<SegmentView[]> {
    const segs = await waitFor(`${name} settled with 2 replicas`, () => settled(api, name, 2), 90_000);
    assert.deepEqual(await replicaDisagreements(api, segs, SEG), [], `every replica of ${name} holds the same blocks`);
    return segs;
  }

  it('fio randwrite with crc32c verification passes while segments migrate and a server drains', async () => {
    const f = await startPass('mig', 11, MIGRATE_IOPS);
    log('fio writing to mig');

    // Two manual migrations through the CLI, each waited for until committed.
    const servers = (await api.status()).servers.map((s) => s.id);
    const segs = await api.segments('mig');
    assert.equal(segs.length, VOL_SIZE / SEG);
    for (const s of [segs[1]!, segs[6]!]) {
      const to = servers.find((id) => !s.replicas.includes(id))!;
      const r = await cluster.cli(['migrate', s.segmentId, '--to', to, '--wait', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { committed: boolean; segment: SegmentView };
      assert.equal(out.committed, true, r.stdout);
      assert.ok(out.segment.replicas.includes(to), `${s.segmentId} now on ${to}`);
      assert.equal(out.segment.epoch, s.epoch + 2, 'join (epoch+1) then commit (epoch+2)');
      log(`migrated ${s.segmentId} to ${to}`);
    }
    assert.ok(f.running(), 'fio must still be writing while segments migrate (raise the write pass length)');

    // Then drain the server holding the most replicas of the volume.
    const now = await api.segments('mig');
    const held = new Map<string, number>();
    for (const s of now) for (const r of s.replicas) held.set(r, (held.get(r) ?? 0) + 1);
    const [victim, onVictim] = [...held.entries()].sort((a, b) => b[1] - a[1])[0]!;
    await api.drain(victim, 'nbd-failures test');
    const drained = await waitFor('drain finished', async () => {
      const s = await settled(api, 'mig', 2);
      return s && s.every((x) => !x.replicas.includes(victim)) ? s : false;
    }, 90_000);
    assert.ok(onVictim > 0);
    log(`drained ${victim} (${onVictim} segments)`);
    assert.ok(f.running(), 'fio must still be running when the drain commits (raise the write pass length)');

    const committed = (await api.events()).filter((e) => e.type === 'committed' && e.segmentId.startsWith('mig/'));
    assert.equal(committed.length, 2 + onVictim, `every move committed once: ${committed.map((e) => e.segmentId).join(' ')}`);

    await assertFioClean(f);
    log('fio finished clean');
    assert.deepEqual(await replicaDisagreements(api, drained, SEG), [], 'every replica holds the same blocks');
    await api.undrain(victim); // the next test wants all four servers taking data
  });

  it('fio randwrite with crc32c verification passes while a server holding primaries is SIGKILLed', async () => {
    const f = await startPass('kill', 22, KILL_IOPS);
    log('fio writing to kill');
    await sleep(1500);
    const segs = await api.segments('kill');
    const primaries = new Map<string, number>();
    for (const s of segs) primaries.set(s.replicas[0]!, (primaries.get(s.replicas[0]!) ?? 0) + 1);
    const [victim, count] = [...primaries.entries()].sort((a, b) => b[1] - a[1])[0]!;
    assert.ok(count > 0);
    assert.ok(f.running(), 'fio must be writing when the server dies');
    await cluster.killServer(cluster.serverById(victim).index, 'SIGKILL');
    log(`SIGKILLed ${victim}, primary of ${count} segments`);

    const restored = await waitFor('replication factor restored', async () => {
      const s = await settled(api, 'kill', 2);
      return s && s.every((x) => !x.replicas.includes(victim)) ? s : false;
    }, 90_000);
    log(`replication restored (fio ${f.running() ? 'still running' : 'already done'})`);

    const job = await assertFioClean(f);
    log(`fio finished clean; slowest write ${((job.write.lat_ns?.max ?? 0) / 1e6).toFixed(0)} ms (the failover stall)`);
    assert.deepEqual(await replicaDisagreements(api, restored, SEG), [], 'the surviving and new replicas agree');
  });

  it('after everything settled: fio --verify_only, nbdcopy and presage volume export all read the same verified data', async () => {
    for (const [name, seed] of [['mig', 11], ['kill', 22]] as const) {
      await assertReplicasAgree(name);
      // fio re-reads every block through NBD and checks it against the pass that wrote it.
      const v = await run('fio', [...fioArgs(name, ['--ioengine=nbd', `--uri=${uriBase}/${name}`], seed, 'verify-only')], 120_000, tmp);
      assert.equal(v.code, 0, `${v.stderr}\n${v.stdout.slice(-3000)}`);
      const vj = fioJob(v);
      assert.equal(vj.error, 0);
      assert.equal(vj.read.io_bytes, VOL_SIZE, 'verify_only read the whole volume');

      // The same bytes through nbdcopy and through the client library (no NBD in between).
      const viaNbd = path.join(tmp, `${name}.nbd.raw`);
      const c = await run('nbdcopy', [`${uriBase}/${name}`, viaNbd], 120_000);
      assert.equal(c.code, 0, c.stderr);
      const viaCli = path.join(tmp, `${name}.cli.raw`);
      const e = await cluster.cli(['volume', 'export', name, viaCli]);
      assert.equal(e.code, 0, e.stderr);
      const a = fs.readFileSync(viaNbd);
      const b = fs.readFileSync(viaCli);
      assert.equal(a.length, VOL_SIZE);
      assert.equal(sha256(a), sha256(b), `${name}: nbdcopy and presage volume export differ`);
      // No block still holds zeros (every 4 KiB block starts with fio's header magic 0xacca).
      for (let off = 0; off < VOL_SIZE; off += 4096) {
        if (b.readUInt16LE(off) !== 0xacca) assert.fail(`${name}: block at ${off} has no fio header`);
      }
      // And the exported file verifies against fio's checksums on its own.
      const fv = await run('fio', [...fioArgs(name, ['--ioengine=psync', `--filename=${viaCli}`], seed, 'verify-only')], 60_000, tmp);
      assert.equal(fv.code, 0, `${fv.stderr}\n${fv.stdout.slice(-3000)}`);
      assert.equal(fioJob(fv).read.io_bytes, VOL_SIZE);
      // That check can fail: one flipped byte in the copy is reported.
      const fd = fs.openSync(viaCli, 'r+');
      fs.writeSync(fd, Buffer.from([b[1000 * 4096 + 2000]! ^ 0xff]), 0, 1, 1000 * 4096 + 2000);
      fs.closeSync(fd);
      const bad = await run('fio', [...fioArgs(name, ['--ioengine=psync', `--filename=${viaCli}`], seed, 'verify-only')], 60_000, tmp);
      assert.notEqual(bad.code, 0, 'fio must catch a corrupted block');
      assert.match(bad.stderr, /crc32c|verify/i);
      fs.rmSync(viaNbd);
      fs.rmSync(viaCli);
      log(`${name}: verify_only, nbdcopy and volume export agree`);
    }
  });
});
