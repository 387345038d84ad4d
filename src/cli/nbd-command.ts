// `presage nbd`: exports every Presage volume over the Network Block Device protocol (TCP and/or a
// Unix socket), so qemu, nbdcopy, fio and the Linux nbd driver use volumes as disks. The export
// name is the volume name. Stops cleanly on SIGINT/SIGTERM: in-flight requests are answered first.

import fs from 'node:fs';
import net from 'node:net';
import { Option, type Command } from 'commander';
import { mayUseVolume } from '../auth/policy.ts';
import type { EntityView } from '../auth/keyring.ts';
import { PresageClient } from '../client/presage-client.ts';
import { parseHostPort } from '../common/address.ts';
import { createLogger, type Logger } from '../common/log.ts';
import { NbdServer, type NbdListenOptions } from '../nbd/nbd-server.ts';
import { PresageBlockDeviceProvider } from '../nbd/presage-provider.ts';
import { loadPskFile, type NbdTlsMode, type NbdTlsOptions } from '../nbd/tls.ts';
import { action, intArg, orchestratorOption, metaOption, connectTarget } from './common.ts';

export const DEFAULT_NBD_LISTEN = '127.0.0.1:10809';

interface NbdOpts extends TlsCliOpts {
  orchestrator: string;
  listen?: string;
  socket?: string;
  maxInFlight: number;
}

export interface TlsCliOpts {
  tls?: NbdTlsMode;
  tlsPskFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/**
 * The NBD TLS options (`--tls…`, or `--nbd-tls…` on `presage server`). With a PSK file or a
 * certificate, TLS defaults to required: credentials given are credentials meant to be used.
 */
export function addNbdTlsOptions(cmd: Command, prefix = ''): Command {
  const f = (name: string) => `--${prefix}${name}`;
  return cmd
    .addOption(new Option(`${f('tls')} <mode>`, 'NBD over TLS: off, on (offered), require (default require when a PSK file or certificate is given, else off)').choices(['off', 'on', 'require']))
    .option(`${f('tls-psk-file')} <file>`, 'TLS-PSK keys, psktool format (identity:hexkey; `presage auth psk KEYFILE` prints an entity\'s line); the identity is a Presage entity whose volume grants decide the exports it sees')
    .option(`${f('tls-cert')} <file>`, 'x509: PEM certificate (chain) of this export server')
    .option(`${f('tls-key')} <file>`, 'x509: PEM private key of this export server')
    .option(`${f('tls-ca')} <file>`, 'x509: require client certificates signed by this CA (the certificate CN is the entity)');
}

/** The NbdTlsOptions for parsed options (keys read now, so a bad file fails the command at start). */
export function nbdTlsFrom(o: TlsCliOpts, client: PresageClient): NbdTlsOptions | undefined {
  const read = (file: string | undefined, what: string) => {
    if (file === undefined) return undefined;
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const psk = o.tlsPskFile ? loadPskFile(o.tlsPskFile) : undefined;
  const cert = read(o.tlsCert, 'certificate');
  const key = read(o.tlsKey, 'key');
  const ca = read(o.tlsCa, 'CA certificate');
  const mode: NbdTlsMode = o.tls ?? (psk || cert ? 'require' : 'off');
  if (mode === 'off') return undefined;
  return { mode, psk, cert, key, ca, authorize: entityAuthorizer(client) };
}

/**
 * Export authorisation by the client's TLS identity, read as a Presage entity (its volume grants),
 * cached briefly: NBD handshakes are rare, and a revocation takes effect within the TTL. Plain
 * (non-TLS) clients, which `--tls on` lets in, are not restricted.
 */
function entityAuthorizer(client: PresageClient, ttlMs = 5000): NonNullable<NbdTlsOptions['authorize']> {
  const cache = new Map<string, { at: number; entity: EntityView | undefined }>();
  return async (identity, exportName) => {
    if (identity === undefined) return true;
    let hit = cache.get(identity);
    if (!hit || Date.now() - hit.at > ttlMs) {
      hit = { at: Date.now(), entity: await client.api.entity(identity) };
      cache.set(identity, hit);
    }
    return hit.entity !== undefined && mayUseVolume(hit.entity, exportName);
  };
}

export function registerNbdCommand(program: Command): void {
  const cmd = program
    .command('nbd')
    .description('export volumes over NBD (export name = volume name) for qemu, nbdcopy, fio, nbd-client')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('-l, --listen <host:port>', `TCP address (default ${DEFAULT_NBD_LISTEN} unless only --socket is given)`)
    .option('-s, --socket <path>', 'also (or only) listen on this Unix socket')
    .option('--max-in-flight <n>', 'requests processed at once per NBD connection', intArg('max in flight', 1, 4096), DEFAULT_NBD_MAX_IN_FLIGHT);
  addNbdTlsOptions(cmd)
    .action(action(async (opts: NbdOpts) => {
      const targets: NbdListenOptions[] = [];
      if (opts.listen !== undefined || opts.socket === undefined) targets.push(parseHostPort(opts.listen ?? DEFAULT_NBD_LISTEN, '--listen'));
      if (opts.socket !== undefined) {
        await clearStaleSocket(opts.socket);
        targets.push({ path: opts.socket });
      }

      const log = createLogger('nbd');
      const client = await PresageClient.connect({ ...connectTarget(opts), logger: log });
      let exports: NbdExports;
      try {
        exports = await startNbdExports(client, targets, log, opts.maxInFlight, nbdTlsFrom(opts, client));
      } catch (err) {
        await client.close();
        throw err;
      }
      const { uris } = exports;
      process.stdout.write(`nbd export listening on ${uris.join(' ')}\n`);

      let stopping = false;
      const stop = (sig: NodeJS.Signals) => {
        if (stopping) process.exit(1); // a second signal: stop waiting
        stopping = true;
        log.info({ signal: sig }, 'nbd: stopping');
        exports.close()
          .then(() => client.close())
          .then(() => process.exit(0), (err) => {
            process.stderr.write(`presage: stopping nbd: ${(err as Error).message}\n`);
            process.exit(1);
          });
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    }));
}

export interface NbdExports {
  uris: string[];
  /** Stops every listener, answering requests in flight first. */
  close(): Promise<void>;
}

/** Requests processed at once per NBD connection, for `presage nbd` and `presage server --nbd-listen`. */
export const DEFAULT_NBD_MAX_IN_FLIGHT = 64;

/**
 * Serves every volume of the client over NBD on each target (one NbdServer per listener; they
 * share one provider, hence the same Volume objects). Used by `presage nbd` and by
 * `presage server --nbd-listen`. On a failure nothing is left listening.
 */
export async function startNbdExports(client: PresageClient, targets: NbdListenOptions[], log: Logger, maxInFlight: number, tls?: NbdTlsOptions): Promise<NbdExports> {
  const provider = new PresageBlockDeviceProvider(client);
  const servers: NbdServer[] = [];
  const uris: string[] = [];
  try {
    for (const t of targets) {
      const s = new NbdServer(provider, { logger: log, maxInFlight, tls });
      uris.push((await s.listen(t)).uri);
      servers.push(s);
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.close()));
    throw err;
  }
  return { uris, close: async () => { await Promise.all(servers.map((s) => s.close())); } };
}

/** Removes a Unix socket left behind by a process that died; refuses one that is still served. */
async function clearStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) throw new Error(`--socket ${path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`--socket ${path} is already in use by another process`);
  fs.unlinkSync(path);
}
