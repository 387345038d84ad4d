// One storage server process: a data directory of segments, the data protocol, replication to
// peers, registration and heartbeats with the orchestrator, and an admin HTTP API.
//
// What it deletes, and on what evidence (docs/reliability.md): nothing while the metadata it
// follows is not its own cluster's (<dir>/cluster-id); a copy only once the metadata names other
// servers for it at an epoch newer than the last one that named this server (kept in the copy's
// .meta); a copy the metadata does not know at all goes to quarantine, never to deletion; a copy
// found damaged at start-up is never served, is reported, and is deleted once it was replaced.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { connectMeta, type MetaConnection } from '../api/connect.ts';
import { SuspectReporter, type OrchestratorClient } from '../api/orchestrator-client.ts';
import { ApiError } from '../api/http.ts';
import { AuthError, processCredential } from '../auth/credentials.ts';
import { requireAuthentication } from '../auth/http-auth.ts';
import { Keyring } from '../auth/keyring.ts';
import { serverTls } from '../common/cluster-tls.ts';
import { CONTROL_BODY_LIMIT, explainBodyLimits } from '../common/http-limits.ts';
import type { Logger } from '../common/log.ts';
import { silentLogger } from '../common/log.ts';
import { ClusterView } from '../metadata/cluster-view.ts';
import { KvReplica } from '../metadata/kv-replica.ts';
import { ROOT, SMT, type ServerRecord } from '../metadata/model.ts';
import { ConnectionPool, type LocalEndpoint } from '../protocol/connection.ts';
import type { Request, Response } from '../protocol/messages.ts';
import { SegmentStore } from '../segment-store/segment-store.ts';
import { CopyEngine, type CopyJobSpec } from './copy-engine.ts';
import { DataServer, type DataServerOptions } from './data-server.ts';
import { RequestHandler, type LeaseState } from './request-handler.ts';
import { Scrubber } from './scrubber.ts';
import { ServerScoring } from './scoring.ts';
import { FaultInjector } from './faults.ts';
import { ServerTelemetry } from './telemetry.ts';
import { registerTelemetryRoutes } from './telemetry-routes.ts';

/** The data port's limits against abuse (DataServerOptions; defaults there). */
export type DataPortLimits = Pick<DataServerOptions, 'inFlightBudgetBytes' | 'partialFrameBudgetBytes' | 'maxConnectionsPerPeer' | 'handshakeTimeoutMs' | 'idleTimeoutMs'>;

/** StorageServerOptions.orchestratorGraceMs's default: well past an orchestrator restart or election. */
export const DEFAULT_ORCHESTRATOR_GRACE_MS = 120_000;
/**
 * A server reports itself full for this long after its last write that found no space: long enough
 * that placement does not send the next copy straight back, short enough that freed space is used.
 */
const NO_SPACE_FULL_MS = 30_000;

export interface StorageServerOptions {
  dir: string;
  /** Limits of the data port (in-flight and partial-frame budgets, connections per peer, timeouts). */
  dataLimits?: DataPortLimits;
  /**
   * Register into whatever cluster the orchestrator serves, forgetting the one in <dir>/cluster-id
   * (after which copies that cluster's metadata does not know are garbage). Default: refuse.
   */
  joinNewCluster?: boolean;
  /** The orchestrator's URL; with etcd metadata it may be omitted (found by leader election). */
  orchestratorUrl?: string;
  /** "embedded" (default) or etcd://HOST:PORT[,…]: with etcd the server watches the SMT in etcd directly. */
  meta?: string;
  host: string;
  port: number;
  adminHost: string;
  adminPort: number;
  zone?: string;
  rack?: string;
  /** Bytes offered for segments; default: the size of the data directory's filesystem. */
  capacityBytes?: number;
  /** Server-wide cap on background copy bandwidth (bytes/s; 0 = unlimited). */
  copyBandwidth?: number;
  /** Concurrent copies this server runs as a destination. */
  maxConcurrentCopies?: number;
  /** Time between scrub passes (0 = no background scrub). */
  scrubIntervalMs?: number;
  /** Time between Failure Score computations (default 10 s). */
  scoreIntervalMs?: number;
  /** Compressed scoring clock (demos and tests only; 1 = real time). */
  scoreTimeScale?: number;
  /** Start from this model bundle file (default: the model directory's current, else the bundled default). */
  modelPath?: string;
  /** Fail-slow peer group (ServerScoring.peerGroup); default the whole fleet. */
  peerGroup?: string;
  /** How long a copy of a segment no longer assigned here is kept before deletion. */
  gcGraceMs?: number;
  /**
   * After its lease lapses (the orchestrator silent: paused, restarting, or cut off from this
   * server), how long the server keeps serving segments whose other replicas confirm each
   * request's epoch (RequestHandler). Default 120 s; 0 = stop serving when the lease lapses.
   */
  orchestratorGraceMs?: number;
  /** Enables the fault-injection API (/v1/faults); off by default. */
  allowFaults?: boolean;
  /**
   * The folder POST /v1/metrics/import {"path"} may read history files from (inside it only,
   * after resolving symlinks). Unset: imports take the data in the request body, never a path.
   */
  importDir?: string;
  /** Telemetry sampling interval (default 5000 ms). */
  telemetryIntervalMs?: number;
  /** Days of per-minute telemetry kept (default 35). */
  telemetryRetentionDays?: number;
  /** SMART device to read, 'auto' (the default: the data directory's disk) or false. */
  smartDevice?: string | 'auto' | false;
  logger?: Logger;
}

