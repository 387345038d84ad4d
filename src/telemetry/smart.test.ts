import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseSmartctlJson, readSmart } from './smart.ts';
import { resolveBlockDevice } from './proc.ts';
import { metricInfo } from './metrics.ts';

const fx = (name: string) => fs.readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

test('ATA: raw values of the attributes we keep, temperature and power-on from raw.string', () => {
  const r = parseSmartctlJson(fx('smartctl-ata.json'));
  assert.equal(r.available, true);
  if (!r.available) return;
  assert.equal(r.device, '/dev/sda');
  assert.equal(r.protocol, 'ATA');
  assert.equal(r.model, 'ST4000DM000-1F2168');
  assert.equal(r.serial, 'Z300ABCD');
  assert.deepEqual(r.values, {
    smart_1_raw_read_error_rate: 152826048,
    smart_5_reallocated_sectors: 8,
    smart_7_seek_error_rate: 432471523,
    smart_9_power_on_hours: 25840,
    smart_187_reported_uncorrectable: 2,
    smart_188_command_timeout: 4295032833,
    // raw.value packs min/max in the high bytes; raw.string starts with the current value.
    smart_194_temperature_celsius: 31,
    smart_197_current_pending_sectors: 16,
    smart_198_offline_uncorrectable: 16,
    smart_199_udma_crc_errors: 0,
    smart_temperature_celsius: 31,
    smart_power_on_hours: 25840,
    smart_health_passed: 1,
  });
  for (const k of Object.keys(r.values)) assert.ok(metricInfo(k), `${k} is in the catalogue`);
});

test('NVMe: health log fields', () => {
  const r = parseSmartctlJson(JSON.parse(fx('smartctl-nvme.json')));
  assert.equal(r.available, true);
  if (!r.available) return;
  assert.equal(r.protocol, 'NVMe');
  assert.deepEqual(r.values, {
    smart_nvme_critical_warning: 0,
    smart_nvme_available_spare_pct: 100,
    smart_nvme_available_spare_threshold_pct: 10,
    smart_nvme_percentage_used: 3,
    smart_nvme_media_errors: 0,
    smart_nvme_error_log_entries: 7,
    smart_nvme_unsafe_shutdowns: 22,
    smart_nvme_power_on_hours: 5012,
    smart_nvme_data_units_read: 27830114,
    smart_nvme_data_units_written: 31553520,
    smart_nvme_controller_busy_minutes: 1337,
    smart_temperature_celsius: 41,
    smart_power_on_hours: 5012,
    smart_health_passed: 1,
  });
  for (const k of Object.keys(r.values)) assert.ok(metricInfo(k), `${k} is in the catalogue`);
});

test('a failing disk (exit status bits 3 and 4) is still data, not an error', () => {
  const r = parseSmartctlJson(fx('smartctl-ata-failing.json'));
  assert.equal(r.available, true);
  if (!r.available) return;
  assert.deepEqual(r.values, { smart_5_reallocated_sectors: 3104, smart_9_power_on_hours: 58712, smart_temperature_celsius: 38, smart_health_passed: 0 });
});

test('no SMART (virtio), not JSON, empty document: available false with a reason', () => {
  const v = parseSmartctlJson(fx('smartctl-virtio.json'), '/dev/vda');
  assert.deepEqual(v, { available: false, device: '/dev/vda', reason: '/dev/vda: Unable to detect device type' });
  const n = parseSmartctlJson('smartctl: oops', '/dev/x');
  assert.deepEqual(n, { available: false, device: '/dev/x', reason: 'smartctl output is not JSON' });
  const e = parseSmartctlJson({ smartctl: { exit_status: 4 } }, '/dev/y');
  assert.deepEqual(e, { available: false, device: '/dev/y', reason: 'device reports no SMART data' });
  assert.equal(parseSmartctlJson([1, 2]).available, false);
});

function fakeSmartctl(dir: string, body: string): string {
  const p = path.join(dir, 'smartctl');
  fs.writeFileSync(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return p;
}

test('readSmart runs the binary, passes --json -a DEVICE, parses stdout despite a non-zero exit', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smartctl-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fixture = path.join(dir, 'out.json');
  fs.writeFileSync(fixture, fx('smartctl-ata-failing.json'));
  const bin = fakeSmartctl(dir, `[ "$1 $2 $3" = "--json -a /dev/sdb" ] || exit 2\ncat ${fixture}\nexit 24`);
  const r = await readSmart('/dev/sdb', { smartctlPath: bin });
  assert.equal(r.available, true);
  assert.equal(r.available && r.values.smart_5_reallocated_sectors, 3104);

  const missing = await readSmart('/dev/sdb', { smartctlPath: path.join(dir, 'nope') });
  assert.equal(missing.available, false);
  assert.match(!missing.available ? missing.reason : '', /not installed/);

  const slow = await readSmart('/dev/sdb', { smartctlPath: fakeSmartctl(dir, 'exec sleep 5'), timeoutMs: 200 });
  assert.equal(slow.available, false);
  assert.match(!slow.available ? slow.reason : '', /timed out/);

  const silent = await readSmart('/dev/sdb', { smartctlPath: fakeSmartctl(dir, 'exit 2') });
  assert.equal(silent.available, false);
});

test('real smartctl on the disk behind os.tmpdir()', async (t) => {
  let have = true;
  try {
    execFileSync('smartctl', ['--version'], { stdio: 'ignore' });
  } catch {
    have = false;
  }
  const dev = resolveBlockDevice(os.tmpdir());
  assert.ok(dev?.smartDevice, 'the disk behind tmpdir has a device node name');
  const r = await readSmart(dev.smartDevice);
  if (!have) {
    assert.deepEqual(r, { available: false, device: dev.smartDevice, reason: 'smartctl not installed' });
    t.diagnostic('smartctl not installed here: checked the not-installed path');
    return;
  }
  if (/^vd[a-z]+$/.test(dev.disk)) {
    // virtio-blk has no SMART; smartctl says so and we must not invent values.
    assert.equal(r.available, false);
    assert.ok(!r.available && r.reason.length > 0);
  } else if (r.available) {
    assert.ok(Object.keys(r.values).length > 0);
    for (const v of Object.values(r.values)) assert.ok(Number.isFinite(v));
  } else {
    assert.ok(r.reason.length > 0);
  }
  t.diagnostic(JSON.stringify(r));
});
