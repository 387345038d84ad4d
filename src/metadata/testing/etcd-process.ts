// Starts a real, single-member etcd for tests and benchmarks: free loopback ports, a temporary data
// directory, waits for /health, and stops it (SIGTERM, then SIGKILL) and removes the directory.
// etcd is a Debian package (etcd-server); when it is missing we install it as root, or fail with
// what to run — tests never skip for want of it.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import type { Etcd3 } from 'etcd3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EtcdProcess {
  /** `http://127.0.0.1:<port>` (`https://` with TLS), for an Etcd3 client's `hosts`. */
  endpoint: string;
  /** `etcd://127.0.0.1:<port>` (`etcds://` with TLS), for `--meta`. */
  url: string;
  pid: number;
  /** SIGTERM, SIGKILL after 5 s, then removes the data directory. */
  stop(): Promise<void>;
  /** SIGKILL at once (a crash), then removes the data directory. */
  kill(): Promise<void>;
}

export interface StartEtcdOptions {
  /**
   * How often etcd tells idle watchers how far they are synced (default 100 ms). A watcher learns
   * that nothing changed under its prefix up to a revision only from these notifications.
   */
  progressNotifyMs?: number;
  /** Ops per txn etcd accepts (default 10000; etcd's own default is 128). */
  maxTxnOps?: number;
  /**
   * Client TLS (PEM file paths): etcd serves https with `cert`/`key`; with `clientCertAuth` it
   * also requires clients to present a certificate signed by `ca`. The health probe presents `cert`.
   */
  tls?: { ca: string; cert: string; key: string; clientCertAuth?: boolean };
}

let installTried = false;

function etcdInstalled(): boolean {
  return spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
}

function ensureEtcd(): void {
  if (etcdInstalled()) return;
  if (!installTried && process.getuid?.() === 0) {
    installTried = true;
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'etcd-server'], {
      stdio: 'ignore',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status === 0 && etcdInstalled()) return;
  }
  throw new Error('etcd is not installed: run scripts/install-deps.sh (as root) to install the Debian package etcd-server');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function killAllOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test that crashes must not leave etcd running on a shared 2-core machine.
  process.on('exit', () => {
    for (const c of running) c.kill('SIGKILL');
  });
}

async function healthy(endpoint: string, tls?: StartEtcdOptions['tls']): Promise<boolean> {
  if (tls) {
    return new Promise((resolve) => {
      const req = https.get(`${endpoint}/health`, { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key), timeout: 1000 }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(res.statusCode === 200 && /"health":\s*"true"/.test(body)));
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
    });
  }
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { health?: string };
    return res.ok && body.health === 'true';
  } catch {
    return false;
  }
}

async function startOnce(opts: StartEtcdOptions): Promise<EtcdProcess> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'presage-etcd-'));
  const endpoint = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name', 'presage-test',
    '--data-dir', join(dir, 'data'),
    '--listen-client-urls', endpoint,
    '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer,
    '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `presage-test=${peer}`,
    '--initial-cluster-state', 'new',
    '--max-txn-ops', String(opts.maxTxnOps ?? 10_000),
    '--max-request-bytes', String(32 * 1024 * 1024),
    '--quota-backend-bytes', String(8 * 1024 * 1024 * 1024),
    '--experimental-watch-progress-notify-interval', `${opts.progressNotifyMs ?? 100}ms`,
    '--log-level', 'error',
    '--logger', 'zap',
    ...(opts.tls ? ['--cert-file', opts.tls.cert, '--key-file', opts.tls.key, '--trusted-ca-file', opts.tls.ca, ...(opts.tls.clientCertAuth ? ['--client-cert-auth'] : [])] : []),
  ];
  const child = spawn('etcd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  killAllOnExit();
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      running.delete(child);
      resolve();
    }),
  );
  child.on('error', () => {}); // reported through 'exit' / the health wait

  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  const terminate = async (signal: NodeJS.Signals, graceMs: number) => {
    if (!exited) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    }
    cleanup();
  };

  const deadline = Date.now() + 20_000;
  while (!(await healthy(endpoint, opts.tls))) {
    if (exited || Date.now() > deadline) {
      await terminate('SIGKILL', 0);
      throw new Error(`etcd did not become healthy on ${endpoint}: ${stderr.trim().slice(-1500) || '(no output)'}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    endpoint,
    url: `${opts.tls ? 'etcds' : 'etcd'}://127.0.0.1:${clientPort}`,
    pid: child.pid!,
    stop: () => terminate('SIGTERM', 5000),
    kill: () => terminate('SIGKILL', 0),
  };
}

/** Starts etcd; retries twice when the picked ports were taken in between. */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdProcess> {
  ensureEtcd();
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

/**
 * Turns on etcd's RBAC as an operator would with etcdctl: a root user (and role) with
 * `rootPassword`, one user per entry of `users` with a role that may read and write only keys under
 * its `prefix`, then `auth enable`. `client` must be able to reach etcd (TLS options included).
 */
export async function enableEtcdAuth(client: Etcd3, rootPassword: string, users: { name: string; password: string; prefix: string }[]): Promise<void> {
  await client.role('root').create();
  await client.user('root').create(rootPassword);
  await client.user('root').addRole('root');
  for (const u of users) {
    const role = client.role(`${u.name}-rw`);
    await role.create();
    await role.grant({ permission: 'Readwrite', range: client.range({ prefix: u.prefix }) });
    await client.user(u.name).create(u.password);
    await client.user(u.name).addRole(role);
  }
  await client.auth.authEnable({});
}
