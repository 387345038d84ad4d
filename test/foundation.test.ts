// Integration: orchestrator + 3 storage servers as real processes on loopback.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PresageClient } from '../src/client/presage-client.ts';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { TestCluster, metaBackends } from './helpers/cluster.ts';
import { VerifyingWorkload, prng, randomBytes } from './helpers/workload.ts';

const MiB = 1024 * 1024;

for (const meta of metaBackends()) describe(`foundation: a 3-server cluster on loopback [${meta} metadata]`, () => {
  let cluster: TestCluster;

  before(async () => {
    cluster = await TestCluster.start({ servers: 3, meta });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('creates a 256 MiB volume of 16 MiB segments and reads back random writes across segment boundaries byte for byte', async () => {
    const r = await cluster.cli(['volume', 'create', 'vol-a', '--size', '256MiB', '--segment-size', '16MiB', '--replicas', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rec = JSON.parse(r.stdout);
    assert.equal(rec.segmentCount, 16);

    const segs = await new OrchestratorClient(cluster.url).segments('vol-a');
    assert.equal(segs.length, 16);
    for (const s of segs) {
      assert.equal(s.replicas.length, 2);
      assert.notEqual(s.replicas[0], s.replicas[1], 'replicas on distinct servers');
    }
    // Balanced: 32 replicas over 3 servers.
    const per = new Map<string, number>();
    for (const s of segs) for (const id of s.replicas) per.set(id, (per.get(id) ?? 0) + 1);
    assert.equal(per.size, 3);
    for (const n of per.values()) assert.ok(n >= 10 && n <= 11, `unbalanced placement: ${[...per.values()]}`);

    const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
    try {
      const vol = await client.openVolume('vol-a');
      const w = new VerifyingWorkload(vol, 42, 3 * MiB);
      // Writes straddling every segment boundary, plus random ones of random sizes and alignments.
      const rand = prng(7);
      for (let seg = 1; seg < 16; seg++) {
        const len = 1 + Math.floor(rand() * 2 * MiB);
        await w.writeAt(seg * 16 * MiB - Math.floor(len / 2), randomBytes(rand, len));
      }
      await w.run({ workers: 8, until: () => w.stats.writes >= 200 });
      assert.deepEqual(w.stats.errors, []);
      assert.equal(await w.verifyAll(), undefined, 'every byte of the volume matches the model');
      // A read spanning three segments in one call.
      const off = 16 * MiB - 12345;
      const got = await vol.read(off, 16 * MiB + 50000);
      assert.ok(got.equals(w.model.subarray(off, off + 16 * MiB + 50000)));
    } finally {
      await client.close();
    }
  });

  it('volume import then export of a 100 MiB random file gives the same sha256', async () => {
    const dir = fs.mkdtempSync(path.join(cluster.root, 'io-'));
    const input = path.join(dir, 'in.bin');
    const output = path.join(dir, 'out.bin');
    fs.writeFileSync(input, crypto.randomBytes(100 * MiB));
    assert.equal((await cluster.cli(['volume', 'create', 'vol-io', '--size', '100MiB', '--segment-size', '16MiB'])).code, 0);
    const imp = await cluster.cli(['volume', 'import', 'vol-io', input, '--json']);
    assert.equal(imp.code, 0, imp.stderr);
    assert.equal(JSON.parse(imp.stdout).bytes, 100 * MiB);
    const exp = await cluster.cli(['volume', 'export', 'vol-io', output]);
    assert.equal(exp.code, 0, exp.stderr);
    const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
    assert.equal(sha(output), sha(input));
  });

  it('keeps data and the SMT across SIGKILL of every server and the orchestrator', async () => {
    const before = await new OrchestratorClient(cluster.url).segments('vol-a');
    const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
    const vol = await client.openVolume('vol-a');
    const snapshot = await vol.read(0, vol.size);
    await vol.flush();
    await client.close();

    await cluster.killOrchestrator('SIGKILL');
    for (let i = 0; i < 3; i++) await cluster.killServer(i, 'SIGKILL');
    await cluster.startOrchestrator();
    await Promise.all([0, 1, 2].map((i) => cluster.startServer(i)));

    const after = await new OrchestratorClient(cluster.url).segments('vol-a');
    assert.deepEqual(after, before, 'the SMT survived');
    const c2 = await PresageClient.connect({ orchestratorUrl: cluster.url });
    try {
      const v2 = await c2.openVolume('vol-a');
      const again = await v2.read(0, v2.size);
      assert.ok(again.equals(snapshot), 'the data survived byte for byte');
    } finally {
      await c2.close();
    }
  });

  it('redirects a client with a stale SMT: one extra round trip, no error', async () => {
    const api = new OrchestratorClient(cluster.url);
    // A lazy client: it loads the SMT once and only refreshes when a server tells it to.
    const client = await PresageClient.connect({ orchestratorUrl: cluster.url, watch: false });
    try {
      const vol = await client.openVolume('vol-a');
      const seg = (await api.segments('vol-a'))[3];
      const moved = await api.promote(seg.segmentId, seg.replicas[1]);
      assert.equal(moved.epoch, seg.epoch + 1);
      assert.equal(client.view.entry(seg.segmentId)?.epoch, seg.epoch, 'the client copy is stale');

      const data = crypto.randomBytes(64 * 1024);
      const before = { ...client.stats };
      await vol.write(3 * 16 * MiB + 4096, data);
      assert.equal(client.stats.redirects - before.redirects, 1, 'exactly one redirect');
      assert.equal(client.view.entry(seg.segmentId)?.epoch, moved.epoch, 'the copy caught up');
      assert.ok((await vol.read(3 * 16 * MiB + 4096, data.length)).equals(data));
    } finally {
      await client.close();
    }
  });

  it('answers bad CLI input with a one-line reason and a non-zero exit', async () => {
    const cases: [string[], RegExp][] = [
      [['volume', 'create', 'bad name', '--size', '1GiB'], /invalid volume name/],
      [['volume', 'create', 'x', '--size', '12 parsecs'], /invalid size unit/],
      [['volume', 'create', 'x', '--size', '64MiB', '--segment-size', '3MiB'], /power of two/],
      [['volume', 'create', 'x', '--size', '64MiB', '--replicas', '9'], /replicas must be an integer from 1 to 5/],
      [['volume', 'create', 'vol-a', '--size', '64MiB'], /already exists/],
      [['volume', 'delete', 'nope'], /no volume nope/],
      [['volume', 'export', 'nope', '/dev/null'], /no volume named "nope"/],
    ];
    for (const [args, re] of cases) {
      const r = await cluster.cli(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.stderr, re, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length <= 2, true, `short error for ${args.join(' ')}: ${r.stderr}`);
    }
    const unreachable = await cluster.cli(['status', '--orchestrator', '127.0.0.1:1']);
    assert.notEqual(unreachable.code, 0);
    assert.match(unreachable.stderr, /cannot reach/);
  });

  it('lists and deletes volumes; a deleted volume is gone from status and servers', async () => {
    assert.equal((await cluster.cli(['volume', 'create', 'vol-del', '--size', '32MiB', '--segment-size', '1MiB'])).code, 0);
    const list = JSON.parse((await cluster.cli(['volume', 'list', '--json'])).stdout) as { name: string }[];
    assert.ok(list.some((v) => v.name === 'vol-del'));
    assert.equal((await cluster.cli(['volume', 'delete', 'vol-del'])).code, 0);
    const st = JSON.parse((await cluster.cli(['status', '--json'])).stdout) as { volumes: { name: string }[] };
    assert.ok(!st.volumes.some((v) => v.name === 'vol-del'));
    const text = await cluster.cli(['status']);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /Servers \(3\)/);
    assert.match(text.stdout, /vol-a/);
  });
});
