// `presage cluster set|unset noout`: the operator switches that hold automatic actions back
// cluster-wide. They live in the metadata store, so a restarted or newly elected orchestrator
// obeys them too; `presage status` shows them while set.

import { InvalidArgumentError, type Command } from 'commander';
import { action, apiFor, metaOption, orchestratorOption, printJson } from './common.ts';

const FLAGS = ['noout'] as const;

function flagArg(v: string): (typeof FLAGS)[number] {
  if (!(FLAGS as readonly string[]).includes(v)) throw new InvalidArgumentError(`unknown flag ${JSON.stringify(v)}; flags: ${FLAGS.join(', ')}`);
  return v as (typeof FLAGS)[number];
}

export function registerClusterCommand(program: Command): void {
  const cluster = program.command('cluster').description('cluster-wide switches (noout: servers marked down are not re-replicated, for planned maintenance)');
  for (const [verb, on] of [['set', true], ['unset', false]] as const) {
    cluster.command(verb)
      .description(on ? 'set a flag (noout: hold re-replication of down servers back until unset)' : 'clear a flag (noout: servers down longer than the down → out delay are re-replicated now)')
      .argument('<flag>', `one of: ${FLAGS.join(', ')}`, flagArg)
      .option('--json', 'print JSON')
      .addOption(orchestratorOption())
      .addOption(metaOption())
      .action(action(async (_flag: (typeof FLAGS)[number], opts: { json?: boolean; orchestrator?: string; meta?: string }) => {
        const flags = await apiFor(opts).setFlags({ noout: on });
        if (opts.json) return printJson(flags);
        process.stdout.write(on
          ? 'noout set: servers marked down keep their share un-copied until `presage cluster unset noout`\n'
          : 'noout cleared: segments of servers down longer than the down → out delay are re-replicated now\n');
      }));
  }
}
