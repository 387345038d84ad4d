// The metric catalogue: every name the telemetry pipeline stores, with its unit, where it
// comes from and what it means. One table that the docs, the dashboard and the Prometheus
// bridge print from. Names are Prometheus-style snake_case ending in their unit.

export type MetricSource =
  | '/proc/diskstats'
  | '/proc/stat'
  | '/proc/meminfo'
  | '/proc/net/dev'
  | '/proc/net/snmp'
  | 'process'
  | 'smartctl'
  | 'server'
  | 'collector'
  | 'history:perseus'
  | 'history:backblaze';

export interface MetricInfo {
  /** The name, or a pattern with `{N}` standing for a decimal number (per-drive history metrics). */
  name: string;
  unit: string;
  source: MetricSource;
  /** gauge: a level; rate: per second over the sampling interval; counter: monotonic total. */
  kind: 'gauge' | 'rate' | 'counter';
  description: string;
}

const m = (name: string, unit: string, source: MetricSource, kind: MetricInfo['kind'], description: string): MetricInfo =>
  ({ name, unit, source, kind, description });

const net: MetricInfo[] = [];
for (const [iface, label] of [['net', 'all interfaces except lo'], ['net_lo', 'the loopback interface']] as const) {
  for (const dir of ['rx', 'tx'] as const) {
    const d = dir === 'rx' ? 'received' : 'transmitted';
    net.push(
      m(`${iface}_${dir}_bytes_per_s`, 'bytes/s', '/proc/net/dev', 'rate', `Bytes ${d} per second, ${label}.`),
      m(`${iface}_${dir}_packets_per_s`, 'packets/s', '/proc/net/dev', 'rate', `Packets ${d} per second, ${label}.`),
      m(`${iface}_${dir}_errs_per_s`, 'errors/s', '/proc/net/dev', 'rate', `Errors while packets were ${d}, per second, ${label}.`),
      m(`${iface}_${dir}_drops_per_s`, 'packets/s', '/proc/net/dev', 'rate', `Packets dropped while ${d}, per second, ${label}.`),
    );
  }
}

