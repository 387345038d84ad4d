import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import {
  parseDiskstats, diskRates, parseStat, cpuRates, parseMeminfo, memValues, parseNetDev, netRates,
  parseNetSnmp, tcpRates, processValues, splitDevT, parseMountinfo, resolveBlockDevice, describeBlockDevice, Sampler,
} from './proc.ts';

// Fixture lines in the kernel's format (Documentation/admin-guide/iostats.rst): 20 fields
// on recent kernels (with discard and flush counters).
const DISK_A = `   8       0 sda 1000 10 80000 2000 500 5 40000 3000 2 4000 5500 0 0 0 0 0 0
   8       1 sda1 900 10 70000 1800 400 5 30000 2500 0 3500 4800 0 0 0 0 0 0
 254       0 vda 31065 7251 1797170 7474 8250 23857 2785328 7632 0 4532 15397 3769 46 134680 238 1234 52
`;
const DISK_B = `   8       0 sda 1100 10 88000 2500 700 5 56000 4000 3 5000 7500 0 0 0 0 0 0
   8       1 sda1 990 10 77000 2250 580 5 44000 3400 0 4300 6500 0 0 0 0 0 0
`;

test('parseDiskstats reads the 14 classic fields per device', () => {
  const m = parseDiskstats(DISK_A);
  assert.equal(m.size, 3);
  assert.deepEqual(m.get('sda'), {
    major: 8, minor: 0, name: 'sda', readsCompleted: 1000, readsMerged: 10, sectorsRead: 80000, msReading: 2000,
    writesCompleted: 500, writesMerged: 5, sectorsWritten: 40000, msWriting: 3000, inFlight: 2, msIo: 4000, weightedMsIo: 5500,
  });
  assert.equal(m.get('vda')!.weightedMsIo, 15397);
  // Old kernels' 4-field partition lines and garbage are skipped, not crashed on.
  assert.equal(parseDiskstats('   8 1 sda1 1 2 3 4\nnonsense\n').size, 0);
});

test('diskRates: IOPS, bytes/s, latency per op, queue depth, utilisation over 1 s', () => {
  const a = parseDiskstats(DISK_A).get('sda')!;
  const b = parseDiskstats(DISK_B).get('sda')!;
  const v = diskRates(a, b, 1000);
  assert.deepEqual(v, {
    disk_inflight: 3,
    disk_read_iops: 100,
    disk_write_iops: 200,
    disk_read_bytes_per_s: 8000 * 512,
    disk_write_bytes_per_s: 16000 * 512,
    disk_read_latency_ms: 500 / 100,
    disk_write_latency_ms: 1000 / 200,
    disk_queue_depth: 2000 / 1000,
    disk_util_ratio: 1,
  });
  // Over 2 s the rates halve; no reads in the interval → read latency absent (not 0).
  const c = { ...b, writesCompleted: b.writesCompleted + 10, msWriting: b.msWriting + 30, msIo: b.msIo + 500, weightedMsIo: b.weightedMsIo + 40 };
  const v2 = diskRates(b, c, 2000);
  assert.equal(v2.disk_read_iops, 0);
  assert.equal(v2.disk_read_latency_ms, undefined);
  assert.equal(v2.disk_write_iops, 5);
  assert.equal(v2.disk_write_latency_ms, 3);
  assert.equal(v2.disk_util_ratio, 0.25);
  assert.equal(v2.disk_queue_depth, 0.02);
  // A counter that went backwards (device reset) gives no rate for that counter.
  const v3 = diskRates(b, { ...b, readsCompleted: 5 }, 1000);
  assert.equal(v3.disk_read_iops, undefined);
  assert.equal(v3.disk_write_iops, 0);
});

const STAT_A = `cpu  100 0 50 800 50 0 0 0 0 0
cpu0 50 0 25 400 25 0 0 0 0 0
ctxt 1000
procs_running 2
procs_blocked 1
`;
const STAT_B = `cpu  160 0 70 900 70 0 0 0 0 0
cpu0 80 0 35 450 35 0 0 0 0 0
ctxt 1500
procs_running 3
procs_blocked 0
`;

test('parseStat and cpuRates: busy and iowait fractions', () => {
  const a = parseStat(STAT_A);
  assert.deepEqual(a.cpu, { user: 100, nice: 0, system: 50, idle: 800, iowait: 50, irq: 0, softirq: 0, steal: 0 });
  const v = cpuRates(a, parseStat(STAT_B), 500);
  // Δtotal = 200: busy = 60 + 20 = 80, idle 100, iowait 20.
  assert.deepEqual(v, {
    cpu_procs_running: 3, cpu_procs_blocked: 0, cpu_busy_ratio: 0.4, cpu_iowait_ratio: 0.1, cpu_steal_ratio: 0,
    cpu_context_switches_per_s: 1000,
  });
  // First sample: only gauges.
  assert.deepEqual(cpuRates({}, a, 0), { cpu_procs_running: 2, cpu_procs_blocked: 1 });
});

