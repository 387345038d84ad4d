// `presage quarantine`: copies a server set aside because the metadata did not know them (a
// deleted volume the server missed, data from another cluster, a store restored from elsewhere).
// They are never deleted by the server itself; an admin lists them and purges them explicitly.

import type { Command } from 'commander';
import { httpJson } from '../api/http.ts';
import { adminBaseUrl } from '../common/cluster-tls.ts';
import { formatBytes } from '../common/size.ts';
import { action, orchestratorOption, orchestratorUrl, printJson } from './common.ts';
import { table } from './table.ts';
import { resolveAdminUrl } from './telemetry-commands.ts';

interface Quarantined {
  segmentId: string;
  path: string;
  bytes: number;
}

export function registerQuarantineCommand(program: Command): void {
  const q = program.command('quarantine').description('list or purge copies servers set aside because the metadata does not know them');
  q.command('list')
    .description('list quarantined copies on every server (or one)')
    .argument('[server]', 'server id, or its admin host:port (default: every server)')
    .option('--json', 'print JSON')
    .addOption(orchestratorOption())
    .action(action(async (server: string | undefined, opts: { json?: boolean; orchestrator?: string }) => {
      const orch = orchestratorUrl(opts);
      const targets = server
        ? [{ id: server, base: await resolveAdminUrl(server, orch) }]
        : (await httpJson<{ id: string; adminAddr: string; state: string }[]>(orch, 'GET', '/v1/servers')).filter((s) => s.state === 'up').map((s) => ({ id: s.id, base: adminBaseUrl(s.adminAddr) }));
      const rows: (Quarantined & { server: string })[] = [];
      for (const t of targets) for (const c of await httpJson<Quarantined[]>(t.base, 'GET', '/v1/quarantine')) rows.push({ server: t.id, ...c });
      if (opts.json) return printJson(rows);
      if (rows.length === 0) return void process.stdout.write('no quarantined copies\n');
      process.stdout.write(`${table(['SERVER', 'SEGMENT', 'SIZE', 'PATH'], rows.map((r) => [r.server, r.segmentId, formatBytes(r.bytes), r.path]))}\n`);
    }));
  q.command('purge')
    .description("delete a server's quarantined copies (all, or one segment's): the data is gone for good")
    .argument('<server>', 'server id, or its admin host:port')
    .option('--segment <id>', 'only the copies of this segment (volume/index)')
    .option('--yes', 'really delete (required)')
    .option('--json', 'print JSON')
    .addOption(orchestratorOption())
    .action(action(async (server: string, opts: { segment?: string; yes?: boolean; json?: boolean; orchestrator?: string }) => {
      if (!opts.yes) throw new Error('purging deletes the quarantined data for good: run `presage quarantine list` first, then repeat with --yes');
      const base = await resolveAdminUrl(server, orchestratorUrl(opts));
      const r = await httpJson<{ purged: number; left: number }>(base, 'DELETE', `/v1/quarantine${opts.segment ? `?segment=${encodeURIComponent(opts.segment)}` : ''}`);
      if (opts.json) return printJson(r);
      process.stdout.write(`purged ${r.purged} quarantined cop${r.purged === 1 ? 'y' : 'ies'}; ${r.left} left\n`);
    }));
}