export class StorageServer {
  readonly id: string;
  readonly store: SegmentStore;
  private readonly log: Logger;
  private readonly orch: OrchestratorClient;
  private readonly meta: MetaConnection;
  private readonly replica: KvReplica;
  readonly view: ClusterView;
  /** Whom the data port and the admin API accept (the cluster's keyring, followed like the SMT). */
  readonly keyring: Keyring;
  private readonly peers = new ConnectionPool({ requestTimeoutMs: 10000 });
  private readonly data: DataServer;
  private readonly admin: FastifyInstance;
  readonly handler: RequestHandler;
  readonly copies: CopyEngine;
  readonly scrubber: Scrubber;
  readonly scoring: ServerScoring;
  readonly telemetry: ServerTelemetry;
  /** Present only with allowFaults. */
  readonly faults?: FaultInjector;
  private ready = false;
  private stopped = false;
  /** The cluster this server belongs to (<dir>/cluster-id; learnt at its first registration). */
  clusterId?: string;
  /** Set while the metadata followed is another cluster's (or none): nothing is garbage-collected then. */
  private foreignMetadataLogged = false;
  private lastRegisterError?: string;
  /** Per local copy, the highest SMT epoch at which this server was named for it (kept in its .meta). */
  private readonly heldEpoch = new Map<string, number>();
  /** Copies kept although the metadata no longer names this server, because it is not newer than the copy (logged once each). */
  private readonly keptNewer = new Set<string>();
  /** Copies in quarantine (reported in heartbeats). */
  quarantined = 0;
  private heartbeatTimer?: NodeJS.Timeout;
  /** Sends the next heartbeat now (set by the heartbeat loop; a beat in flight is not doubled). */
  private beatNow?: () => void;
  /** Segments whose writes found the disk full here, with when; reported until the orchestrator moved them. */
  private readonly noSpace = new Map<string, number>();
  /** When a write last found the disk full (kept apart: the reported copies may all have moved, the disk is still full). */
  private lastNoSpaceAt = 0;
  private gcTimer?: NodeJS.Timeout;
  /** Set by the orchestrator's heartbeat answers. */
  private heartbeatIntervalMs = 1000;
  private leaseMs = 8000;
  /** When the last acknowledged heartbeat was sent: the lease runs from there. */
  private leaseFrom = 0;
  private readonly unassignedSince = new Map<string, number>();
  dataAddr = '';
  adminAddr = '';

