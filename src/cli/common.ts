// Helpers shared by the CLI's commands.

import { InvalidArgumentError, Option } from 'commander';
import { parseSize } from '../common/size.ts';
import { normaliseUrl } from '../common/address.ts';
import { connectMeta, type MetaConnection, type MetaTarget } from '../api/connect.ts';
import type { OrchestratorClient } from '../api/orchestrator-client.ts';
import { parseMetaOption } from '../metadata/backend.ts';
import { ApiError } from '../api/http.ts';
import { processCredential } from '../auth/credentials.ts';

/** host:port: the scheme follows the cluster's TLS setting (normaliseUrl). */
export const DEFAULT_ORCHESTRATOR = '127.0.0.1:7400';

export function orchestratorOption(): Option {
  return new Option('-o, --orchestrator <url>', `orchestrator URL or host:port (default ${DEFAULT_ORCHESTRATOR}; with --meta etcd://… the leader is found in etcd)`)
    .env('PRESAGE_ORCHESTRATOR');
}

export function metaOption(): Option {
  return new Option('--meta <url>', 'metadata store: "embedded" (the orchestrator\'s own), etcd://HOST:PORT[,HOST:PORT…][/PREFIX], or etcds://… for TLS (see --etcd-ca, --etcd-user)')
    .env('PRESAGE_META');
}

/** Where the cluster is, from --orchestrator / --meta (and their environment variables). */
export function connectTarget(opts: { orchestrator?: string; meta?: string }): MetaTarget {
  const backend = parseMetaOption(opts.meta);
  if (backend.kind === 'etcd') return { meta: opts.meta, orchestratorUrl: opts.orchestrator ? normaliseUrl(opts.orchestrator) : undefined };
  return { orchestratorUrl: orchestratorUrl(opts) };
}

const openConnections: MetaConnection[] = [];

/** The orchestrator API for a one-shot command; its connections close when the command ends. */
export function apiFor(opts: { orchestrator?: string; meta?: string }): OrchestratorClient {
  const conn = connectMeta(connectTarget(opts));
  openConnections.push(conn);
  return conn.api;
}

export function intArg(name: string, min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}

/** Runs a command body, printing a one-line error and exiting 1 on failure. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void) {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      let msg = (err as Error).message ?? String(err);
      if (err instanceof ApiError && err.status === 401 && !processCredential()) {
        msg += '\n  this command has no credential: pass --key-file FILE or set PRESAGE_KEY_FILE (an orchestrator writes its admin key to <its --dir>/admin.key at first start)';
      }
      process.stderr.write(`presage: ${msg}\n`);
      process.exit(1);
    } finally {
      await Promise.all(openConnections.splice(0).map((c) => c.close().catch(() => {})));
    }
  };
}


export function sizeArg(v: string): number {
  try {
    return parseSize(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function orchestratorUrl(opts: { orchestrator?: string }): string {
  return normaliseUrl(opts.orchestrator ?? DEFAULT_ORCHESTRATOR);
}

/** True when the user should see colour and progress bars. */
export const isTty = (stream: NodeJS.WriteStream = process.stdout) => stream.isTTY === true && !process.env.NO_COLOR;

export function printJson(data: unknown): void {
  process.stdout.write(JSON.stringify(data, null, 2) + '\n');
}
