// The `presage` command line. Every command has --help; data commands have --json; an error
// exits non-zero with a one-line reason on stderr.

import { Command } from 'commander';
import { registerProcessCommands } from './process-commands.ts';
import { registerVolumeCommands } from './volume-commands.ts';
import { registerStatusCommand } from './status-command.ts';
import { registerMigrationCommands } from './migration-commands.ts';
import { registerMetaCommands } from './meta-commands.ts';
import { registerEventsCommand } from './events-command.ts';
import { registerDemoCommand } from './demo-command.ts';
import { registerNbdCommand } from './nbd-command.ts';
import { registerTelemetryCommands } from './telemetry-commands.ts';
import { registerPredictionCommands } from './prediction-commands.ts';

const program = new Command('presage')
  .description('Presage: a distributed block store whose storage servers see their own failures coming')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)');

registerProcessCommands(program);
registerVolumeCommands(program);
registerStatusCommand(program);
registerMigrationCommands(program);
registerMetaCommands(program);
registerEventsCommand(program);
registerDemoCommand(program);
registerNbdCommand(program);
registerTelemetryCommands(program);
registerPredictionCommands(program);

program.parseAsync(process.argv).catch((err) => {
  process.stderr.write(`presage: ${(err as Error).message}\n`);
  process.exit(1);
});