test('parseMeminfo and memValues: bytes and used fraction', () => {
  const mi = parseMeminfo('MemTotal:       1000 kB\nMemFree:  100 kB\nMemAvailable:    250 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\nHugePages_Total: 0\n');
  assert.equal(mi.MemTotal, 1024000);
  assert.equal(mi.HugePages_Total, 0);
  assert.deepEqual(memValues(mi), { mem_total_bytes: 1024000, mem_available_bytes: 256000, mem_used_ratio: 0.75, mem_swap_used_bytes: 0 });
  assert.deepEqual(memValues({}), {});
});

const NET_A = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000      50    1    2    0     0          0         0     7000      70    0    1    0     0       0          0
  eth1: 100       1    0    0    0     0          0         0     100       1    0    0    0     0       0          0
`;
const NET_B = NET_A.replace('lo:    1000      10', 'lo:    3000      30')
  .replace('eth0: 5000      50    1    2', 'eth0: 9000      90    3    2')
  .replace('7000      70    0    1', '8000      75    0    4');

test('parseNetDev and netRates: non-lo interfaces summed, lo separate', () => {
  const a = parseNetDev(NET_A);
  assert.deepEqual([...a.keys()], ['lo', 'eth0', 'eth1']);
  assert.deepEqual(a.get('eth0'), { rxBytes: 5000, rxPackets: 50, rxErrs: 1, rxDrop: 2, txBytes: 7000, txPackets: 70, txErrs: 0, txDrop: 1 });
  const v = netRates(a, parseNetDev(NET_B), 2000);
  assert.equal(v.net_rx_bytes_per_s, 2000);
  assert.equal(v.net_rx_packets_per_s, 20);
  assert.equal(v.net_rx_errs_per_s, 1);
  assert.equal(v.net_rx_drops_per_s, 0);
  assert.equal(v.net_tx_bytes_per_s, 500);
  assert.equal(v.net_tx_packets_per_s, 2.5);
  assert.equal(v.net_tx_drops_per_s, 1.5);
  assert.equal(v.net_lo_rx_bytes_per_s, 1000);
  assert.equal(v.net_lo_tx_packets_per_s, 0);
  assert.equal(Object.keys(v).length, 16);
});

const SNMP_A = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 100
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 38 2 0 0 4 7252 5000 10 0 54 0
Udp: InDatagrams NoPorts
Udp: 5 6
`;
const SNMP_B = SNMP_A.replace('4 7252 5000 10 0', '5 7300 6000 30 2');

test('parseNetSnmp and tcpRates: retransmit ratio from RetransSegs / OutSegs', () => {
  const a = parseNetSnmp(SNMP_A);
  assert.equal(a.Tcp!.RetransSegs, 10);
  assert.equal(a.Tcp!.MaxConn, -1);
  assert.equal(a.Udp!.NoPorts, 6);
  assert.equal(a.Ip!.InReceives, 100);
  assert.deepEqual(tcpRates(a, parseNetSnmp(SNMP_B), 1000), {
    net_tcp_established: 5, net_tcp_out_segs_per_s: 1000, net_tcp_retrans_per_s: 20, net_tcp_in_errs_per_s: 2, net_tcp_retrans_ratio: 0.02,
  });
  // Nothing sent → no ratio.
  assert.equal(tcpRates(a, a, 1000).net_tcp_retrans_ratio, undefined);
});

test('processValues: CPU per wall time and memory', () => {
  const mem = { rss: 100, heapUsed: 10, heapTotal: 20, external: 5, arrayBuffers: 1 };
  const v = processValues({ cpu: { user: 1000, system: 0 }, mem }, { cpu: { user: 251000, system: 250000 }, mem }, 1000);
  assert.deepEqual(v, { process_rss_bytes: 100, process_heap_used_bytes: 10, process_heap_total_bytes: 20, process_external_bytes: 5, process_cpu_ratio: 0.5 });
});

test('splitDevT and parseMountinfo', () => {
  assert.deepEqual(splitDevT(0xfe00n), { major: 254, minor: 0 });
  assert.deepEqual(splitDevT(0x801n), { major: 8, minor: 1 });
  // Large minor numbers (e.g. nvme partitions 259:…, or minor ≥ 256).
  assert.deepEqual(splitDevT((259n << 8n) | 0x12n | (0x3n << 20n)), { major: 259, minor: 0x312 });
  const mi = parseMountinfo('36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n');
  assert.deepEqual(mi, [{ major: 98, minor: 0, mountPoint: '/mnt/with space', fsType: 'ext3', source: '/dev/root', superOptions: 'rw,errors=continue' }]);
});

