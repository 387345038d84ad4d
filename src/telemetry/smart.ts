// SMART health from `smartctl --json -a <device>`. The parser is a pure function over the
// JSON so it is tested on fixtures; readSmart() runs smartctl. A device without SMART (a
// virtio disk, a RAID volume, a tmpfs) or a host without smartctl gives
// `{ available: false, reason }`: values are never invented.

import { execFile } from 'node:child_process';

export type SmartResult =
  | {
      available: true;
      device: string;
      protocol: string;
      model?: string;
      serial?: string;
      /** Metric name → value, names as in metrics.ts (`smart_5_reallocated_sectors`, `smart_nvme_media_errors`, …). */
      values: Record<string, number>;
    }
  | { available: false; device: string; reason: string };

/** ATA attributes we keep (raw values), named as Backblaze and the literature know them. */
export const ATA_ATTRIBUTES: Record<number, string> = {
  1: 'smart_1_raw_read_error_rate',
  5: 'smart_5_reallocated_sectors',
  7: 'smart_7_seek_error_rate',
  9: 'smart_9_power_on_hours',
  187: 'smart_187_reported_uncorrectable',
  188: 'smart_188_command_timeout',
  194: 'smart_194_temperature_celsius',
  197: 'smart_197_current_pending_sectors',
  198: 'smart_198_offline_uncorrectable',
  199: 'smart_199_udma_crc_errors',
  240: 'smart_240_head_flying_hours',
  241: 'smart_241_total_lbas_written',
  242: 'smart_242_total_lbas_read',
};

/** NVMe health log fields we keep. */
export const NVME_FIELDS: Record<string, string> = {
  critical_warning: 'smart_nvme_critical_warning',
  available_spare: 'smart_nvme_available_spare_pct',
  available_spare_threshold: 'smart_nvme_available_spare_threshold_pct',
  percentage_used: 'smart_nvme_percentage_used',
  media_errors: 'smart_nvme_media_errors',
  num_err_log_entries: 'smart_nvme_error_log_entries',
  unsafe_shutdowns: 'smart_nvme_unsafe_shutdowns',
  power_on_hours: 'smart_nvme_power_on_hours',
  data_units_read: 'smart_nvme_data_units_read',
  data_units_written: 'smart_nvme_data_units_written',
  controller_busy_time: 'smart_nvme_controller_busy_minutes',
};

// smartctl exit status bits (smartctl(8) "RETURN VALUES"): bit 0 = command line did not
// parse, bit 1 = device open failed / unknown device type. Higher bits (SMART says failing,
// prefail attributes at threshold, errors in the log) come with valid data.
const EXIT_FATAL = 0b11;

type Json = Record<string, unknown>;

function obj(x: unknown): Json | undefined {
  return x && typeof x === 'object' && !Array.isArray(x) ? (x as Json) : undefined;
}

function num(x: unknown): number | undefined {
  return typeof x === 'number' && Number.isFinite(x) ? x : undefined;
}

/**
 * For attributes whose raw value packs several fields (194 temperature with min/max in the
 * high bytes, 9 power-on hours as `1234h+05m`), smartctl's `raw.string` starts with the
 * meaningful number; everything else uses `raw.value`.
 */
const USE_RAW_STRING = new Set([9, 190, 194]);

