// The "beside a server" placement: `presage server --nbd-listen` exports every volume over NBD
// from the storage server's own process. Segments the server holds are served in-process (no
// socket, no second process); the others go to their servers as with `presage nbd`. Real
// processes (an orchestrator and 3 servers), real clients (nbdcopy, fio's nbd engine), and
// `presage volume export` through the ordinary client to show the bytes are in the cluster.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { freePort, TestCluster } from './helpers/cluster.ts';
import { assertFioVerified, ensureTools, MiB, run, sha256 } from './helpers/nbd-tools.ts';
import { waitFor } from './helpers/settle.ts';

let cluster: TestCluster;
let nbdPort: number;
let tmp: string;

before(async () => {
  ensureTools(['nbdcopy', 'fio']);
  nbdPort = await freePort();
  cluster = await TestCluster.start({ servers: 3, serverArgs: (i) => (i === 0 ? ['--nbd-listen', `127.0.0.1:${nbdPort}`] : []) });
  tmp = path.join(cluster.root, 'nbd-in-server');
  fs.mkdirSync(tmp);
  for (const [name, size, seg, replicas] of [['r1', 48 * MiB, 4 * MiB, 1], ['r2', 32 * MiB, 4 * MiB, 2]] as const) {
    const r = await cluster.cli(['volume', 'create', name, '--size', String(size), '--segment-size', String(seg), '--replicas', String(replicas)]);
    assert.equal(r.code, 0, r.stderr);
  }
  const s0 = cluster.servers[0]!.proc!;
  await waitFor('the server prints its nbd line', async () => s0.stdout.includes('nbd export listening on'), 15_000, 50);
});

after(async () => {
  await cluster?.stop();
});

describe('presage server --nbd-listen', () => {
  test('prints the export address after the server line', () => {
    const lines = cluster.servers[0]!.proc!.stdout.trim().split('\n');
    assert.match(lines[0]!, /^server \S+ serving data on /);
    assert.equal(lines[1], `nbd export listening on nbd://127.0.0.1:${nbdPort}`);
  });

  test('nbdcopy round trip over segments held here and elsewhere (1 replica), equal to what the cluster holds', async () => {
    const held = new Set((await new OrchestratorClient(cluster.url).segments('r1')).filter((s) => s.replicas.includes(cluster.servers[0]!.id)).map((s) => s.segmentId));
    assert.ok(held.size > 0 && held.size < 12, `the volume's 12 segments are spread: ${held.size} on the exporting server`);
    const src = path.join(tmp, 'src.bin');
    const data = randomBytes(48 * MiB);
    fs.writeFileSync(src, data);
    const inR = await run('nbdcopy', ['--flush', src, `nbd://127.0.0.1:${nbdPort}/r1`], 60_000);
    assert.equal(inR.code, 0, inR.stderr);
    const dst = path.join(tmp, 'dst.bin');
    const outR = await run('nbdcopy', [`nbd://127.0.0.1:${nbdPort}/r1`, dst], 60_000);
    assert.equal(outR.code, 0, outR.stderr);
    assert.equal(sha256(fs.readFileSync(dst)), sha256(data), 'nbdcopy export differs from the import');
    const viaCli = path.join(tmp, 'cli.bin');
    const ex = await cluster.cli(['volume', 'export', 'r1', viaCli]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.equal(sha256(fs.readFileSync(viaCli)), sha256(data), 'the cluster (read by an ordinary client) holds what was written');
  });

  test('fio randwrite with crc32c verification on 2 replicas (local primary forwards, local secondary, remote)', async () => {
    const r = await run('fio', [
      '--name=in-server', '--ioengine=nbd', `--uri=nbd://127.0.0.1:${nbdPort}/r2`,
      '--rw=randwrite', '--bs=4k', '--size=32M', '--iodepth=16',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0',
      '--output-format=json',
    ], 120_000, tmp);
    assertFioVerified(r, 32 * MiB);
  });

  test('SIGTERM stops the server and its export cleanly', async () => {
    const s0 = cluster.servers[0]!;
    s0.proc!.child.kill('SIGTERM');
    assert.equal(await s0.proc!.exited, 0, s0.proc!.stderr);
    s0.proc = undefined;
  });
});