test('describeBlockDevice maps a partition to its disk through a sysfs tree', (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sysfs-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  const disk = path.join(root, 'devices/pci0/block/sda');
  fs.mkdirSync(path.join(disk, 'sda2'), { recursive: true });
  fs.writeFileSync(path.join(disk, 'dev'), '8:0\n');
  fs.writeFileSync(path.join(disk, 'sda2/dev'), '8:2\n');
  fs.writeFileSync(path.join(disk, 'sda2/partition'), '2\n');
  fs.mkdirSync(path.join(root, 'dev/block'), { recursive: true });
  fs.symlinkSync(path.join(disk, 'sda2'), path.join(root, 'dev/block/8:2'));
  fs.symlinkSync(disk, path.join(root, 'dev/block/8:0'));
  assert.deepEqual(describeBlockDevice(8, 2, root), { major: 8, minor: 2, name: 'sda2', disk: 'sda', diskMajor: 8, diskMinor: 0, smartDevice: '/dev/sda' });
  assert.deepEqual(describeBlockDevice(8, 0, root), { major: 8, minor: 0, name: 'sda', disk: 'sda', diskMajor: 8, diskMinor: 0, smartDevice: '/dev/sda' });
  assert.equal(describeBlockDevice(9, 9, root), undefined);
});

test('missing /proc files make their metrics absent', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'proc-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.writeFileSync(path.join(root, 'meminfo'), 'MemTotal: 1000 kB\nMemAvailable: 500 kB\n');
  let now = 1000;
  const s = new Sampler({ procRoot: root, processMetrics: false, diskName: 'sda', now: () => now });
  const a = await s.sample();
  assert.deepEqual(a, { ts: 1000, values: { mem_total_bytes: 1024000, mem_available_bytes: 512000, mem_used_ratio: 0.5 } });
  fs.writeFileSync(path.join(root, 'diskstats'), DISK_A);
  now = 2000;
  const b = await s.sample();
  assert.deepEqual(Object.keys(b.values).sort(), ['disk_inflight', 'mem_available_bytes', 'mem_total_bytes', 'mem_used_ratio']);
  fs.writeFileSync(path.join(root, 'diskstats'), DISK_B);
  now = 3000;
  const c = await s.sample();
  assert.equal(c.values.disk_read_iops, 100);
  assert.equal(c.values.disk_write_latency_ms, 5);
});

test('real /proc: the device holding os.tmpdir() is found and values are sane', async () => {
  const dir = os.tmpdir();
  const dev = resolveBlockDevice(dir);
  // This machine keeps tmpdir on a block device; if it ever is tmpfs the test must say so.
  assert.ok(dev, `no block device found behind ${dir}`);
  const ds = parseDiskstats(fs.readFileSync('/proc/diskstats', 'utf8'));
  assert.ok(ds.has(dev.disk), `${dev.disk} not in /proc/diskstats`);
  const st = fs.statSync(dir, { bigint: true });
  const { major, minor } = splitDevT(st.dev);
  if (major !== 0) assert.deepEqual([dev.major, dev.minor], [major, minor]);

  const s = new Sampler({ dataDir: dir });
  const first = await s.sample();
  assert.ok(first.values.mem_total_bytes! > 0);
  assert.equal(first.values.cpu_busy_ratio, undefined, 'no rate without a previous sample');
  fs.writeFileSync(path.join(dir, `presage-proc-test-${process.pid}`), Buffer.alloc(4096));
  fs.rmSync(path.join(dir, `presage-proc-test-${process.pid}`));
  await new Promise((r) => setTimeout(r, 250));
  const v = (await s.sample()).values;
  for (const k of ['cpu_busy_ratio', 'cpu_iowait_ratio', 'mem_used_ratio', 'disk_util_ratio']) {
    assert.ok(v[k]! >= 0 && v[k]! <= 1, `${k}=${v[k]}`);
  }
  assert.ok(v.mem_total_bytes! > 0 && v.mem_available_bytes! <= v.mem_total_bytes!);
  assert.ok(v.disk_read_iops! >= 0 && v.disk_write_iops! >= 0 && v.disk_queue_depth! >= 0);
  assert.ok(v.net_rx_bytes_per_s! >= 0 && v.net_lo_rx_bytes_per_s! >= 0);
  assert.ok(v.process_rss_bytes! > 1e6 && v.process_cpu_ratio! >= 0);
  assert.ok(v.net_tcp_established! >= 0);
});