  private constructor(private readonly opts: StorageServerOptions) {
    this.log = opts.logger ?? silentLogger;
    fs.mkdirSync(opts.dir, { recursive: true });
    this.id = loadOrCreateId(opts.dir);
    if (opts.allowFaults) this.faults = new FaultInjector({ segments: () => this.store });
    this.store = new SegmentStore(opts.dir, this.faults ? { ioHook: this.faults.ioHook } : {});
    this.telemetry = new ServerTelemetry({
      dir: opts.dir,
      intervalMs: opts.telemetryIntervalMs,
      retentionDays: opts.telemetryRetentionDays,
      smartDevice: opts.smartDevice,
      segments: () => this.store.list(),
      scrubCorrupt: () => this.scrubber.stats.corruptFound,
      extraSource: this.faults ? () => this.faults!.metrics() : undefined,
      onError: (source, err) => this.log.debug({ source, err: (err as Error)?.message }, 'telemetry source failed'),
    });
    if (!processCredential()) {
      throw new AuthError('a storage server needs a credential with the server role: presage auth create NAME --role server --out FILE, then --key-file FILE (or PRESAGE_KEY_FILE)', 'ERR_PRESAGE_NO_CREDENTIAL');
    }
    this.meta = connectMeta(opts);
    this.keyring = new Keyring(this.meta.source, { onError: (err) => this.log.warn({ err: (err as Error).message }, 'keyring watch error; retrying') });
    this.orch = this.meta.api;
    this.replica = new KvReplica(this.meta.source, ROOT, {
      pollTimeoutMs: 20000,
      retryDelayMs: 500,
      onError: (err) => this.log.warn({ err: (err as Error).message }, 'metadata watch error; retrying'),
    });
    this.view = new ClusterView(this.replica);
    // Forwards in flight to a server just marked down (hung: connected, silent) fail now and the
    // client retries on the new replica set, instead of waiting out the 10 s request timeout.
    this.view.on('server-down', (s: ServerRecord) => this.peers.close(s.dataAddr));
    const unreachable = new SuspectReporter(this.orch, `server ${this.id}`);
    this.handler = new RequestHandler({
      serverId: this.id,
      store: this.store,
      view: this.view,
      peers: this.peers,
      log: this.log,
      isReady: () => this.ready,
      lease: () => this.leaseState(),
      onCorrupt: (segmentId) => this.scrubber.repairSoon(segmentId),
      onComplete: (op, status, bytes, ms, segmentId, flags) => this.telemetry.onComplete(op, status, bytes, ms, segmentId, flags),
      onReplicated: (segmentId, lagMs, forwardMs) => this.telemetry.onReplicated(segmentId, lagMs, forwardMs),
      onPeerUnreachable: (peer) => unreachable.report(peer),
      onNoSpace: (segmentId) => this.reportNoSpace(segmentId),
    });
    const parts = { serverId: this.id, store: this.store, view: this.view, peers: this.peers, handler: this.handler, log: this.log };
    this.copies = new CopyEngine({ ...parts, bandwidthBytesPerSec: opts.copyBandwidth, maxConcurrent: opts.maxConcurrentCopies });
    this.scrubber = new Scrubber(parts);
    this.data = new DataServer(this.serve, this.log, { ...opts.dataLimits, keyring: this.keyring });
    const tls = serverTls();
    // Small JSON by default; a model bundle and a history import set their own, larger limits.
    this.admin = Fastify({ logger: false, bodyLimit: CONTROL_BODY_LIMIT, forceCloseConnections: true, ...(tls ? { https: tls } : {}) }) as unknown as FastifyInstance;
    explainBodyLimits(this.admin);
    requireAuthentication(this.admin, this.keyring);
    this.adminRoutes();
    registerTelemetryRoutes(this.admin, { telemetry: this.telemetry, faults: this.faults, importDir: opts.importDir });
    this.scoring = new ServerScoring({
      serverId: this.id, dir: opts.dir, telemetry: this.telemetry, orch: this.orch, log: this.log,
      intervalMs: opts.scoreIntervalMs, timeScale: opts.scoreTimeScale, modelPath: opts.modelPath, peerGroup: opts.peerGroup,
      trustedSigner: (name) => this.keyring.trustedSigner(name),
    });
    this.scoring.register(this.admin);
  }

  /** One data-protocol request, as the data port and an in-process endpoint both answer it. */
  private readonly serve = (req: Request): Promise<Response> =>
    this.faults ? this.faults.aroundRequest(req, () => this.handler.handle(req)) : this.handler.handle(req);

  /** This server's request path for a client in the same process (an NBD export inside the server). */
  localEndpoint(): LocalEndpoint {
    return { address: this.dataAddr, handle: this.serve };
  }

