// A storage server under a partial-frame flood, as a hostile peer would send it: 80 connections
// each announce a 7 MiB frame, send 6 MiB of it and go quiet. The server's resident memory must
// stay within a stated bound (+128 MiB over its level before the flood; without the server-wide
// partial-frame budget it grew by ~600 MiB), and a real client's I/O must still complete, byte
// for byte, during the flood. Real processes: an orchestrator and one storage server.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { PresageClient } from '../src/client/presage-client.ts';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { TestCluster } from './helpers/cluster.ts';

const MiB = 1024 * 1024;
const RSS_BOUND = 128 * MiB;

let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.start({ servers: 1, serverArgs: () => ['--scrub-interval', '0', '--handshake-timeout', '1000', '--max-connections-per-peer', '100'] });
  await new OrchestratorClient(cluster.url).createVolume({ name: 'v', size: 16 * MiB, segmentSize: 16 * MiB, replicas: 1 });
});

after(async () => {
  await cluster?.stop();
});

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

test('80 connections of partial 7 MiB frames keep the server within +128 MiB, and a client\'s I/O still completes', async () => {
  const server = cluster.servers[0]!;
  const pid = server.proc!.child.pid!;
  const client = await PresageClient.connect({ orchestratorUrl: cluster.url });
  const flood: net.Socket[] = [];
  try {
    const vol = await client.openVolume('v');
    const warm = Buffer.alloc(MiB, 1);
    await vol.write(0, warm); // the data path is warm before the baseline
    assert.ok((await vol.read(0, MiB)).equals(warm));
    const baseline = rssBytes(pid);

    const head = Buffer.alloc(4);
    head.writeUInt32BE(7 * MiB);
    const body = Buffer.alloc(6 * MiB, 0xee);
    let closedByServer = 0;
    for (let i = 0; i < 80; i++) {
      const s = net.connect(server.port, '127.0.0.1');
      s.on('error', () => {});
      s.on('close', () => closedByServer++);
      s.write(head);
      s.write(body);
      flood.push(s);
    }
    // A real client writes and reads back while the flood is in.
    let peak = baseline;
    const sampler = setInterval(() => { peak = Math.max(peak, rssBytes(pid)); }, 20);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const data = Buffer.alloc(4 * MiB);
      for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
      await vol.write(4 * MiB, data);
      assert.ok((await vol.read(4 * MiB, 4 * MiB)).equals(data), 'the client reads back what it wrote during the flood');
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssBytes(pid));
    assert.ok(peak - baseline <= RSS_BOUND, `server RSS grew by ${((peak - baseline) / MiB).toFixed(0)} MiB (bound ${RSS_BOUND / MiB} MiB)`);
    assert.ok(closedByServer >= 60, `the server closed only ${closedByServer} of 80 flooding connections`);
  } finally {
    for (const s of flood) s.destroy();
    await client.close();
  }
});

test('the data port limits come from the command line: --handshake-timeout closes a silent peer, --max-connections-per-peer refuses the extra connection', async () => {
  const server = cluster.servers[0]!;
  const open = (): Promise<{ sock: net.Socket; closed: Promise<number> }> => new Promise((resolve, reject) => {
    const sock = net.connect(server.port, '127.0.0.1');
    const t0 = Date.now();
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now() - t0)));
    sock.once('connect', () => resolve({ sock, closed }));
    sock.once('error', (err) => (sock.connecting ? reject(err) : undefined));
  });
  const silent = await open();
  const held = await Promise.all(Array.from({ length: 99 }, open));
  const extra = await open();
  const extraMs = await extra.closed;
  assert.ok(extraMs < 500, `the 101st connection from one address is closed on arrival (after ${extraMs} ms)`);
  const silentMs = await silent.closed;
  assert.ok(silentMs >= 800 && silentMs < 3000, `a peer that never authenticates is closed after --handshake-timeout 1000 (after ${silentMs} ms; the default is 5 s)`);
  for (const h of held) h.sock.destroy();
});