/** Parses smartctl's JSON output (object or text). */
export function parseSmartctlJson(input: unknown, device = ''): SmartResult {
  let doc: Json | undefined;
  if (typeof input === 'string') {
    try {
      doc = obj(JSON.parse(input));
    } catch {
      return { available: false, device, reason: 'smartctl output is not JSON' };
    }
  } else doc = obj(input);
  if (!doc) return { available: false, device, reason: 'smartctl output is not a JSON object' };

  const sc = obj(doc.smartctl);
  const dev = obj(doc.device);
  const devName = typeof dev?.name === 'string' ? dev.name : device;
  const exit = num(sc?.exit_status) ?? 0;
  const messages = Array.isArray(sc?.messages)
    ? (sc!.messages as unknown[]).map((m) => obj(m)?.string).filter((s): s is string => typeof s === 'string')
    : [];
  if (exit & EXIT_FATAL) {
    return { available: false, device: devName, reason: messages.join('; ') || `smartctl exit status ${exit}` };
  }

  const values: Record<string, number> = {};
  const table = obj(doc.ata_smart_attributes)?.table;
  if (Array.isArray(table)) {
    for (const row of table) {
      const r = obj(row);
      const id = num(r?.id);
      if (id === undefined || !(id in ATA_ATTRIBUTES)) continue;
      const raw = obj(r!.raw);
      let v = num(raw?.value);
      if (USE_RAW_STRING.has(id) && typeof raw?.string === 'string') {
        const m = /^\s*(\d+)/.exec(raw.string);
        if (m) v = Number(m[1]);
      }
      if (v !== undefined) values[ATA_ATTRIBUTES[id]!] = v;
    }
  }
  const nvme = obj(doc.nvme_smart_health_information_log);
  if (nvme) {
    for (const [field, name] of Object.entries(NVME_FIELDS)) {
      const v = num(nvme[field]);
      if (v !== undefined) values[name] = v;
    }
  }
  const scsiDefects = num(doc.scsi_grown_defect_list);
  if (scsiDefects !== undefined) values.smart_scsi_grown_defects = scsiDefects;
  const ecl = obj(doc.scsi_error_counter_log);
  if (ecl) {
    let unc = 0;
    let seen = false;
    for (const k of ['read', 'write', 'verify']) {
      const v = num(obj(ecl[k])?.total_uncorrected_errors);
      if (v !== undefined) {
        unc += v;
        seen = true;
      }
    }
    if (seen) values.smart_scsi_uncorrected_errors = unc;
  }
  const temp = num(obj(doc.temperature)?.current);
  if (temp !== undefined) values.smart_temperature_celsius = temp;
  const poh = num(obj(doc.power_on_time)?.hours);
  if (poh !== undefined) values.smart_power_on_hours = poh;
  const status = obj(doc.smart_status);
  if (typeof status?.passed === 'boolean') values.smart_health_passed = status.passed ? 1 : 0;

  if (Object.keys(values).length === 0) {
    return { available: false, device: devName, reason: messages.join('; ') || 'device reports no SMART data' };
  }
  const res: SmartResult = {
    available: true,
    device: devName,
    protocol: typeof dev?.protocol === 'string' ? dev.protocol : 'unknown',
    values,
  };
  if (typeof doc.model_name === 'string') res.model = doc.model_name;
  if (typeof doc.serial_number === 'string') res.serial = doc.serial_number;
  return res;
}

export interface ReadSmartOptions {
  smartctlPath?: string;
  timeoutMs?: number;
}

/** Runs smartctl and parses its output. Never rejects. */
export function readSmart(device: string, opts: ReadSmartOptions = {}): Promise<SmartResult> {
  const bin = opts.smartctlPath ?? 'smartctl';
  return new Promise((resolve) => {
    execFile(
      bin,
      ['--json', '-a', device],
      { timeout: opts.timeoutMs ?? 10_000, maxBuffer: 4 << 20, encoding: 'utf8' },
      (err, stdout) => {
        const e = err as (NodeJS.ErrnoException & { killed?: boolean; signal?: string }) | null;
        if (e?.code === 'ENOENT') return resolve({ available: false, device, reason: `${bin} not installed` });
        if (e?.killed || e?.signal) return resolve({ available: false, device, reason: `${bin} timed out or was killed (${e.signal ?? 'killed'})` });
        // smartctl exits non-zero with valid JSON on stdout (status bits); the parser decides.
        if (!stdout || !stdout.trim()) {
          return resolve({ available: false, device, reason: e ? `${bin} failed: ${e.message}` : `${bin} printed nothing` });
        }
        resolve(parseSmartctlJson(stdout, device));
      },
    );
  });
}