  /** Remembers (in the copy's .meta) that the metadata named this server for it at `epoch`. */
  private recordHeld(id: string, epoch: number): void {
    if ((this.heldEpoch.get(id) ?? -1) >= epoch) return;
    this.heldEpoch.set(id, epoch);
    this.store.writeMeta(id, { heldEpoch: epoch }).catch((err) => this.log.debug({ err, id }, 'could not record the held epoch'));
  }

  private get clusterIdFile(): string {
    return path.join(this.opts.dir, 'cluster-id');
  }

  /**
   * Whether the metadata this server follows is its own cluster's. Only then may it delete copies
   * the metadata does not assign here: an empty or foreign store says nothing about our data.
   */
  private metadataIsOurs(): boolean {
    if (this.clusterId && this.view.cluster?.id === this.clusterId) {
      this.foreignMetadataLogged = false;
      return true;
    }
    if (!this.foreignMetadataLogged) {
      this.foreignMetadataLogged = true;
      this.log.error({ cluster: this.clusterId, metadataCluster: this.view.cluster?.id ?? null },
        'the metadata store is not this server\'s cluster: keeping every local copy and deleting nothing until it is');
    }
    return false;
  }

  static async start(opts: StorageServerOptions): Promise<StorageServer> {
    const s = new StorageServer(opts);
    try {
      s.clusterId = fs.readFileSync(s.clusterIdFile, 'utf8').trim() || undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await s.store.open();
    for (const id of s.store.list()) {
      const held = (await s.store.readMeta(id).catch(() => undefined))?.heldEpoch;
      if (typeof held === 'number') s.heldEpoch.set(id, held);
    }
    s.quarantined = (await s.store.listQuarantine()).length;
    s.telemetry.start();
    // Before the data port opens: a client reconnecting to a restarted server must not meet an
    // empty keyring (it would be refused for good, not asked to retry).
    await s.startWithRetry('the keyring', () => s.keyring.start());
    s.dataAddr = await s.data.listen(opts.host, opts.port);
    const adminUrl = await s.admin.listen({ host: opts.adminHost, port: opts.adminPort });
    s.adminAddr = adminUrl.replace(/^https?:\/\//, '');
    await s.registerWithRetry();
    s.leaseFrom = Date.now();
    await s.startWithRetry('metadata', () => s.replica.start());
    // A damaged copy the metadata no longer names here is worth nothing: removed at once, so that a
    // repair choosing this server starts from an empty file.
    const deleting = new Set<string>();
    const dropDamaged = () => {
      if (!s.metadataIsOurs()) return;
      for (const id of s.store.listDamaged().keys()) {
        const e = s.view.entry(id);
        if (!e || e.replicas.includes(s.id) || deleting.has(id)) continue;
        deleting.add(id);
        s.store.delete(id).then(() => s.log.info({ segment: id }, 'deleted a damaged copy that was replaced'), (err) => s.log.warn({ err, id }, 'could not delete a damaged copy'))
          .finally(() => deleting.delete(id));
      }
    };
    s.view.on('change', dropDamaged);
    s.view.on('reload', dropDamaged);
    s.view.on('change', (ev: { type: string; key: string }) => {
      // A deleted volume's segments are garbage: remove the local copies.
      if (ev.type === 'delete' && ev.key.startsWith(SMT) && s.metadataIsOurs()) {
        const segId = ev.key.slice(SMT.length);
        if (s.store.has(segId)) s.store.delete(segId).catch((err) => s.log.warn({ err, segId }, 'could not delete segment'));
      }
    });
    s.ready = true;
    s.heartbeatLoop();
    s.gcLoop();
    if ((opts.scrubIntervalMs ?? 0) > 0) s.scrubber.start(opts.scrubIntervalMs!);
    await s.scoring.start();
    s.log.info({ id: s.id, dataAddr: s.dataAddr, adminAddr: s.adminAddr, segments: s.store.list().length }, 'storage server ready');
    return s;
  }

  private capacity(): number {
    if (this.opts.capacityBytes) return this.opts.capacityBytes;
    const st = fs.statfsSync(this.opts.dir);
    return st.blocks * st.bsize;
  }

  private async registerWithRetry(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        const r = await this.orch.register({
          id: this.id,
          dataAddr: this.dataAddr,
          adminAddr: this.adminAddr,
          zone: this.opts.zone,
          rack: this.opts.rack,
          capacityBytes: this.capacity(),
          ...(this.clusterId && !this.opts.joinNewCluster ? { clusterId: this.clusterId } : {}),
        });
        if (r.clusterId && r.clusterId !== this.clusterId) {
          if (this.clusterId && !this.opts.joinNewCluster) throw new Error(`the orchestrator answered for cluster ${r.clusterId}, but this server belongs to cluster ${this.clusterId}`);
          writeFileDurably(this.clusterIdFile, `${r.clusterId}\n`);
          this.log.info({ cluster: r.clusterId, previous: this.clusterId ?? null }, 'joined the cluster');
          this.clusterId = r.clusterId;
        }
        return;
      } catch (err) {
        if (err instanceof ApiError && err.code === 'ERR_PRESAGE_FOREIGN_CLUSTER') throw new Error(`refused by the orchestrator: ${err.message}`);
        if (err instanceof ApiError && err.status === 409 && /no cluster identity yet/.test(err.message)) {
          await sleep(200);
          continue;
        }
        if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
        if (attempt % 10 === 0) this.log.warn({ err: (err as Error).message }, 'cannot register with the orchestrator yet; retrying');
        await sleep(Math.min(200 * 2 ** Math.min(attempt, 4), 2000));
      }
    }
  }

