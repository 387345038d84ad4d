// `presage auth …`: the cluster's entities and keys, and the process credential every command
// uses (`--key-file`, PRESAGE_KEY_FILE, else ./presage-orchestrator/admin.key when it exists:
// the key the default orchestrator bootstrapped, so a one-machine cluster needs no flags).

import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ROLES, bearerToken, loadKeyFile, newSecret, processCredential, setProcessCredential, verifierOf, writeKeyFile, type Role } from '../auth/credentials.ts';
import { pskLine } from '../nbd/tls.ts';
import { action, apiFor, metaOption, orchestratorOption, printJson } from './common.ts';
import { table } from './table.ts';

/** Where a command finds its credential when none is named. */
export const DEFAULT_KEY_FILE = path.join('presage-orchestrator', 'admin.key');

/** True when --key-file was given on the command line (it beats a server's own <dir>/server.key). */
export let keyFileGiven = false;

/** Sets the process credential from --key-file, PRESAGE_KEY_FILE or the default file. */
export function useKeyFile(file: string | undefined, fromCommandLine = false): void {
  keyFileGiven = fromCommandLine && file !== undefined;
  if (file) return setProcessCredential(loadKeyFile(file));
  if (process.env.PRESAGE_KEY_FILE) return void processCredential();
  if (fs.existsSync(DEFAULT_KEY_FILE)) setProcessCredential(loadKeyFile(DEFAULT_KEY_FILE));
}

export function registerAuthCommands(program: Command): void {
  const auth = program.command('auth').description('entities, roles and keys (who may do what)');
  const remote = (c: Command) => c.addOption(orchestratorOption()).addOption(metaOption());

  remote(auth.command('create <name>'))
    .description('add an entity and write its key file (0600); the secret is made here and never sent')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .option('--volume <name...>', 'client: a volume it may use (a name, a prefix ending in *, or *); repeatable')
    .option('--read-only', 'client: READ and STAT only')
    .requiredOption('--out <file>', 'where to write the key file (refuses to overwrite one)')
    .option('--json', 'print the entity as JSON')
    .action(action(async (name: string, opts: { role: string; volume?: string[]; readOnly?: boolean; out: string; json?: boolean; orchestrator?: string; meta?: string }) => {
      if (!ROLES.includes(opts.role as Role)) throw new Error(`--role must be one of ${ROLES.join(', ')}`);
      if (fs.existsSync(opts.out)) throw new Error(`${opts.out} exists; pick another --out (a key file is never overwritten)`);
      const secret = newSecret();
      const role = opts.role as Role;
      const view = await apiFor(opts).createEntity({ name, role, volumes: opts.volume, readOnly: opts.readOnly }, verifierOf(secret));
      writeKeyFile(opts.out, { name, secret }, role);
      if (opts.json) return printJson(view);
      process.stdout.write(`created ${name} (role ${role}${opts.volume ? `, volumes ${opts.volume.join(' ')}${opts.readOnly ? ' read-only' : ''}` : ''}); key file ${opts.out}\n`);
    }));

  remote(auth.command('list'))
    .description('the entities: name, role, grants, created, revoked (never a key)')
    .option('--json', 'print JSON')
    .action(action(async (opts: { json?: boolean; orchestrator?: string; meta?: string }) => {
      const list = await apiFor(opts).entities();
      if (opts.json) return printJson(list);
      process.stdout.write(table(['NAME', 'ROLE', 'VOLUMES', 'CREATED', 'REVOKED'], list.map((e) => [
        e.name, e.role, e.volumes ? `${e.volumes.join(',')}${e.readOnly ? ' (ro)' : ''}` : '-', e.createdAt, e.revokedAt ?? '-',
      ])) + '\n');
    }));

  remote(auth.command('revoke <name>'))
    .description('revoke an entity: it authenticates nowhere from now on and its open connections close')
    .action(action(async (name: string, opts: { orchestrator?: string; meta?: string }) => {
      const v = await apiFor(opts).revokeEntity(name);
      process.stdout.write(`revoked ${v.name} at ${v.revokedAt}\n`);
    }));

  remote(auth.command('rebind <server-id>'))
    .description('let a registered server register again from new addresses or with a new key (it moved or was reinstalled)')
    .action(action(async (id: string, opts: { orchestrator?: string; meta?: string }) => {
      await apiFor(opts).rebindServer(id);
      process.stdout.write(`server ${id} may register anew; its next registration binds it again\n`);
    }));

  remote(auth.command('whoami'))
    .description('the entity this command authenticates as, as the orchestrator sees it')
    .option('--json', 'print JSON')
    .action(action(async (opts: { json?: boolean; orchestrator?: string; meta?: string }) => {
      const id = await apiFor(opts).whoami();
      if (opts.json) return printJson(id);
      process.stdout.write(`${id.name} (role ${id.role}${id.volumes ? `, volumes ${id.volumes.join(' ')}` : ''})\n`);
    }));

  auth.command('psk [key-files...]')
    .description('print NBD TLS-PSK lines (psktool format, identity:hexkey) for key files (default: the current credential); the key is derived from the entity\'s secret')
    .action(action(async (files: string[]) => {
      const creds = files.length ? files.map(loadKeyFile) : [processCredential()];
      if (creds.some((c) => !c)) throw new Error('no credential: name key files or pass --key-file');
      for (const c of creds) process.stdout.write(`${pskLine(c!.name, c!.secret)}\n`);
    }));

  auth.command('token')
    .description('print the HTTP bearer token of the current credential (for the dashboard, curl or Prometheus)')
    .action(action(async () => {
      const cred = processCredential();
      if (!cred) throw new Error('no credential: pass --key-file or set PRESAGE_KEY_FILE');
      process.stdout.write(`${bearerToken(cred)}\n`);
    }));
}
