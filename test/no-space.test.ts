// Issue #22, a full disk. A server whose filesystem fills up used to answer EIO, and a write whose
// replica was the full server stalled for a minute of retries. Now the store turns ENOSPC into a
// typed NoSpaceError, the data protocol answers NO_SPACE, the server reports the segment in an
// immediate heartbeat and the orchestrator takes the full copy out of the write set (and stops
// placing data there). So:
//   - with a replica on a server that has room, every write succeeds (after at most a short wait
//     while the write set moves) and the volume reads back byte for byte;
//   - with no room anywhere (R=1 on the full server), the client gets an ENOSPC-typed error within
//     a second, an NBD client (qemu-io) gets "No space left on device", and every acknowledged
//     write reads back intact.
// The full disks are real: each full server's --dir is a small tmpfs mounted by the test (CI runs
// as root), with --capacity above its size, as a disk shared with other files would be.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { PresageClient } from '../src/client/presage-client.ts';
import { ProtocolError, Status } from '../src/protocol/messages.ts';
import { freePort, TestCluster } from './helpers/cluster.ts';
import { ensureTools, MiB, run } from './helpers/nbd-tools.ts';
import { waitFor } from './helpers/settle.ts';

const SEG = 4 * MiB;
const mounts: string[] = [];

/** A fresh tmpfs of `size` at a new folder (the test fails, not skips, without root: CI has it). */
function smallDisk(size: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`mounting a ${size} tmpfs needs root (CI runs as root): ${(err as Error).message}`);
  }
  mounts.push(dir);
  return dir;
}

