// Starts real Presage processes on loopback ports for integration tests: an orchestrator and
// storage servers, each a separate `node` process that tests can SIGKILL and restart.

import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { enableEtcdAuth, startEtcd, type EtcdProcess } from '../../src/metadata/testing/etcd-process.ts';
import { Etcd3 } from 'etcd3';
import { loadEtcdSecurity, setProcessEtcdSecurity } from '../../src/metadata/etcd-security.ts';
import { authHeader, newSecret, setProcessCredential, writeKeyFile, verifierOf, type Credential } from '../../src/auth/credentials.ts';
import { OrchestratorClient } from '../../src/api/orchestrator-client.ts';
import { httpJson } from '../../src/api/http.ts';
import { loadClusterTls, setProcessTls } from '../../src/common/cluster-tls.ts';
import { makeTestCerts, type TestCerts } from './tls-certs.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TSX_LOADER = `file://${REPO}/node_modules/tsx/dist/loader.mjs`;
const MAIN = path.join(REPO, 'src/cli/main.ts');

/** Argument vector that runs the presage CLI in this very process (no wrapper: signals reach it). */
export const presageArgv = (args: string[]) => ['--import', TSX_LOADER, MAIN, ...args];

let testAdmin: { file: string; cred: Credential } | undefined;

/**
 * The admin credential of this test process: one key file, made on first use, that every
 * cluster the process starts bootstraps its keyring with (the orchestrators inherit it through
 * PRESAGE_KEY_FILE), and that the test's own API calls, data connections and CLI runs carry.
 */
export function testAdminKey(): { file: string; cred: Credential } {
  if (!testAdmin) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-test-key-'));
    const cred = { name: 'admin', secret: newSecret() };
    const file = path.join(dir, 'admin.key');
    writeKeyFile(file, cred, 'admin');
    process.env.PRESAGE_KEY_FILE = file;
    setProcessCredential(cred);
    testAdmin = { file, cred };
  }
  return testAdmin;
}

/** fetch() as the test's admin (for the admin APIs that OrchestratorClient does not wrap). */
export function authedFetch(url: string, init: RequestInit = {}): Promise<Response> {
  testAdminKey();
  return fetch(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), ...authHeader() } });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface Proc {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<number | null>;
}

/** Spawns the CLI and resolves once a stdout line matches `ready` (or rejects if it exits first). */
export function spawnPresage(args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}, timeoutMs = 30000, nodeArgs: string[] = [], prefix: string[] = []): Promise<Proc> {
  // `prefix` wraps the command (e.g. ip netns exec NS): the wrapper execs node, so signals reach it.
  const argv = [...prefix.slice(1), ...(prefix.length ? [process.execPath] : []), ...nodeArgs, ...presageArgv(args)];
  const child = spawn(prefix[0] ?? process.execPath, argv, {
    cwd: REPO,
    env: { ...process.env, PRESAGE_LOG_LEVEL: process.env.PRESAGE_LOG_LEVEL ?? 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc: Proc = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? -1 : null)))),
  };
  child.stdout!.on('data', (d) => (proc.stdout += d));
  child.stderr!.on('data', (d) => (proc.stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`presage ${args[0]} not ready in ${timeoutMs} ms\nstdout: ${proc.stdout}\nstderr: ${proc.stderr}`));
    }, timeoutMs);
    const check = () => {
      if (ready.test(proc.stdout)) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve(proc);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`presage ${args[0]} exited with ${code} before ready\nstdout: ${proc.stdout}\nstderr: ${proc.stderr}`));
    });
  });
}