export const METRICS: readonly MetricInfo[] = [
  // Disk holding the data directory (the whole disk, a partition is mapped to its parent).
  m('disk_read_iops', 'ops/s', '/proc/diskstats', 'rate', 'Completed reads per second.'),
  m('disk_write_iops', 'ops/s', '/proc/diskstats', 'rate', 'Completed writes per second.'),
  m('disk_read_bytes_per_s', 'bytes/s', '/proc/diskstats', 'rate', 'Bytes read per second (sectors × 512).'),
  m('disk_write_bytes_per_s', 'bytes/s', '/proc/diskstats', 'rate', 'Bytes written per second (sectors × 512).'),
  m('disk_read_latency_ms', 'ms', '/proc/diskstats', 'gauge', 'Average time per completed read in the interval (Δms reading / Δreads); absent in an interval without reads.'),
  m('disk_write_latency_ms', 'ms', '/proc/diskstats', 'gauge', 'Average time per completed write in the interval; absent in an interval without writes.'),
  m('disk_queue_depth', 'requests', '/proc/diskstats', 'gauge', 'Average number of requests in flight (Δweighted io ticks / Δt).'),
  m('disk_util_ratio', 'ratio', '/proc/diskstats', 'gauge', 'Fraction of the interval with at least one request in flight (Δio ticks / Δt), 0..1.'),
  m('disk_inflight', 'requests', '/proc/diskstats', 'gauge', 'Requests in flight at the moment of sampling.'),
  // CPU.
  m('cpu_busy_ratio', 'ratio', '/proc/stat', 'gauge', 'Fraction of CPU time (all CPUs) not idle and not waiting for I/O, 0..1.'),
  m('cpu_iowait_ratio', 'ratio', '/proc/stat', 'gauge', 'Fraction of CPU time idle while waiting for I/O, 0..1.'),
  m('cpu_steal_ratio', 'ratio', '/proc/stat', 'gauge', 'Fraction of CPU time stolen by the hypervisor, 0..1.'),
  m('cpu_context_switches_per_s', 'switches/s', '/proc/stat', 'rate', 'Context switches per second.'),
  m('cpu_procs_running', 'processes', '/proc/stat', 'gauge', 'Runnable processes.'),
  m('cpu_procs_blocked', 'processes', '/proc/stat', 'gauge', 'Processes blocked waiting for I/O.'),
  // Memory.
  m('mem_total_bytes', 'bytes', '/proc/meminfo', 'gauge', 'MemTotal.'),
  m('mem_available_bytes', 'bytes', '/proc/meminfo', 'gauge', 'MemAvailable: memory available for new work without swapping.'),
  m('mem_used_ratio', 'ratio', '/proc/meminfo', 'gauge', '1 − MemAvailable / MemTotal.'),
  m('mem_swap_used_bytes', 'bytes', '/proc/meminfo', 'gauge', 'SwapTotal − SwapFree.'),
  // Network.
  ...net,
  m('net_tcp_established', 'connections', '/proc/net/snmp', 'gauge', 'TCP connections in ESTABLISHED or CLOSE-WAIT (CurrEstab).'),
  m('net_tcp_out_segs_per_s', 'segments/s', '/proc/net/snmp', 'rate', 'TCP segments sent per second (OutSegs).'),
  m('net_tcp_retrans_per_s', 'segments/s', '/proc/net/snmp', 'rate', 'TCP segments retransmitted per second (RetransSegs).'),
  m('net_tcp_in_errs_per_s', 'segments/s', '/proc/net/snmp', 'rate', 'TCP segments received in error per second (InErrs).'),
  m('net_tcp_retrans_ratio', 'ratio', '/proc/net/snmp', 'gauge', 'ΔRetransSegs / ΔOutSegs; absent when nothing was sent.'),
  // This process.
  m('process_cpu_ratio', 'cores', 'process', 'gauge', 'CPU time of the server process per wall time (1 = one full core; may exceed 1).'),
  m('process_rss_bytes', 'bytes', 'process', 'gauge', 'Resident set size of the server process.'),
  m('process_heap_used_bytes', 'bytes', 'process', 'gauge', 'V8 heap in use (a steady climb is a leak).'),
  m('process_heap_total_bytes', 'bytes', 'process', 'gauge', 'V8 heap reserved.'),
  m('process_external_bytes', 'bytes', 'process', 'gauge', 'Memory of C++ objects bound to JS objects (Buffers).'),
  // SMART (read every few minutes; only where the device has SMART).
  m('smart_1_raw_read_error_rate', 'count (vendor raw)', 'smartctl', 'gauge', 'ATA attribute 1 raw value (vendor-specific encoding).'),
  m('smart_5_reallocated_sectors', 'sectors', 'smartctl', 'counter', 'ATA attribute 5: reallocated sectors.'),
  m('smart_7_seek_error_rate', 'count (vendor raw)', 'smartctl', 'gauge', 'ATA attribute 7 raw value (vendor-specific encoding).'),
  m('smart_9_power_on_hours', 'hours', 'smartctl', 'counter', 'ATA attribute 9: power-on hours.'),
  m('smart_187_reported_uncorrectable', 'errors', 'smartctl', 'counter', 'ATA attribute 187: errors that ECC could not correct.'),
  m('smart_188_command_timeout', 'commands', 'smartctl', 'counter', 'ATA attribute 188: aborted commands due to timeout.'),
  m('smart_194_temperature_celsius', '°C', 'smartctl', 'gauge', 'ATA attribute 194: current temperature.'),
  m('smart_197_current_pending_sectors', 'sectors', 'smartctl', 'gauge', 'ATA attribute 197: unstable sectors waiting to be remapped.'),
  m('smart_198_offline_uncorrectable', 'sectors', 'smartctl', 'counter', 'ATA attribute 198: uncorrectable sectors found offline.'),
  m('smart_199_udma_crc_errors', 'errors', 'smartctl', 'counter', 'ATA attribute 199: interface CRC errors (cabling).'),
  m('smart_240_head_flying_hours', 'hours', 'smartctl', 'counter', 'ATA attribute 240: head flying hours (vendor raw; Seagate packs more in the high bytes).'),
  m('smart_241_total_lbas_written', 'LBAs', 'smartctl', 'counter', 'ATA attribute 241: total LBAs written.'),
  m('smart_242_total_lbas_read', 'LBAs', 'smartctl', 'counter', 'ATA attribute 242: total LBAs read.'),
  m('smart_nvme_critical_warning', 'bitmask', 'smartctl', 'gauge', 'NVMe critical warning bits (0 = none).'),
  m('smart_nvme_available_spare_pct', '%', 'smartctl', 'gauge', 'NVMe available spare capacity.'),
  m('smart_nvme_available_spare_threshold_pct', '%', 'smartctl', 'gauge', 'NVMe spare threshold below which the drive warns.'),
  m('smart_nvme_percentage_used', '%', 'smartctl', 'gauge', 'NVMe estimate of life used (may exceed 100).'),
  m('smart_nvme_media_errors', 'errors', 'smartctl', 'counter', 'NVMe unrecovered data integrity errors.'),
  m('smart_nvme_error_log_entries', 'entries', 'smartctl', 'counter', 'NVMe error information log entries.'),
  m('smart_nvme_unsafe_shutdowns', 'events', 'smartctl', 'counter', 'NVMe unsafe shutdowns.'),
  m('smart_nvme_power_on_hours', 'hours', 'smartctl', 'counter', 'NVMe power-on hours.'),
  m('smart_nvme_data_units_read', '512000-byte units', 'smartctl', 'counter', 'NVMe data units read.'),
  m('smart_nvme_data_units_written', '512000-byte units', 'smartctl', 'counter', 'NVMe data units written.'),
  m('smart_nvme_controller_busy_minutes', 'minutes', 'smartctl', 'counter', 'NVMe controller busy time.'),
  m('smart_scsi_grown_defects', 'defects', 'smartctl', 'counter', 'SCSI grown defect list length.'),
  m('smart_scsi_uncorrected_errors', 'errors', 'smartctl', 'counter', 'SCSI total uncorrected read+write+verify errors.'),
  m('smart_temperature_celsius', '°C', 'smartctl', 'gauge', 'Drive temperature as smartctl reports it for any protocol.'),
  m('smart_power_on_hours', 'hours', 'smartctl', 'counter', 'Power-on hours as smartctl reports it for any protocol.'),
  m('smart_health_passed', 'bool', 'smartctl', 'gauge', 'Overall SMART self-assessment: 1 passed, 0 failed.'),
  // The server's own I/O path (registered with TelemetryCollector.addSource by the server).
  m('io_read_iops', 'ops/s', 'server', 'rate', 'Client reads served per second.'),
  m('io_write_iops', 'ops/s', 'server', 'rate', 'Client writes served per second.'),
  m('io_read_bytes_per_s', 'bytes/s', 'server', 'rate', 'Client bytes read per second.'),
  m('io_write_bytes_per_s', 'bytes/s', 'server', 'rate', 'Client bytes written per second.'),
  m('io_read_latency_p50_ms', 'ms', 'server', 'gauge', 'Median read latency over the interval.'),
  m('io_read_latency_p99_ms', 'ms', 'server', 'gauge', '99th percentile read latency over the interval.'),
  m('io_write_latency_p50_ms', 'ms', 'server', 'gauge', 'Median write latency over the interval (including replication).'),
  m('io_write_latency_p99_ms', 'ms', 'server', 'gauge', '99th percentile write latency over the interval.'),
  m('io_errors_per_s', 'errors/s', 'server', 'rate', 'Data-path requests this server failed itself (IO_ERROR, CORRUPT) per second; UNAVAILABLE, OUT_OF_RANGE and BAD_REQUEST have their own series.'),
  m('checksum_failures_total', 'blocks', 'server', 'counter', 'Blocks whose checksum did not verify since the server started.'),
  m('replication_lag_ms', 'ms', 'server', 'gauge', 'Time the slowest replica is behind the primary.'),
  m('segments', 'segments', 'server', 'gauge', 'Segment replicas held by this server.'),
  // The collector itself.
  m('telemetry_sample_ms', 'ms', 'collector', 'gauge', 'Time taken to take one sample of all sources.'),
  m('telemetry_source_errors', 'sources', 'collector', 'gauge', 'Sources that failed in this sample (their metrics are absent).'),
  // Imported history (history-import.ts).
  m('disk_latency_mean_us', 'µs', 'history:perseus', 'gauge', 'Perseus: mean over the host\'s drives of each drive\'s per-minute mean latency (min/max columns are across drives).'),
  m('disk_latency_max_us', 'µs', 'history:perseus', 'gauge', 'Perseus: largest per-minute maximum latency of any drive on the host.'),
  m('disk_throughput_bps', 'bytes/s', 'history:perseus', 'gauge', 'Perseus: sum of the host\'s drives\' per-minute mean throughput.'),
  m('disk{N}_latency_mean_us', 'µs', 'history:perseus', 'gauge', 'Perseus: drive N\'s per-minute mean latency.'),
  m('disk{N}_latency_max_us', 'µs', 'history:perseus', 'gauge', 'Perseus: drive N\'s per-minute maximum latency.'),
  m('disk{N}_throughput_bps', 'bytes/s', 'history:perseus', 'gauge', 'Perseus: drive N\'s per-minute mean throughput.'),
  m('drive_failed', 'bool', 'history:backblaze', 'gauge', 'Backblaze: 1 on the drive\'s last operational day, else 0.'),
];

const exact = new Map(METRICS.filter((x) => !x.name.includes('{N}')).map((x) => [x.name, x]));
const patterns = METRICS.filter((x) => x.name.includes('{N}')).map((x) => ({
  re: new RegExp('^' + x.name.replace('{N}', '\\d+') + '$'),
  info: x,
}));

/** The catalogue entry for a metric name (exact or per-drive pattern), or undefined. */
export function metricInfo(name: string): MetricInfo | undefined {
  return exact.get(name) ?? patterns.find((p) => p.re.test(name))?.info;
}

/** A Markdown table of the catalogue (for docs and `presage` help output). */
export function catalogueMarkdown(): string {
  const rows = METRICS.map((x) => `| \`${x.name}\` | ${x.unit} | ${x.kind} | ${x.source} | ${x.description.replace(/\|/g, '\\|')} |`);
  return ['| metric | unit | kind | source | description |', '|---|---|---|---|---|', ...rows].join('\n');
}
