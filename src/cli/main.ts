// The `presage` command line. Every command has --help; data commands have --json; an error
// exits non-zero with a one-line reason on stderr.

import { Command, Option } from 'commander';
import { registerAuthCommands, useKeyFile } from './auth-commands.ts';
import { loadClusterTls, setProcessTls } from '../common/cluster-tls.ts';
import { loadEtcdSecurity, setProcessEtcdSecurity } from '../metadata/etcd-security.ts';
import { registerProcessCommands } from './process-commands.ts';
import { registerVolumeCommands } from './volume-commands.ts';
import { registerStatusCommand } from './status-command.ts';
import { registerMigrationCommands } from './migration-commands.ts';
import { registerMetaCommands } from './meta-commands.ts';
import { registerEventsCommand } from './events-command.ts';
import { registerDemoCommand } from './demo-command.ts';
import { registerNbdCommand } from './nbd-command.ts';
import { registerTelemetryCommands } from './telemetry-commands.ts';
import { registerQuarantineCommand } from './quarantine-command.ts';
import { registerClusterCommand } from './cluster-command.ts';
import { registerPredictionCommands } from './prediction-commands.ts';

const program = new Command('presage')
  .description('Presage: a distributed block store whose storage servers see their own failures coming')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .addOption(new Option('--cluster-tls-ca <file>', "the cluster's CA (PEM): talk TLS to the orchestrator and servers and verify them against it").env('PRESAGE_TLS_CA'))
  .addOption(new Option('--cluster-tls-cert <file>', "this process's certificate (PEM) for the TLS it serves (orchestrator, server)").env('PRESAGE_TLS_CERT'))
  .addOption(new Option('--cluster-tls-key <file>', 'the key (PEM) of --cluster-tls-cert').env('PRESAGE_TLS_KEY'))
  .addOption(new Option('--etcd-ca <file>', "with --meta etcds://: the CA (PEM) that signed etcd's certificate").env('PRESAGE_ETCD_CA'))
  .addOption(new Option('--etcd-cert <file>', 'client certificate (PEM) for an etcd with --client-cert-auth').env('PRESAGE_ETCD_CERT'))
  .addOption(new Option('--etcd-key <file>', 'the key (PEM) of --etcd-cert').env('PRESAGE_ETCD_KEY'))
  .addOption(new Option('--etcd-user <name>', 'etcd user (etcd RBAC); its password is read from --etcd-password-file').env('PRESAGE_ETCD_USER'))
  .addOption(new Option('--etcd-password-file <file>', "file holding --etcd-user's password (one line; never pass a password on the command line)").env('PRESAGE_ETCD_PASSWORD_FILE'))
  .addOption(new Option('-k, --key-file <file>', 'credential to act as (default: ./presage-orchestrator/admin.key when present; `presage server` reads <dir>/server.key)').env('PRESAGE_KEY_FILE'));

// Every command acts as one entity. The orchestrator, server and demo resolve theirs themselves
// (bootstrap, <dir>/server.key; PRESAGE_KEY_FILE only after those), so neither a stray admin key
// in the working directory nor an exported PRESAGE_KEY_FILE silently becomes a server's identity.
const RESOLVE_OWN = new Set(['orchestrator', 'server', 'demo']);
program.hook('preAction', (_root, cmd) => {
  let top = cmd;
  while (top.parent && top.parent !== program) top = top.parent;
  const file = program.opts<{ keyFile?: string }>().keyFile;
  const fromCli = program.getOptionValueSource('keyFile') === 'cli';
  const t = program.opts<{ clusterTlsCa?: string; clusterTlsCert?: string; clusterTlsKey?: string; etcdCa?: string; etcdCert?: string; etcdKey?: string; etcdUser?: string; etcdPasswordFile?: string }>();
  try {
    setProcessTls(loadClusterTls({ ca: t.clusterTlsCa, cert: t.clusterTlsCert, key: t.clusterTlsKey }));
    setProcessEtcdSecurity(loadEtcdSecurity({ ca: t.etcdCa, cert: t.etcdCert, key: t.etcdKey, user: t.etcdUser, passwordFile: t.etcdPasswordFile }));
    if (fromCli || !RESOLVE_OWN.has(top.name())) useKeyFile(file, fromCli);
  } catch (err) {
    process.stderr.write(`presage: ${(err as Error).message}\n`);
    process.exit(1);
  }
});

registerProcessCommands(program);
registerVolumeCommands(program);
registerStatusCommand(program);
registerMigrationCommands(program);
registerMetaCommands(program);
registerEventsCommand(program);
registerDemoCommand(program);
registerNbdCommand(program);
registerTelemetryCommands(program);
registerQuarantineCommand(program);
registerClusterCommand(program);
registerPredictionCommands(program);
registerAuthCommands(program);

program.parseAsync(process.argv).catch((err) => {
  process.stderr.write(`presage: ${(err as Error).message}\n`);
  process.exit(1);
});
