// What bounds a networked block path on this machine, measured side by side in one run: the
// throughput of the three things every byte through Presage must pass (crc32c verification of a
// 1 MiB read, one loopback TCP hop between Node processes, a page-cache pread) next to the
// local-file reference the client benchmark compares against. A path that must do the first
// two cannot beat their combined rate, whatever its code: this is the ceiling against which
// bench/client-bench.ts's "≥ 0.3× a local file" goal is judged.
//
//   npx tsx bench/bound-bench.ts [--mib 2048]
//
// The TCP hop is measured between two processes (a child echoes a 16-byte ack per MiB, 8 MiB in
// flight), as between the client and a server. CPU is user + system of both processes.

import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { benchArgs } from './bench-args.ts';
import { loadAverage, machineLines, processCpuMs } from './machine-info.ts';

const MiB = 1024 * 1024;

if (process.argv[2] === '--sink') {
  // Child: count bytes, ack each MiB.
  const srv = net.createServer((s) => {
    let n = 0;
    const ack = Buffer.alloc(16);
    s.on('data', (c: Buffer) => {
      n += c.length;
      while (n >= MiB) {
        n -= MiB;
        s.write(ack);
      }
    });
  });
  srv.listen(0, '127.0.0.1', () => process.send!((srv.address() as net.AddressInfo).port));
} else {
  const args = benchArgs('bound-bench', 'npx tsx bench/bound-bench.ts [--mib N]');
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--mib');
  if (argv.includes('--help') || argv.includes('-h')) args.usage();
  const total = args.intArg(i >= 0 ? argv[i + 1] : undefined, 'mib', 2048, 64);
  void main(total);
}

async function main(total: number): Promise<void> {
  const rows: [string, number, string][] = [];
  const buf = Buffer.alloc(MiB, 0x5a);

  // crc32c of 1 MiB (what a server does to verify every block it reads).
  let c0 = process.cpuUsage();
  let t = performance.now();
  for (let k = 0; k < total; k++) crc32c(buf);
  let s = (performance.now() - t) / 1000;
  let cpu = process.cpuUsage(c0);
  rows.push(['crc32c over 1 MiB buffers (@node-rs/crc32)', total / s, `${((cpu.user + cpu.system) / 1000 / total).toFixed(2)} ms/MiB`]);

  // Page-cache pread of a file (the client benchmark's reference).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-bound-'));
  const file = path.join(dir, 'f');
  const fileMiB = Math.min(total, 512);
  const fd = fs.openSync(file, 'w+');
  for (let k = 0; k < fileMiB; k++) fs.writeSync(fd, buf, 0, MiB, k * MiB);
  const into = Buffer.allocUnsafe(MiB);
  c0 = process.cpuUsage();
  t = performance.now();
  for (let k = 0; k < total; k++) fs.readSync(fd, into, 0, MiB, (k % fileMiB) * MiB);
  s = (performance.now() - t) / 1000;
  cpu = process.cpuUsage(c0);
  rows.push(['pread 1 MiB from the page cache (a local file)', total / s, `${((cpu.user + cpu.system) / 1000 / total).toFixed(2)} ms/MiB`]);
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });

  // One loopback TCP hop between two Node processes, 1 MiB messages, 8 in flight.
  const child = fork(new URL(import.meta.url).pathname, ['--sink'], { execArgv: process.execArgv });
  const port = await new Promise<number>((r) => child.once('message', (m) => r(m as number)));
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', r));
  const p0 = processCpuMs(process.pid) + processCpuMs(child.pid!);
  t = performance.now();
  await new Promise<void>((resolve) => {
    let sent = 0;
    let acked = 0;
    let pend = 0;
    sock.on('data', (d: Buffer) => {
      pend += d.length;
      while (pend >= 16) {
        pend -= 16;
        acked++;
        if (sent < total) { sent++; sock.write(buf); }
        if (acked === total) resolve();
      }
    });
    for (; sent < 8; sent++) sock.write(buf);
  });
  s = (performance.now() - t) / 1000;
  const hopCpu = processCpuMs(process.pid) + processCpuMs(child.pid!) - p0;
  rows.push(['one loopback TCP hop, Node to Node (1 MiB messages, 8 in flight)', total / s, `${(hopCpu / total).toFixed(2)} ms/MiB (both processes)`]);
  sock.destroy();
  child.kill();

  const crc = rows[0]![1];
  const hop = rows[2]![1];
  const file1 = rows[1]![1];
  const ceiling = 1 / (1 / crc + 1 / hop);
  const out = [
    '# What bounds a networked read path on this machine',
    '',
    ...machineLines({ notes: [] }),
    `- load average at end: ${loadAverage()}`,
    '',
    '| step | MiB/s | CPU |',
    '|---|---:|---:|',
    ...rows.map(([n, v, c]) => `| ${n} | ${v.toFixed(0)} | ${c} |`),
    '',
    `A read that must be verified and cross one hop cannot exceed 1 / (1/crc + 1/hop) = **${ceiling.toFixed(0)} MiB/s** here, ` +
      `**${(ceiling / file1).toFixed(3)}×** the page-cache file (the 1 MiB goal of ≥ 0.3× a local file would need ${(0.3 * file1).toFixed(0)} MiB/s).`,
  ].join('\n');
  console.log(out);
}
