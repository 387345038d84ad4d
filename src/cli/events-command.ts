// `presage events`: the orchestrator's decision log — what it decided about data and why.

import type { Command } from 'commander';
import type { Decision } from '../orchestrator/decision-log.ts';
import { action, apiFor, isTty, metaOption, orchestratorOption, printJson } from './common.ts';
import { colour, table } from './table.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function row(d: Decision, c: ReturnType<typeof colour>): (string | number)[] {
  const type = d.type === 'drain-started' || d.type === 'failover' ? c.red(d.type)
    : d.type === 'score-warning' ? c.yellow(d.type)
      : d.type === 'committed' ? c.green(d.type) : d.type;
  const details = [
    d.score !== undefined ? `score ${d.score.toFixed(0)}` : '',
    d.mode ? `mode ${d.mode}` : '',
    d.priority !== undefined ? `priority ${d.priority}` : '',
    d.features?.length ? `features ${d.features.slice(0, 3).map((f) => f.name).join(',')}` : '',
  ].filter(Boolean).join('; ');
  return [d.at.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), type, d.segmentId || d.server || '-', d.reason, details];
}

export function registerEventsCommand(program: Command): void {
  program
    .command('events')
    .description('the decision log: drains, migrations, repairs and failovers, each with its reason')
    .option('-n, --limit <n>', 'how many recent decisions', (v) => Math.max(1, Number(v) || 50), 50)
    .option('-f, --follow', 'keep printing new decisions')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON (one array; with --follow, one decision per line)')
    .action(action(async (opts: { limit: number; follow?: boolean; json?: boolean; orchestrator?: string; meta?: string }) => {
      const api = apiFor(opts);
      const c = colour(isTty());
      let events = await api.events();
      events = events.slice(-opts.limit);
      if (opts.json && !opts.follow) return printJson(events);
      const print = (list: Decision[]) => {
        if (opts.json) for (const d of list) process.stdout.write(JSON.stringify(d) + '\n');
        else if (list.length) process.stdout.write(table(['TIME', 'DECISION', 'SUBJECT', 'REASON', 'DETAILS'], list.map((d) => row(d, c))) + '\n');
      };
      if (events.length === 0 && !opts.follow) return void process.stdout.write('no decisions yet\n');
      print(events);
      if (!opts.follow) return;
      let since = events.at(-1)?.seq ?? 0;
      for (;;) {
        await sleep(1000);
        const fresh = (await api.events(since)).filter((d) => d.seq > since);
        if (fresh.length) since = fresh.at(-1)!.seq;
        print(fresh);
      }
    }));
}