  /** Keeps trying to load a metadata copy (the orchestrator or etcd may not be up yet). */
  private async startWithRetry(what: string, start: () => Promise<void>): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await start();
        return;
      } catch (err) {
        // A refused credential will not get better by waiting: say so and stop.
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) throw new AuthError(`the orchestrator refused this server's credential: ${err.message}`, 'ERR_PRESAGE_UNAUTHENTICATED');
        if (attempt % 10 === 0) this.log.warn({ err: (err as Error).message }, `cannot load ${what} yet; retrying`);
        await sleep(500);
      }
    }
  }

  /** See HandlerContext.lease: valid, then (after the lease) a grace with confirmed epochs, then expired. */
  leaseState(now = Date.now()): LeaseState {
    const age = now - this.leaseFrom;
    if (age < this.leaseMs) return 'valid';
    if (this.leaseFrom > 0 && age < this.leaseMs + (this.opts.orchestratorGraceMs ?? DEFAULT_ORCHESTRATOR_GRACE_MS)) return 'grace';
    return 'expired';
  }

  /**
   * A write found the disk full. The next heartbeat (sent at once) names the segment, and the
   * orchestrator takes this copy out of its write set where another replica has room, and stops
   * placing data here while the server reports itself full.
   */
  private reportNoSpace(segmentId: string): void {
    const now = Date.now();
    const fresh = !this.noSpace.has(segmentId);
    if (!this.isFull(now)) this.log.warn({ segment: segmentId, dir: this.opts.dir }, 'the disk is full: writes to this server fail with ENOSPC until space is freed or its copies move');
    this.noSpace.set(segmentId, now);
    this.lastNoSpaceAt = now;
    if (fresh) this.beatNow?.();
  }

  /** Reported full for as long as writes kept failing for lack of space within the last NO_SPACE_FULL_MS. */
  private isFull(now = Date.now()): boolean {
    return this.lastNoSpaceAt > 0 && now - this.lastNoSpaceAt < NO_SPACE_FULL_MS;
  }

  /** The segments to report as full here: those the metadata still names this server for (at most 10 000). */
  private noSpaceReport(): string[] {
    const now = Date.now();
    const out: string[] = [];
    for (const [id, at] of this.noSpace) {
      const named = this.view.entry(id)?.replicas.includes(this.id) || this.view.entry(id)?.joining?.includes(this.id);
      if (!named || now - at > NO_SPACE_FULL_MS) this.noSpace.delete(id);
      else if (out.length < 10_000) out.push(id);
    }
    return out;
  }

  private heartbeatLoop(): void {
    let inFlight = false;
    let again = false; // asked for while a beat was in flight: the next one goes out at once
    this.beatNow = () => {
      if (this.stopped) return;
      if (inFlight) {
        again = true;
        return;
      }
      if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
      void beat();
    };
    const beat = async () => {
      if (this.stopped) return;
      inFlight = true;
      const sentAt = Date.now();
      try {
        // Damaged copies the metadata still names here: the orchestrator replaces them.
        // At most 10 000 a beat (what the orchestrator takes from one; the rest go in later beats),
        // which keeps the heartbeat well inside the orchestrator's 1 MiB body limit.
        const damaged = [...this.store.listDamaged().keys()].filter((id) => this.view.entry(id)?.replicas.includes(this.id)).slice(0, 10_000);
        const noSpace = this.noSpaceReport();
        const r = await this.orch.heartbeat(this.id, {
          usedBytes: 0, segments: this.store.list().length, quarantined: this.quarantined,
          ...(damaged.length ? { damaged } : {}), ...(noSpace.length ? { noSpace } : {}), ...(this.isFull() ? { full: true } : {}),
        });
        this.leaseFrom = sentAt;
        if (r.leaseMs > 0) this.leaseMs = r.leaseMs;
        if (r.intervalMs > 0) this.heartbeatIntervalMs = r.intervalMs;
      } catch (err) {
        // An orchestrator that lost our registration (fresh metadata) gets it again.
        if (err instanceof ApiError && err.status === 404) {
          await this.registerWithRetry().then(() => { this.lastRegisterError = undefined; }, (e: Error) => {
            if (e.message !== this.lastRegisterError) this.log.error({ err: e.message }, 'cannot register again with the orchestrator');
            this.lastRegisterError = e.message;
          });
        }
        else this.log.debug({ err: (err as Error).message }, 'heartbeat failed');
      }
      inFlight = false;
      if (!this.stopped) this.heartbeatTimer = setTimeout(beat, again ? 0 : this.heartbeatIntervalMs);
      again = false;
    };
    this.heartbeatTimer = setTimeout(beat, 0);
  }

  /**
   * Deletes local copies the SMT no longer assigns here (moved away while this server was down,
   * or after a migration), once they have stayed unassigned for a grace period.
   */
  private gcLoop(): void {
    const grace = this.opts.gcGraceMs ?? 30000;
    const tick = async () => {
      if (this.stopped) return;
      const now = Date.now();
      if (!this.metadataIsOurs()) {
        // No evidence about our copies: keep them all, and start each grace anew afterwards.
        this.unassignedSince.clear();
        if (!this.stopped) this.gcTimer = setTimeout(tick, Math.min(grace / 2, 5000) || 1000);
        return;
      }
      for (const id of this.store.list()) {
        const e = this.view.entry(id);
        const mine = e && (e.replicas.includes(this.id) || e.joining?.includes(this.id));
        if (mine) this.recordHeld(id, e.epoch);
        if (mine || this.copies.list().some((j) => j.segmentId === id && j.state === 'running')) {
          this.unassignedSince.delete(id);
          this.keptNewer.delete(id);
          continue;
        }
        // Evidence first: delete only a copy the metadata has moved on from (an entry newer than
        // the last one that named us); a copy the metadata does not know at all is set aside.
        const held = this.heldEpoch.get(id) ?? 0;
        if (e && e.epoch <= held) {
          if (!this.keptNewer.has(id)) {
            this.keptNewer.add(id);
            this.log.error({ segment: id, metadataEpoch: e.epoch, heldEpoch: held }, 'the metadata no longer names this server for a copy, but its entry is not newer than the copy (a restored or rolled-back store?): kept');
          }
          continue;
        }
        const since = this.unassignedSince.get(id) ?? now;
        this.unassignedSince.set(id, since);
        if (now - since < grace) continue;
        this.unassignedSince.delete(id);
        this.heldEpoch.delete(id);
        if (e) {
          await this.store.delete(id).catch((err) => this.log.warn({ err, id }, 'could not delete unassigned segment'));
          this.log.info({ segment: id, epoch: e.epoch }, 'deleted a copy no longer assigned to this server');
        } else {
          const where = await this.store.quarantine(id).catch((err) => this.log.warn({ err, id }, 'could not quarantine a copy'));
          if (where) {
            this.quarantined = (await this.store.listQuarantine()).length;
            this.log.warn({ segment: id, path: where }, 'the metadata does not know this copy at all: moved to quarantine (an admin purges it: presage quarantine purge)');
          }
        }
      }
      if (!this.stopped) this.gcTimer = setTimeout(tick, Math.min(grace / 2, 5000) || 1000);
    };
    this.gcTimer = setTimeout(tick, 1000);
  }

  private adminRoutes(): void {
    this.admin.get('/healthz', async (_req, reply) => {
      const body = { ok: this.ready, id: this.id, revision: this.view.revision };
      return this.ready ? body : reply.code(503).send(body);
    });
    this.admin.get('/v1/status', async () => ({
      id: this.id,
      dataAddr: this.dataAddr,
      ready: this.ready,
      lease: this.leaseState(),
      revision: this.view.revision,
      segments: this.store.list(),
      scrub: this.scrubber.stats,
      copies: this.copies.list().filter((j) => j.state === 'running'),
    }));
    this.admin.post('/v1/copy-jobs', async (req, reply) => {
      try {
        const spec = (req.body ?? {}) as CopyJobSpec;
        if (typeof spec.segmentId !== 'string') throw new Error('segmentId is required');
        return reply.code(202).send(this.copies.start(spec));
      } catch (err) {
        return reply.code(400).send({ error: (err as Error).message });
      }
    });
    this.admin.get('/v1/copy-jobs', async () => this.copies.list());
    // ?waitMs=N long-polls: the answer comes when the job finishes (or after N ms, at most 30 s).
    this.admin.get<{ Params: { id: string }; Querystring: { waitMs?: string } }>('/v1/copy-jobs/:id', async (req, reply) => {
      const wait = Math.min(30_000, Math.max(0, Number(req.query.waitMs ?? 0) || 0));
      return (await this.copies.whenFinished(req.params.id, wait)) ?? reply.code(404).send({ error: `no copy job ${req.params.id}` });
    });
    this.admin.delete<{ Params: { id: string } }>('/v1/copy-jobs/:id', async (req, reply) => (this.copies.cancel(req.params.id) ? { cancelled: req.params.id } : reply.code(404).send({ error: `no running copy job ${req.params.id}` })));
    // What this server has seen of each copy it holds (for `presage meta restore`'s freshness check).
    this.admin.get('/v1/held', async () => Object.fromEntries(this.heldEpoch));
    this.admin.get('/v1/quarantine', async () => this.store.listQuarantine());
    this.admin.delete<{ Querystring: { segment?: string } }>('/v1/quarantine', async (req) => {
      const purged = await this.store.purgeQuarantine(req.query.segment || undefined);
      this.quarantined = (await this.store.listQuarantine()).length;
      this.log.warn({ purged, segment: req.query.segment ?? null }, 'purged quarantined copies');
      return { purged, left: this.quarantined };
    });
    this.admin.post<{ Body: { segmentId?: string } }>('/v1/scrub', async (req) => {
      if (req.body?.segmentId) await this.scrubber.scrubSegment(req.body.segmentId);
      else await this.scrubber.scrubAll();
      return this.scrubber.stats;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.ready = false;
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    if (this.gcTimer) clearTimeout(this.gcTimer);
    this.scrubber.stop();
    this.scoring.stop();
    this.faults?.close();
    await this.data.close();
    await this.admin.close();
    this.peers.closeAll();
    const stopped = Promise.all([this.replica.stop(), this.keyring.stop()]);
    await this.meta.close();
    await stopped;
    await this.store.close();
    await this.telemetry.stop();
  }
}

function loadOrCreateId(dir: string): string {
  const file = path.join(dir, 'server.json');
  if (fs.existsSync(file)) {
    const data = JSON.parse(fs.readFileSync(file, 'utf8')) as { id?: string };
    if (typeof data.id === 'string' && data.id) return data.id;
    throw new Error(`${file} has no server id`);
  }
  const id = `srv-${crypto.randomBytes(4).toString('hex')}`;
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ id, createdAt: new Date().toISOString() }) + '\n');
  const fd = fs.openSync(tmp, 'r');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  return id;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes a small file so that it survives a crash: a temporary file, fsynced, renamed over it. */
function writeFileDurably(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
