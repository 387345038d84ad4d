// `presage fault SERVER …` (fault injection) and `presage metrics SERVER …` (telemetry history).
// SERVER is a server id, resolved to its admin address through the orchestrator's
// /v1/servers, or the admin address itself (host:port).

import { adminBaseUrl } from '../common/cluster-tls.ts';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { httpJson } from '../api/http.ts';
import { parseHostPort } from '../common/address.ts';
import { action, orchestratorOption, orchestratorUrl, printJson } from './common.ts';
import { table as renderTable } from './table.ts';

/** Admin base URL of SERVER (an id known to the orchestrator, or host:port). */
export async function resolveAdminUrl(server: string, orchestrator: string): Promise<string> {
  if (/^https?:\/\//.test(server)) return server.replace(/\/+$/, '');
  try {
    parseHostPort(server);
    return adminBaseUrl(server);
  } catch {
    // not an address: a server id
  }
  const servers = await httpJson<{ id: string; adminAddr: string }[]>(orchestrator, 'GET', '/v1/servers');
  const s = servers.find((x) => x.id === server);
  if (!s) throw new Error(`no server ${JSON.stringify(server)} (known: ${servers.map((x) => x.id).join(', ') || 'none'}); give a server id or its admin host:port`);
  return adminBaseUrl(s.adminAddr);
}

function numberArg(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min}`);
    return n;
  };
}

interface FaultStatusView {
  profile: string;
  intensity: number;
  rampSeconds: number;
  unit: string;
  elapsedSeconds: number;
  level: number;
  progress: number;
}

const fmt = (n: number) => (Math.abs(n) >= 100 || Number.isInteger(n) ? String(Math.round(n * 100) / 100) : n.toPrecision(3));

export function registerTelemetryCommands(program: Command): void {
  program
    .command('fault')
    .description('inject a ramping fault into a storage server started with --allow-faults (slow-io, io-errors, sector-errors, net-loss, net-delay, mem-leak)')
    .argument('<server>', 'server id, or its admin host:port')
    .option('-p, --profile <name>', 'fault profile to start (restarts its ramp if already active)')
    .option('-r, --ramp <seconds>', 'seconds from 0 to full intensity', numberArg('ramp', 0))
    .option('-i, --intensity <x>', 'full strength, in the profile\'s unit (see --list)', numberArg('intensity', 0))
    .option('--clear', 'stop every fault (or only --profile)')
    .option('--list', 'show active faults, counters and the profiles')
    .option('--json', 'JSON output')
    .addOption(orchestratorOption())
    .action(action(async (server: string, opts: { profile?: string; ramp?: number; intensity?: number; clear?: boolean; list?: boolean; json?: boolean; orchestrator: string }) => {
      const modes = [opts.clear, opts.list, opts.profile !== undefined && !opts.clear].filter(Boolean).length;
      if (modes !== 1) throw new Error('give exactly one of --profile NAME, --clear or --list');
      const base = await resolveAdminUrl(server, orchestratorUrl(opts));
      if (opts.clear) {
        const q = opts.profile ? `?profile=${encodeURIComponent(opts.profile)}` : '';
        const r = await httpJson<{ cleared: string[] }>(base, 'DELETE', `/v1/faults${q}`);
        if (opts.json) printJson(r);
        else process.stdout.write(r.cleared.length ? `cleared: ${r.cleared.join(', ')}\n` : 'no fault was active\n');
        return;
      }
      if (opts.list) {
        const r = await httpJson<{ active: FaultStatusView[]; counters: Record<string, number>; profiles: { profile: string; unit: string; defaultIntensity: number; description: string }[] }>(base, 'GET', '/v1/faults');
        if (opts.json) return printJson(r);
        if (r.active.length === 0) process.stdout.write('no active faults\n');
        else {
          process.stdout.write(renderTable(['PROFILE', 'LEVEL', 'INTENSITY', 'RAMP', 'ELAPSED', 'UNIT'], r.active.map((a) => [
            a.profile, `${fmt(a.level)} (${Math.round(a.progress * 100)}%)`, fmt(a.intensity), `${a.rampSeconds}s`, `${Math.round(a.elapsedSeconds)}s`, a.unit,
          ])) + '\n');
        }
        process.stdout.write(`counters: ${Object.entries(r.counters).map(([k, v]) => `${k}=${fmt(v)}`).join(' ')}\n`);
        process.stdout.write(`profiles: ${r.profiles.map((p) => `${p.profile} (default ${p.defaultIntensity}: ${p.unit})`).join('; ')}\n`);
        return;
      }
      const body: Record<string, unknown> = { profile: opts.profile };
      if (opts.ramp !== undefined) body.rampSeconds = opts.ramp;
      if (opts.intensity !== undefined) body.intensity = opts.intensity;
      const r = await httpJson<FaultStatusView>(base, 'POST', '/v1/faults', body);
      if (opts.json) printJson(r);
      else process.stdout.write(`fault ${r.profile} started on ${server}: ramps to ${fmt(r.intensity)} (${r.unit}) over ${r.rampSeconds}s\n`);
    }));

  program
    .command('metrics')
    .description('query a storage server\'s telemetry history (per-minute roll-ups), or list its metric names')
    .argument('<server>', 'server id, or its admin host:port')
    .option('-m, --metric <name>', 'metric to query (see --names)')
    .option('--from <time>', 'start: ms since the epoch, ISO date, "now" or relative ("-6h")', '-1h')
    .option('--to <time>', 'end (same forms)', 'now')
    .option('--step <step>', 'bucket size: a multiple of 1 minute ("5m", "1h")')
    .option('--names', 'list the metrics that have data')
    .option('--json', 'JSON output')
    .addOption(orchestratorOption())
    .action(action(async (server: string, opts: { metric?: string; from: string; to: string; step?: string; names?: boolean; json?: boolean; orchestrator: string }) => {
      if (!opts.names && !opts.metric) throw new Error('give --metric NAME (or --names to list them)');
      const base = await resolveAdminUrl(server, orchestratorUrl(opts));
      if (opts.names) {
        const names = await httpJson<string[]>(base, 'GET', '/v1/metrics/names');
        if (opts.json) printJson(names);
        else process.stdout.write(names.join('\n') + (names.length ? '\n' : ''));
        return;
      }
      const q = new URLSearchParams({ metric: opts.metric!, from: opts.from, to: opts.to });
      if (opts.step) q.set('step', opts.step);
      const r = await httpJson<{ metric: string; points: { ts: number; min: number; max: number; mean: number; last: number; count: number }[] }>(base, 'GET', `/v1/metrics/history?${q}`, undefined, 60000);
      if (opts.json) return printJson(r);
      if (r.points.length === 0) {
        process.stdout.write(`no points for ${r.metric} in that range\n`);
        return;
      }
      process.stdout.write(renderTable(['TIME', 'MIN', 'MEAN', 'MAX', 'LAST', 'SAMPLES'], r.points.map((p) => [
        new Date(p.ts).toISOString(), fmt(p.min), fmt(p.mean), fmt(p.max), fmt(p.last), String(p.count),
      ])) + '\n');
    }));
}
