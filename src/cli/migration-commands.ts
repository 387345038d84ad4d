// Moving data by hand: `presage migrate`, `presage drain`, `presage migrations [cancel]`.

import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import type { OrchestratorClient } from '../api/orchestrator-client.ts';
import { formatBytes } from '../common/size.ts';
import type { OperatorView } from '../orchestrator/operators.ts';
import { action, isTty, orchestratorOption, printJson, metaOption, apiFor } from './common.ts';
import { table } from './table.ts';

type Common = { orchestrator: string; json?: boolean };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function registerMigrationCommands(program: Command): void {
  program
    .command('migrate <segment>')
    .description('move one replica of a segment (VOLUME/INDEX) to another server, live and verified')
    .option('--to <server>', 'destination server id (default: chosen by free capacity and failure domain)')
    .option('--from <server>', 'the replica to replace (default: the primary)')
    .option('--wait', 'wait until the migration is committed (or rolled back)')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON')
    .action(action(async (segment: string, opts: Common & { to?: string; from?: string; wait?: boolean }) => {
      const api = apiFor(opts);
      const op = await api.migrate({ segmentId: segment, to: opts.to, from: opts.from });
      if (!opts.wait) {
        if (opts.json) return printJson(op);
        process.stdout.write(`migration ${op.id}: ${segment} ${op.remove} → ${op.target} (queued)\n`);
        return;
      }
      await watch(api, (ops) => ops.some((o) => o.id === op.id), opts.json === true);
      const seg = await api.segment(segment);
      const ok = seg.replicas.includes(op.target) && (!op.remove || !seg.replicas.includes(op.remove));
      if (opts.json) return printJson({ migration: op.id, committed: ok, segment: seg });
      if (!ok) throw new Error(`migration ${op.id} did not commit (see presage events)`);
      process.stdout.write(`migrated ${segment}: now on ${seg.replicas.join(', ')} (epoch ${seg.epoch})\n`);
    }));

  program
    .command('drain <server>')
    .description('move every segment off a server (it takes no new data while draining)')
    .option('--undo', 'stop draining: the server takes data again')
    .option('--reason <text>', 'recorded in the decision log')
    .option('--wait', 'wait until nothing is left on the server')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON')
    .action(action(async (server: string, opts: Common & { undo?: boolean; reason?: string; wait?: boolean }) => {
      const api = apiFor(opts);
      if (opts.undo) {
        const r = await api.undrain(server);
        if (opts.json) return printJson(r);
        process.stdout.write(`${server} is no longer draining (${r.remaining} segments on it)\n`);
        return;
      }
      const r = await api.drain(server, opts.reason);
      if (!opts.wait) {
        if (opts.json) return printJson(r);
        process.stdout.write(`draining ${server}: ${r.remaining} segment(s) to move; follow with \`presage migrations --watch\`\n`);
        return;
      }
      const remaining = async () => (await api.status()).servers.find((s) => s.id === server)?.segments ?? 0;
      await watch(api, async () => (await remaining()) > 0, opts.json === true);
      if (opts.json) return printJson({ server, drained: true });
      process.stdout.write(`${server} is empty\n`);
    }));

  const migrations = program
    .command('migrations')
    .description('list data movement in flight (migrations, drains, repairs) with progress')
    .option('-w, --watch', 'keep showing progress until nothing is moving')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON')
    .action(action(async (opts: Common & { watch?: boolean }) => {
      const api = apiFor(opts);
      if (opts.watch) return watch(api, (ops) => ops.length > 0, opts.json === true);
      const ops = await api.migrations();
      if (opts.json) return printJson(ops);
      if (ops.length === 0) return void process.stdout.write('no data movement in flight\n');
      process.stdout.write(render(ops) + '\n');
    }));

  migrations
    .command('cancel <id>')
    .description('cancel a migration (by id or segment): the copy stops and the SMT is left as it was')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON')
    .action(action(async (id: string, opts: Common) => {
      const r = await apiFor(opts).cancelMigration(id);
      if (opts.json) return printJson(r);
      process.stdout.write(`cancelled ${id}\n`);
    }));
}

function render(ops: OperatorView[]): string {
  return table(
    ['ID', 'SEGMENT', 'KIND', 'STATE', 'FROM', 'TO', 'PROGRESS', 'RATE', 'ETA', 'PRIORITY'],
    ops.map((o) => {
      const p = o.progress;
      return [
        o.id.slice(0, 8), o.segmentId, o.kind, o.state, o.remove ?? '-', o.target,
        p && p.totalBytes ? `${formatBytes(p.bytesCopied)}/${formatBytes(p.totalBytes)}` : '-',
        p ? `${formatBytes(p.rateBytesPerSec)}/s` : '-',
        p?.etaSeconds !== undefined ? `${p.etaSeconds.toFixed(0)}s` : '-',
        o.priority,
      ];
    }),
  );
}

/**
 * Follows data movement until `busy` says it is over: progress bars on a terminal, one JSON
 * line per change otherwise (so scripts and logs see progress too).
 */
async function watch(api: OrchestratorClient, busy: (ops: OperatorView[]) => boolean | Promise<boolean>, json: boolean): Promise<void> {
  const tty = isTty(process.stderr) && !json;
  const multi = tty ? new cliProgress.MultiBar({ stream: process.stderr, format: '{segment} {kind} {from}→{to} [{bar}] {percentage}% | {rate}/s | ETA {eta_formatted}', hideCursor: true, clearOnComplete: false }, cliProgress.Presets.shades_classic) : undefined;
  const bars = new Map<string, cliProgress.SingleBar>();
  let last = '';
  try {
    for (;;) {
      const ops = await api.migrations();
      for (const o of ops) {
        const payload = { segment: o.segmentId, kind: o.kind, from: o.remove ?? '', to: o.target, rate: formatBytes(o.progress?.rateBytesPerSec ?? 0) };
        const total = o.progress?.totalBytes || 1;
        let bar = bars.get(o.id);
        if (multi && !bar) bars.set(o.id, (bar = multi.create(total, 0, payload)));
        bar?.setTotal(total);
        bar?.update(o.progress?.bytesCopied ?? 0, payload);
      }
      for (const [id, bar] of bars) {
        if (!ops.some((o) => o.id === id)) {
          bar.update(bar.getTotal());
          bar.stop();
          bars.delete(id);
        }
      }
      if (!tty) {
        const line = JSON.stringify(ops.map((o) => ({ id: o.id, segment: o.segmentId, state: o.state, bytesCopied: o.progress?.bytesCopied ?? 0, totalBytes: o.progress?.totalBytes ?? 0 })));
        if (line !== last) process.stderr.write(line + '\n');
        last = line;
      }
      if (!(await busy(ops))) return;
      await sleep(500);
    }
  } finally {
    multi?.stop();
  }
}