after(() => {
  for (const dir of mounts) {
    spawnSync('umount', ['-l', dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function withClient<T>(url: string, fn: (c: PresageClient) => Promise<T>): Promise<T> {
  const c = await PresageClient.connect({ orchestratorUrl: url });
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

describe('a replica on a full disk leaves the write set; writes go on', () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;
  let fullId: string;
  const size = 16 * SEG;
  const data = crypto.randomBytes(size);

  before(async () => {
    const disk = smallDisk('20m');
    // Every server offers 256 MiB, so placement gives the small one its share (about 2/3 of the
    // segments, some 40 MiB): its 20 MiB disk fills halfway through the volume.
    cluster = await TestCluster.start({
      servers: 3,
      serverDir: (i) => (i === 0 ? path.join(disk, 'server') : undefined),
      serverArgs: () => ['--capacity', String(256 * MiB), '--scrub-interval', '0'],
    });
    api = new OrchestratorClient(cluster.url);
    fullId = cluster.servers[0]!.id;
    await api.createVolume({ name: 'spill', size, segmentSize: SEG, replicas: 2 });
  });
  after(async () => {
    api?.close();
    await cluster?.stop();
  });

  test('every write succeeds, the full copies move, and the volume reads back byte for byte', async () => {
    const onFull = (await api.segments('spill')).filter((s) => s.replicas.includes(fullId)).length;
    assert.ok(onFull * SEG > 20 * MiB, `the small disk holds ${onFull} segments: enough to fill it`);
    let slowest = 0;
    await withClient(cluster.url, async (c) => {
      const vol = await c.openVolume('spill');
      for (let off = 0; off < size; off += MiB) {
        const t0 = performance.now();
        await vol.write(off, data.subarray(off, off + MiB)); // throws on any client error
        slowest = Math.max(slowest, performance.now() - t0);
      }
      await vol.flush();
    });
    // The old behaviour was a minute of retries per write; the new one a heartbeat and an epoch.
    assert.ok(slowest < 5000, `the slowest write took ${Math.round(slowest)} ms`);

    const events = await api.events();
    const moved = events.filter((e) => e.type === 'no-space' && e.server === fullId && e.segmentId !== '');
    assert.ok(moved.length > 0, 'the decision log records copies leaving the write set for lack of space');
    assert.ok(events.some((e) => e.type === 'no-space' && e.server === fullId && e.segmentId === '' && /reports writes failing/.test(e.reason)), 'and that the server reported itself full');
    for (const e of moved) {
      const seg = await api.segment(e.segmentId);
      assert.ok(!seg.replicas.includes(fullId), `${e.segmentId} no longer names the full server`);
    }
    // Repair brings the moved segments back to two replicas, never onto the full server.
    await waitFor('the moved segments are fully replicated elsewhere', async () => {
      const segs = await api.segments('spill');
      return moved.every((e) => {
        const s = segs.find((x) => x.segmentId === e.segmentId)!;
        return s.replicas.length === 2 && !s.replicas.includes(fullId) && !s.joining?.length;
      });
    }, 60_000, 200);

    const back = await withClient(cluster.url, async (c) => (await c.openVolume('spill')).read(0, size));
    assert.ok(back.equals(data), 'the volume reads back byte for byte');
  });
});

describe('no room anywhere: ENOSPC to the client within a second, nothing acknowledged lost', () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;
  let nbdPort: number;
  const size = 8 * SEG;

  before(async () => {
    ensureTools(['qemu-io']);
    const disk = smallDisk('12m');
    nbdPort = await freePort();
    cluster = await TestCluster.start({
      servers: 1,
      serverDir: () => path.join(disk, 'server'),
      serverArgs: () => ['--capacity', String(256 * MiB), '--scrub-interval', '0', '--nbd-listen', `127.0.0.1:${nbdPort}`],
    });
    api = new OrchestratorClient(cluster.url);
    await api.createVolume({ name: 'solo', size, segmentSize: SEG, replicas: 1 });
    await waitFor('the server exports over NBD', async () => cluster.servers[0]!.proc!.stdout.includes('nbd export listening on'), 15_000, 50);
  });
  after(async () => {
    api?.close();
    await cluster?.stop();
  });

  test('the client library gets a typed ENOSPC fast; acknowledged writes read back', async () => {
    const acked: { off: number; chunk: Buffer }[] = [];
    let failure: unknown;
    let failedAfterMs = 0;
    await withClient(cluster.url, async (c) => {
      const vol = await c.openVolume('solo');
      for (let off = 0; off < size && failure === undefined; off += MiB) {
        const chunk = crypto.randomBytes(MiB);
        const t0 = performance.now();
        try {
          await vol.write(off, chunk);
          acked.push({ off, chunk });
        } catch (err) {
          failure = err;
          failedAfterMs = performance.now() - t0;
        }
      }
    });
    assert.ok(failure instanceof ProtocolError, `a write failed with a typed error (got ${String(failure)})`);
    assert.equal(failure.status, Status.NO_SPACE);
    assert.equal((failure as ProtocolError).code, 'ENOSPC');
    assert.match(failure.message, /no space left/);
    assert.ok(failedAfterMs < 1000, `the ENOSPC came after ${Math.round(failedAfterMs)} ms`);
    assert.ok(acked.length >= 4 && acked.length < size / MiB, `${acked.length} writes were acknowledged before the disk was full`);

    await withClient(cluster.url, async (c) => {
      const vol = await c.openVolume('solo');
      for (const { off, chunk } of acked) assert.ok((await vol.read(off, MiB)).equals(chunk), `the acknowledged write at ${off} reads back`);
    });
    const events = await api.events();
    assert.ok(events.some((e) => e.type === 'no-space' && /no replica on a server with room/.test(e.reason)), 'the decision log says writes fail with ENOSPC');
  });

  test('an NBD client sees "No space left on device", not an I/O error', async () => {
    // The last megabytes of the volume were never written: the disk has no room for them.
    const r = await run('qemu-io', ['-f', 'raw', '-c', `write -P 0x5a ${size - 2 * MiB} 1M`, `nbd://127.0.0.1:${nbdPort}/solo`], 30_000);
    assert.match(r.stdout + r.stderr, /No space left on device/, `qemu-io said: ${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stdout + r.stderr, /Input\/output error/);
  });
});