/** Runs a CLI command to completion. */
export function runPresage(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, presageArgv(args), { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`presage ${args.join(' ')} timed out\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ServerHandle {
  index: number;
  dir: string;
  port: number;
  adminPort: number;
  id: string;
  proc?: Proc;
  extraArgs: string[];
}

export interface ClusterOptions {
  servers: number;
  heartbeatTimeoutMs?: number;
  /**
   * The orchestrator's --down-out-delay. Default 0 here (repair at once, as the failover tests
   * expect); the product default (30 s) is tested where the delay itself is the subject.
   */
  downOutDelayMs?: number;
  /** Extra CLI arguments per server (e.g. --zone). */
  serverArgs?: (index: number) => string[];
  /** A server's --dir where it must be somewhere else (a small tmpfs); under the cluster's root otherwise. */
  serverDir?: (index: number, root: string) => string | undefined;
  /** Every server's --import-dir: the folder history imports by path may read (none by default). */
  importDir?: string;
  orchestratorArgs?: string[];
  /** Extra environment (e.g. PRESAGE_FAILPOINTS) for the orchestrator and for servers. */
  orchestratorEnv?: NodeJS.ProcessEnv;
  serverEnv?: NodeJS.ProcessEnv;
  /** Extra node flags for servers (e.g. --cpu-prof, which NODE_OPTIONS refuses). */
  serverNodeArgs?: string[];
  /** Metadata backend: the orchestrator's embedded store, or a real etcd started for the cluster. */
  meta?: MetaKind;
  /** Every process serves and talks TLS (a CA and a certificate made for the cluster). */
  tls?: boolean;
  /**
   * With meta 'etcd': etcd serves only TLS with client certificates and RBAC on (a `presage` user
   * that may touch only Presage's keys); every process gets --etcd-* through PRESAGE_ETCD_*.
   */
  etcdSecure?: boolean;
}

export type MetaKind = 'embedded' | 'etcd';

/** The backends integration tests run against (PRESAGE_TEST_META=embedded|etcd narrows it for a quick run). */
export function metaBackends(): MetaKind[] {
  const only = process.env.PRESAGE_TEST_META;
  if (only === 'embedded' || only === 'etcd') return [only];
  return ['embedded', 'etcd'];
}

export class TestCluster {
  readonly root: string;
  orchestratorPort = 0;
  orchestrator?: Proc;
  etcd?: EtcdProcess;
  readonly servers: ServerHandle[] = [];

  /** PRESAGE_TLS_* for every process of a TLS cluster (empty otherwise). */
  readonly tlsEnv: NodeJS.ProcessEnv = {};
  certs?: TestCerts;

  private constructor(private readonly opts: ClusterOptions) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-test-'));
    if (opts.tls || opts.etcdSecure) this.certs = makeTestCerts(path.join(this.root, 'certs'));
    if (opts.tls && this.certs) {
      this.tlsEnv = { PRESAGE_TLS_CA: this.certs.ca, PRESAGE_TLS_CERT: this.certs.cert, PRESAGE_TLS_KEY: this.certs.key };
      // This test process is a client of the cluster: it trusts the cluster's CA.
      setProcessTls(loadClusterTls({ ca: this.certs.ca }));
    }
  }

  static async start(opts: ClusterOptions): Promise<TestCluster> {
    testAdminKey();
    const c = new TestCluster(opts);
    try {
      if (opts.meta === 'etcd' && opts.etcdSecure) c.etcd = await c.startSecureEtcd();
      else if (opts.meta === 'etcd') c.etcd = await startEtcd();
      // Same port race as in startServer(): on EADDRINUSE at the first start, take another port.
      for (let attempt = 0; ; attempt++) {
        c.orchestratorPort = await freePort();
        try {
          await c.startOrchestrator();
          break;
        } catch (err) {
          if (attempt >= 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
        }
      }
      for (let i = 0; i < opts.servers; i++) {
        c.servers.push({ index: i, dir: opts.serverDir?.(i, c.root) ?? path.join(c.root, `server-${i}`), port: await freePort(), adminPort: await freePort(), id: '', extraArgs: opts.serverArgs?.(i) ?? [] });
      }
      await Promise.all(c.servers.map((s) => c.startServer(s.index)));
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  /** etcd with TLS, client certificates and RBAC; PRESAGE_ETCD_* of the `presage` user join tlsEnv. */
  private async startSecureEtcd(): Promise<EtcdProcess> {
    const certs = this.certs!;
    const etcd = await startEtcd({ tls: { ca: certs.ca, cert: certs.cert, key: certs.key, clientCertAuth: true } });
    const credentials = { rootCertificate: fs.readFileSync(certs.ca), certChain: fs.readFileSync(certs.cert), privateKey: fs.readFileSync(certs.key) };
    const admin = new Etcd3({ hosts: etcd.endpoint, credentials });
    const password = crypto.randomBytes(18).toString('base64url');
    const passwordFile = path.join(this.root, 'etcd-password');
    fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    try {
      await enableEtcdAuth(admin, crypto.randomBytes(18).toString('base64url'), [{ name: 'presage', password, prefix: '/presage' }]);
    } finally {
      admin.close();
    }
    Object.assign(this.tlsEnv, { PRESAGE_ETCD_CA: certs.ca, PRESAGE_ETCD_CERT: certs.cert, PRESAGE_ETCD_KEY: certs.key, PRESAGE_ETCD_USER: 'presage', PRESAGE_ETCD_PASSWORD_FILE: passwordFile });
    // This test process reads etcd too (tests inspect the store): as the same user.
    setProcessEtcdSecurity(loadEtcdSecurity({ ca: certs.ca, cert: certs.cert, key: certs.key, user: 'presage', passwordFile }));
    return etcd;
  }

  get url(): string {
    return `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${this.orchestratorPort}`;
  }

  get env(): NodeJS.ProcessEnv {
    return this.etcd ? { PRESAGE_ORCHESTRATOR: this.url, PRESAGE_META: this.etcd.url, ...this.tlsEnv } : { PRESAGE_ORCHESTRATOR: this.url, ...this.tlsEnv };
  }

  /** Points the processes started from now on at an etcd (after `presage meta migrate`); stop() kills it. */
  switchToEtcd(etcd: EtcdProcess): void {
    this.etcd = etcd;
  }

  /** The --meta arguments processes need ([] for the embedded store). */
  get metaArgs(): string[] {
    return this.etcd ? ['--meta', this.etcd.url] : [];
  }

  async startOrchestrator(): Promise<void> {
    const args = ['orchestrator', '--dir', path.join(this.root, 'orchestrator'), '--listen', `127.0.0.1:${this.orchestratorPort}`, ...this.metaArgs];
    if (this.opts.heartbeatTimeoutMs) args.push('--heartbeat-timeout', String(this.opts.heartbeatTimeoutMs));
    args.push('--down-out-delay', String(this.opts.downOutDelayMs ?? 0));
    this.orchestrator = await spawnPresage([...args, ...(this.opts.orchestratorArgs ?? [])], /orchestrator listening/, { ...this.tlsEnv, ...this.opts.orchestratorEnv });
    // With etcd it listens first as a standby and leads once elected (after a dead leader's lease expires).
    const until = Date.now() + 30000;
    for (;;) {
      const h = await httpJson<{ leader?: boolean }>(this.url, 'GET', '/healthz').catch(() => ({ leader: false }));
      if (h.leader) break;
      if (Date.now() > until) throw new Error('the orchestrator did not become leader in 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async startServer(index: number): Promise<ServerHandle> {
    // freePort() hands out a port that was free a moment ago; an outgoing connection can take it
    // as its local port before the server binds. Pick new ports then (only before its first start:
    // a restart must keep the addresses the cluster knows).
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.spawnServer(index);
      } catch (err) {
        if (attempt >= 3 || this.servers[index].id || !/EADDRINUSE/.test((err as Error).message)) throw err;
        this.servers[index].port = await freePort();
        this.servers[index].adminPort = await freePort();
      }
    }
  }

  /**
   * Each server acts as its own entity with the server role: its key is made on first start and
   * lies in its directory as server.key, where `presage server` finds it.
   */
  private async serverKey(s: ServerHandle): Promise<void> {
    const file = path.join(s.dir, 'server.key');
    if (fs.existsSync(file)) return;
    const cred = { name: `server-${s.index}`, secret: newSecret() };
    const api = new OrchestratorClient(this.url);
    try {
      await api.createEntity({ name: cred.name, role: 'server' }, verifierOf(cred.secret));
    } finally {
      api.close();
    }
    writeKeyFile(file, cred, 'server');
  }

  private async spawnServer(index: number): Promise<ServerHandle> {
    const s = this.servers[index];
    await this.serverKey(s);
    s.proc = await spawnPresage([
      // With etcd a server finds the active orchestrator through the leader election, so it follows a failover.
      'server', '--dir', s.dir, ...(this.etcd ? this.metaArgs : ['--orchestrator', this.url]),
      '--listen', `127.0.0.1:${s.port}`, '--admin', `127.0.0.1:${s.adminPort}`,
      ...(this.opts.importDir ? ['--import-dir', this.opts.importDir] : []), ...s.extraArgs,
      // Not the test's admin key: the server's own, from its directory.
    ], /serving data on/, { PRESAGE_KEY_FILE: '', ...this.tlsEnv, ...this.opts.serverEnv }, 30000, this.opts.serverNodeArgs);
    s.id = /server (\S+) serving/.exec(s.proc.stdout)![1];
    return s;
  }

  /** Sends a real signal and waits for the process to exit. */
  async kill(proc: Proc | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
    proc.child.kill(signal);
    await proc.exited;
  }

  async killServer(index: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.kill(this.servers[index].proc, signal);
    this.servers[index].proc = undefined;
  }

  async killOrchestrator(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.kill(this.orchestrator, signal);
    this.orchestrator = undefined;
  }

  serverById(id: string): ServerHandle {
    const s = this.servers.find((x) => x.id === id);
    if (!s) throw new Error(`no server ${id} in this cluster`);
    return s;
  }

  cli(args: string[]) {
    return runPresage(args, this.env);
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => this.kill(s.proc, 'SIGKILL')));
    await this.kill(this.orchestrator, 'SIGKILL');
    await this.etcd?.kill();
    if (!process.env.PRESAGE_KEEP_TEST_DIRS) fs.rmSync(this.root, { recursive: true, force: true });
  }
}
