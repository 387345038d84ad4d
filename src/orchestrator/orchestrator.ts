// The orchestrator process: owns the metadata store, serves the REST API that servers,
// clients and the CLI use, and tracks server liveness from heartbeats.

import path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Credential } from '../auth/credentials.ts';
import { processCredential, setProcessCredential } from '../auth/credentials.ts';
import { signJson } from '../auth/signed-json.ts';
import { identityOf, requireAuthentication } from '../auth/http-auth.ts';
import { AUTH_ROOT, Keyring } from '../auth/keyring.ts';
import { can } from '../auth/policy.ts';
import { serverTls } from '../common/cluster-tls.ts';
import { AddressError, checkServerAddress } from '../common/address.ts';
import { CONTROL_BODY_LIMIT, explainBodyLimits } from '../common/http-limits.ts';
import type { Logger } from '../common/log.ts';
import { silentLogger } from '../common/log.ts';
import { ClusterView } from '../metadata/cluster-view.ts';
import { ORCHESTRATOR_ELECTION, parseMetaOption } from '../metadata/backend.ts';
import { EmbeddedKvStore } from '../metadata/embedded-kv.ts';
import { EtcdKvStore } from '../metadata/etcd-kv.ts';
import { LeaderElection } from '../metadata/leader-election.ts';
import { CompactedError, type KvStore } from '../metadata/kv.ts';
import { KvReplica } from '../metadata/kv-replica.ts';
import { ROOT, segmentIdOf, type SmtEntry } from '../metadata/model.ts';
import type { ClusterStatus, HeartbeatRequest, RegisterRequest, SegmentView, ServerStatus } from '../api/types.ts';
import { DecisionLog } from './decision-log.ts';
import { DrainPolicy } from './drain-policy.ts';
import { FailoverController, type Liveness, type MarkDownPolicy } from './failover.ts';
import { FleetMonitor } from './fleet-monitor.ts';
import { PredictiveDrainPolicy, type PredictiveDrainConfig } from './predictive-drain.ts';
import { ConflictError, ForbiddenError, ForeignClusterError, LimitError, MetadataWriter, NotFoundError, type AdmissionLimits } from './metadata-writer.ts';
import { DirLock } from './dir-lock.ts';
import { OperatorController, type ControllerLimits } from './operator-controller.ts';
import { PRIORITY } from './operators.ts';
import { PlacementError, pickTarget } from './placement.ts';
import { registerOrchestratorMetrics } from './metrics.ts';
import { RetrainScheduler, type RetrainConfig } from './retrain-scheduler.ts';
import { bootstrapKeyring, registerAuthRoutes } from './auth-routes.ts';

export interface OrchestratorOptions {
  dir: string;
  /**
   * More routes on the orchestrator's HTTP server, registered after its own (the dashboard: it
   * sits above the orchestrator and plugs in here, so the orchestrator never imports it).
   */
  routes?: ((app: FastifyInstance) => void)[];
  /** Limits on volume creation (segments per volume and cluster, over-commit ratio). */
  admission?: Partial<AdmissionLimits>;
  host: string;
  port: number;
  logger?: Logger;
  /** A server with no heartbeat for this long is marked down and its segments fail over. */
  heartbeatTimeoutMs?: number;
  /** Limits on concurrent copies. */
  limits?: Partial<ControllerLimits>;
  /** Re-replicate segments that lost a replica (default true). */
  repair?: boolean;
  /** Mark-down limits: minimum up ratio, down → out delay, stall detection (DEFAULT_MARK_DOWN). */
  markDown?: Partial<MarkDownPolicy>;
  /** "embedded" (default: a file in `dir`) or etcd://HOST:PORT[,…] (several orchestrators, one leads). */
  meta?: string;
  /** Predictive drain settings (threshold, hysteresis, cap); `enabled: false` leaves only reactive failover. */
  predictive?: Partial<PredictiveDrainConfig>;
  /** How often servers' scores, heat and telemetry are polled. */
  scorePollMs?: number;
  /** With etcd: seconds a dead leader's lease survives before a standby takes over. */
  electionTtlSeconds?: number;
  /** With etcd: called if this orchestrator loses its leadership (the CLI exits, to restart as a standby). */
  onLostLeadership?: (reason: Error) => void;
  /** Retraining from the cluster's history and model distribution (interval, min days…; intervalMs 0 = on request only). */
  retrain?: Partial<RetrainConfig>;
  /**
   * Who this orchestrator is (an admin). Default: the process's credential, else the admin the
   * keyring bootstrap made (`<dir>/admin.key`); a process without one then acts as that admin.
   */
  credential?: Credential;
  /**
   * Accept server addresses that are not the registering machine's own (servers behind NAT,
   * whose announced address differs from the one they connect from). Default false: a server
   * may announce only the address its registration came from (common/address.ts).
   */
  allowAnyServerAddress?: boolean;
}

export class Orchestrator {
  readonly kv: KvStore;
  readonly view: ClusterView;
  readonly writer: MetadataWriter;
  readonly operators: OperatorController;
  readonly decisions: DecisionLog;
  readonly failover: FailoverController;
  readonly drain: DrainPolicy;
  readonly fleet: FleetMonitor;
  readonly predictive: PredictiveDrainPolicy;
  readonly retrain: RetrainScheduler;
  readonly keyring: Keyring;
  /** The admin credential this orchestrator acts as (set by start()). */
  credential?: Credential;
  /** The cluster identity of the metadata store (set by start()). */
  clusterId = '';
  private dirLock?: DirLock;
  private readonly replica: KvReplica;
  private readonly http: FastifyInstance;
  private readonly log: Logger;
  readonly liveness = new Map<string, Liveness>();
  readonly heartbeatTimeoutMs: number;
  private address = '';
  private election?: LeaderElection;
  /** Only the leader changes metadata and runs the controllers; a standby answers 503 with the leader's URL. */
  private leading = false;

  private constructor(private readonly opts: OrchestratorOptions, kv: KvStore) {
    this.log = opts.logger ?? silentLogger;
    this.kv = kv;
    this.replica = new KvReplica(kv, ROOT, { pollTimeoutMs: 30000, onError: (err) => this.log.warn({ err }, 'metadata watch error') });
    this.view = new ClusterView(this.replica);
    this.writer = new MetadataWriter(kv, this.view, opts.admission);
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 10000;
    this.decisions = new DecisionLog(this.log);
    this.operators = new OperatorController(kv, this.view, this.writer, this.log, opts.limits, this.decisions);
    this.failover = new FailoverController(kv, this.view, this.writer, this.operators, this.liveness, this.heartbeatTimeoutMs, this.log, opts.repair ?? true, this.decisions, opts.markDown);
    this.fleet = new FleetMonitor(this.view, this.log, opts.scorePollMs ?? 5000);
    this.predictive = new PredictiveDrainPolicy(this.view, () => this.fleet.scores, this.writer, this.decisions, this.log, opts.predictive);
    // Destinations: away from servers at the warning level, towards the less loaded.
    this.writer.setHealthSource((id) => ({ risky: (this.fleet.scores.get(id)?.score ?? 0) >= this.predictive.config.warning, load: this.fleet.serverLoad(id), full: this.liveness.get(id)?.full === true }));
    this.fleet.onPoll(() => {
      this.predictive.tick().catch((err) => this.log.error({ err }, 'predictive drain tick failed'));
    });
    // Hot, critical segments on the riskiest servers move first.
    this.drain = new DrainPolicy(this.view, this.writer, this.operators, this.log, (seg) => this.fleet.accessRate(seg), (srv) => this.predictive.risk(srv), this.decisions);
    // forceCloseConnections: stop() must not wait out idle keep-alive connections (72 s) of clients and servers.
    // HTTPS when the cluster speaks TLS (common/cluster-tls.ts).
    const tls = serverTls();
    // Every route takes small JSON (the largest, a heartbeat, lists at most 10 000 damaged
    // segments): 1 MiB, and an over-limit body is a 413 with a stable code (common/http-limits.ts).
    this.http = Fastify({ logger: false, bodyLimit: CONTROL_BODY_LIMIT, forceCloseConnections: true, ...(tls ? { https: tls } : {}) }) as unknown as FastifyInstance;
    explainBodyLimits(this.http);
    this.keyring = new Keyring(kv, { pollTimeoutMs: 30000, onError: (err) => this.log.warn({ err }, 'keyring watch error') });
    // First hook: nothing below runs for an unauthenticated or unauthorised request.
    requireAuthentication(this.http, this.keyring);
    // Retraining: labels from mark-downs, weekly retrain, pushes to servers (routes registered in routes()).
    this.retrain = new RetrainScheduler({ dir: opts.dir, kv, view: this.view, decisions: this.decisions, log: this.log, lastScore: (id) => this.fleet.scores.get(id),
      // Signed as the identity the orchestrator acts as (known once the keyring is bootstrapped).
      sign: (bundle) => signJson(bundle, this.credential!), config: opts.retrain });
    this.routes();
    for (const add of opts.routes ?? []) add(this.http);
  }

  static async start(opts: OrchestratorOptions): Promise<Orchestrator> {
    const backend = parseMetaOption(opts.meta);
    // Before anything is opened: a second orchestrator on this directory stops here.
    const lock = DirLock.acquire(opts.dir);
    let kv: KvStore;
    try {
      kv = backend.kind === 'etcd' ? EtcdKvStore.connect(backend.url) : EmbeddedKvStore.open(path.join(opts.dir, 'metadata.sqlite'));
    } catch (err) {
      lock.release();
      throw err;
    }
    const o = new Orchestrator(opts, kv);
    o.dirLock = lock;
    try {
      await o.replica.start();
      await o.keyring.start();
      const identity = await o.writer.ensureClusterIdentity();
      o.clusterId = identity.cluster.id;
      if (identity.created) o.log.info({ cluster: o.clusterId }, 'created a new cluster identity (new metadata store)');
      o.credential = await bootstrapKeyring(kv, o.keyring, opts.dir, o.log, opts.credential);
      // Its calls to servers (scores, copy jobs, model pushes) carry this identity.
      if (!processCredential()) setProcessCredential(o.credential);
      await o.retrain.init();
      o.address = await o.http.listen({ host: opts.host, port: opts.port });
      if (kv instanceof EtcdKvStore) {
        // The candidate id is our API URL, so servers and clients find the leader by reading the election.
        o.election = new LeaderElection(kv.client, ORCHESTRATOR_ELECTION, o.address, opts.electionTtlSeconds ?? 3);
      // Every write of ours is fenced by our leadership: once deposed, none lands.
      const election = o.election;
      kv.fence = () => election.fence;
        o.election.onLost((reason) => {
          o.log.error({ reason: reason.message }, 'lost leadership');
          o.leading = false;
          o.stopControllers();
          opts.onLostLeadership?.(reason);
        });
        o.log.info({ address: o.address }, 'orchestrator listening as a standby; campaigning for leadership');
        o.election.campaign().then(() => o.lead(), (err) => o.log.warn({ err: (err as Error).message }, 'campaign ended'));
      } else {
        await o.lead();
      }
    } catch (err) {
      // A start that fails part way leaves nothing held (an in-process retry must not meet its own lock).
      o.stopControllers();
      await o.http.close().catch(() => {});
      await o.replica.stop().catch(() => {});
      await o.keyring.stop().catch(() => {});
      await kv.close().catch(() => {});
      lock.release();
      throw err;
    }
    o.log.info({ address: o.address, revision: o.view.revision }, 'orchestrator listening');
    return o;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Becomes the active orchestrator: persisted operators resume, failover and drains run. */
  private async lead(): Promise<void> {
    await this.view.refresh();
    await this.operators.start();
    this.failover.start();
    this.drain.start();
    this.fleet.start();
    this.retrain.start();
    this.leading = true;
    this.log.info({ address: this.address }, 'leading');
  }

  private stopControllers(): void {
    this.retrain.stop();
    this.fleet.stop();
    this.failover.stop();
    this.drain.stop();
    this.operators.stop();
  }

  get url(): string {
    return this.address;
  }

  async stop(): Promise<void> {
    this.stopControllers();
    await this.election?.resign().catch(() => {});
    await this.http.close();
    await this.retrain.flushLabels();
    await this.replica.stop();
    await this.keyring.stop();
    await this.kv.close();
    this.dirLock?.release();
  }

  status(): ClusterStatus {
    const now = Date.now();
    const assigned = this.writer.assignedBytes();
    const perServer = new Map<string, { segments: number; primaries: number }>();
    let degraded = 0;
    const degradedPerVolume = new Map<string, number>();
    for (const [segId, e] of this.view.smt) {
      e.replicas.forEach((s, i) => {
        const c = perServer.get(s) ?? { segments: 0, primaries: 0 };
        c.segments++;
        if (i === 0) c.primaries++;
        perServer.set(s, c);
      });
      if (this.isDegraded(segId, e)) {
        degraded++;
        const vol = segId.slice(0, segId.lastIndexOf('/'));
        degradedPerVolume.set(vol, (degradedPerVolume.get(vol) ?? 0) + 1);
      }
    }
    const servers: ServerStatus[] = [...this.view.servers.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((s) => {
        const live = this.liveness.get(s.id);
        return {
          ...s,
          lastHeartbeatAgoMs: live ? now - live.at : undefined,
          segments: perServer.get(s.id)?.segments ?? 0,
          primaries: perServer.get(s.id)?.primaries ?? 0,
          assignedBytes: assigned.get(s.id) ?? 0,
          usedBytes: live?.usedBytes,
          ...(live?.quarantined ? { quarantined: live.quarantined } : {}),
        };
      });
    const volumes = [...this.view.volumes.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((v) => ({ ...v, degradedSegments: degradedPerVolume.get(v.name) ?? 0 }));
    return {
      revision: this.view.revision, servers, volumes, segments: { total: this.view.smt.size, degraded }, operators: this.operators.list(),
      flags: this.flagsView(), waitingOut: this.failover.waitingOut(now),
    };
  }

  /** The operator switches as status and /v1/flags show them (without walking the whole SMT). */
  private flagsView(): ClusterStatus['flags'] {
    const f = this.view.flags;
    return { noout: !!f.noout, ...(f.setBy ? { setBy: f.setBy, setAt: f.setAt } : {}) };
  }

  /** A manual migration: moves `from` (default: the primary) of a segment to `to` (default: chosen by placement). */
  async migrate(req: { segmentId?: string; to?: string; from?: string }) {
    if (typeof req.segmentId !== 'string') throw new Error('segmentId is required');
    await this.view.refresh();
    const e = this.view.entry(req.segmentId);
    if (!e) throw new NotFoundError(`no segment ${req.segmentId}`);
    const from = req.from ?? e.replicas[0];
    if (!e.replicas.includes(from)) throw new ConflictError(`${from} does not hold ${req.segmentId}`);
    let to = req.to;
    if (!to) {
      const vol = this.view.volumes.get(req.segmentId.slice(0, req.segmentId.lastIndexOf('/')))!;
      to = pickTarget(this.writer.placementCandidates(new Set(), this.operators.pendingTargets()), e, vol.segmentSize, req.segmentId, from);
    } else if (!this.view.servers.has(to)) {
      throw new NotFoundError(`no server ${to}`);
    }
    return this.operators.propose({ segmentId: req.segmentId, kind: 'migrate', target: to, remove: from, priority: PRIORITY.manual, reason: `moved by hand from ${from}`, source: 'user' });
  }

  /** Fewer live replicas than the volume asks for. */
  isDegraded(segmentId: string, e: SmtEntry): boolean {
    const vol = this.view.volumes.get(segmentId.slice(0, segmentId.lastIndexOf('/')));
    const up = e.replicas.filter((s) => this.view.servers.get(s)?.state === 'up').length;
    return e.state === 'degraded' || (vol !== undefined && up < vol.replicas);
  }

  private routes(): void {
    const app = this.http;
    const fail = (reply: FastifyReply, err: unknown) => {
      const e = err as Error;
      const code = e instanceof NotFoundError ? 404
        : e instanceof ForbiddenError ? 403
        : e instanceof ConflictError ? 409
        : e instanceof LimitError ? 422
          : e instanceof PlacementError ? 503
            : 400;
      const stable = (e as { code?: unknown }).code;
      return reply.code(code).send({ error: e.message, ...(typeof stable === 'string' ? { code: stable } : {}) });
    };
    app.get('/healthz', async () => ({ ok: true, leader: this.leading, revision: this.view.revision }));
    // A standby serves only /healthz and /metrics; everything else goes to the leader.
    app.addHook('onRequest', async (req, reply) => {
      if (this.leading || req.url === '/healthz' || req.url === '/metrics') return;
      const leader = await this.election?.leader().catch(() => undefined);
      return reply.code(503).send({ error: `not the leader; the leader is ${leader ?? 'being elected'}`, leader });
    });
    registerOrchestratorMetrics(app, this);

    app.post('/v1/servers', async (req, reply) => {
      try {
        // The orchestrator and clients later fetch from and connect to these addresses: each must
        // be exactly HOST:PORT and, unless --allow-any-server-address, the sending machine's own
        // (else any peer with a server key could aim the orchestrator at any URL: SSRF).
        const b = (req.body ?? {}) as Partial<RegisterRequest>;
        const source = this.opts.allowAnyServerAddress ? undefined : req.socket.remoteAddress ?? '';
        for (const what of ['dataAddr', 'adminAddr'] as const) await checkServerAddress(b[what], what, { source });
        const r = await this.writer.registerServer(req.body as RegisterRequest, identityOf(req)!.name).catch((err: unknown) => {
          if (err instanceof ForeignClusterError) this.log.error({ server: (req.body as RegisterRequest).id, err: err.message }, 'refused a server of another cluster');
          throw err;
        });
        this.liveness.set(r.id, { at: Date.now(), usedBytes: 0, segments: 0 });
        this.log.info({ server: r.id, dataAddr: (req.body as RegisterRequest).dataAddr }, 'server registered');
        return r;
      } catch (err) {
        if (err instanceof AddressError) {
          this.log.warn({ server: (req.body as RegisterRequest | undefined)?.id, from: req.socket.remoteAddress, err: err.message }, 'refused a server registration: bad address');
          return reply.code(err.status).send({ error: err.message, code: err.code });
        }
        return fail(reply, err);
      }
    });
    app.post<{ Params: { id: string } }>('/v1/servers/:id/heartbeat', async (req, reply) => {
      const id = req.params.id;
      const rec = this.view.servers.get(id);
      if (!rec) return reply.code(404).send({ error: `no server ${id}; register first` });
      const who = identityOf(req)!;
      if (rec.credential && rec.credential !== who.name && who.role !== 'admin') return reply.code(403).send({ error: `server ${id} is registered by ${rec.credential}, not ${who.name}` });
      const b = (req.body ?? {}) as Partial<HeartbeatRequest>;
      const quarantined = Math.max(0, Math.floor(Number(b.quarantined) || 0));
      const before = this.liveness.get(id)?.quarantined ?? 0;
      const wasFull = this.liveness.get(id)?.full === true;
      const full = b.full === true;
      this.liveness.set(id, { at: Date.now(), usedBytes: Number(b.usedBytes) || 0, segments: Number(b.segments) || 0, quarantined, ...(full ? { full } : {}) });
      if (full !== wasFull) {
        this.log[full ? 'warn' : 'info']({ server: id }, full ? 'server reports its disk full: no new data is placed there' : 'server has room again');
        this.decisions.record({ type: 'no-space', segmentId: '', server: id, reason: full ? `${id} reports writes failing for lack of space: placement passes it over, and copies with a replica elsewhere leave its write sets` : `${id} has had no write fail for lack of space lately: placement may use it again` });
      }
      if (quarantined > before) {
        this.decisions.record({ type: 'quarantined', segmentId: '', server: id, reason: `${id} set aside ${quarantined - before} cop${quarantined - before === 1 ? 'y' : 'ies'} the metadata does not know (${quarantined} in quarantine; presage quarantine list)` });
      }
      if (this.view.servers.get(id)?.state === 'down') await this.failover.markUp(id);
      if (Array.isArray(b.damaged) && b.damaged.length > 0 && this.leading) {
        const ids = b.damaged.filter((x): x is string => typeof x === 'string').slice(0, 10000);
        this.failover.dropDamagedCopies(id, ids).catch((err) => this.log.warn({ server: id, err: (err as Error).message }, 'could not drop damaged copies; retried at the next heartbeat'));
      }
      if (Array.isArray(b.noSpace) && b.noSpace.length > 0 && this.leading) {
        const ids = b.noSpace.filter((x): x is string => typeof x === 'string').slice(0, 10000);
        this.failover.dropFullCopies(id, ids).catch((err) => this.log.warn({ server: id, err: (err as Error).message }, 'could not move full copies out of write sets; retried at the next heartbeat'));
      }
      // The lease ends well before the orchestrator would declare the server down, so a
      // partitioned server stops serving before its segments can move elsewhere.
      return { ok: true, leaseMs: Math.floor(this.heartbeatTimeoutMs * 0.8), intervalMs: Math.max(100, Math.min(1000, Math.floor(this.heartbeatTimeoutMs / 5))) };
    });
    app.get('/v1/servers', async () => this.status().servers);
    // Operator switches (noout: hold re-replication back during planned maintenance).
    app.get('/v1/flags', async () => this.flagsView());
    app.put('/v1/flags', async (req, reply) => {
      try {
        const b = (req.body ?? {}) as { noout?: unknown };
        const flags = await this.writer.setFlags({ noout: b.noout as boolean }, identityOf(req)?.name ?? 'anonymous');
        this.decisions.record({ type: 'flags', segmentId: '', server: '', reason: `noout ${flags.noout ? 'set' : 'cleared'} by ${flags.setBy}${flags.noout ? ': servers marked down are not re-replicated until it is cleared' : ''}` });
        return this.flagsView();
      } catch (err) {
        return fail(reply, err);
      }
    });

    app.post('/v1/volumes', async (req, reply) => {
      try {
        const vol = await this.writer.createVolume((req.body ?? {}) as Record<string, never>);
        this.log.info({ volume: vol.name, size: vol.size, segments: vol.segmentCount }, 'volume created');
        return reply.code(201).send(vol);
      } catch (err) {
        return fail(reply, err);
      }
    });
    app.get('/v1/volumes', async () => [...this.view.volumes.values()].sort((a, b) => a.name.localeCompare(b.name)));
    app.get<{ Params: { name: string } }>('/v1/volumes/:name', async (req, reply) => {
      const v = this.view.volumes.get(req.params.name);
      return v ?? reply.code(404).send({ error: `no volume ${req.params.name}` });
    });
    app.get<{ Params: { name: string } }>('/v1/volumes/:name/segments', async (req, reply) => {
      const v = this.view.volumes.get(req.params.name);
      if (!v) return reply.code(404).send({ error: `no volume ${req.params.name}` });
      const out: SegmentView[] = [];
      for (let i = 0; i < v.segmentCount; i++) {
        const id = segmentIdOf(v.name, i);
        const e = this.view.entry(id);
        if (e) out.push({ segmentId: id, ...e });
      }
      return out;
    });
    app.delete<{ Params: { name: string } }>('/v1/volumes/:name', async (req, reply) => {
      try {
        await this.writer.deleteVolume(req.params.name);
        this.log.info({ volume: req.params.name }, 'volume deleted');
        return { deleted: req.params.name };
      } catch (err) {
        return fail(reply, err);
      }
    });
    app.get('/v1/status', async () => this.status());
    app.get('/v1/operators', async () => this.operators.list());
    app.get('/v1/failure-scores', async () => [...this.fleet.scores.values()].sort((a, b) => b.score - a.score));
    app.get<{ Params: { id: string } }>('/v1/servers/:id/failure-score', async (req, reply) => {
      if (!this.view.servers.has(req.params.id)) return reply.code(404).send({ error: `no server ${req.params.id}` });
      return this.fleet.scores.get(req.params.id) ?? reply.code(404).send({ error: `no score from ${req.params.id} yet` });
    });
    app.get<{ Querystring: { server?: string } }>('/v1/failure-scores/history', async (req) => {
      const out: Record<string, unknown> = {};
      for (const [id, h] of this.fleet.history) if (!req.query.server || req.query.server === id) out[id] = h;
      return out;
    });
    app.get('/v1/fleet/stats', async (req) => {
      const q = req.query as { exclude?: unknown; group?: unknown };
      const str = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 256 ? v : undefined);
      return this.fleet.fleetStats(str(q.exclude), str(q.group));
    });
    app.get<{ Querystring: { limit?: string } }>('/v1/segments/heat', async (req) => this.fleet.segmentHeat(Number(req.query.limit) || 100000));
    app.get('/v1/migrations', async () => this.operators.list());
    app.post<{ Body: { segmentId?: string; to?: string; from?: string } }>('/v1/migrations', async (req, reply) => {
      try {
        const r = await this.migrate(req.body ?? {});
        return r.accepted ? reply.code(201).send(r.operator) : reply.code(409).send({ error: r.reason, existing: r.existing });
      } catch (err) {
        return fail(reply, err);
      }
    });
    app.delete<{ Params: { id: string } }>('/v1/migrations/:id', async (req, reply) => {
      const ok = await this.operators.cancel(decodeURIComponent(req.params.id));
      return ok ? { cancelled: req.params.id } : reply.code(404).send({ error: `no migration ${req.params.id}` });
    });
    app.post<{ Params: { id: string }; Body: { reason?: string } }>('/v1/servers/:id/drain', async (req, reply) => {
      try {
        const rec = await this.writer.setDraining(req.params.id, true, req.body?.reason ?? 'drain requested by user');
        this.log.info({ server: rec.id }, 'draining');
        await this.drain.tick();
        return { server: rec.id, draining: true, remaining: this.drain.remaining(rec.id) };
      } catch (err) {
        return fail(reply, err);
      }
    });
    // A client or server could not reach this server: probe it; refused → failover now.
    app.post<{ Params: { id: string }; Body: { reportedBy?: string } }>('/v1/servers/:id/suspect', async (req, reply) => {
      const by = typeof req.body?.reportedBy === 'string' ? req.body.reportedBy.slice(0, 200) : 'a client';
      if (!this.view.servers.has(req.params.id)) return reply.code(404).send({ error: `no server ${req.params.id}` });
      return { server: req.params.id, result: await this.failover.suspect(req.params.id, by) };
    });
    app.delete<{ Params: { id: string } }>('/v1/servers/:id/drain', async (req, reply) => {
      try {
        const rec = await this.writer.setDraining(req.params.id, false);
        return { server: rec.id, draining: false, remaining: this.drain.remaining(rec.id) };
      } catch (err) {
        return fail(reply, err);
      }
    });
    app.get<{ Querystring: { since?: string; limit?: string } }>('/v1/events', async (req) => this.decisions.list(Number(req.query.since) || 0, Math.min(Number(req.query.limit) || 1000, 5000)));
    app.delete<{ Params: { id: string } }>('/v1/operators/:id', async (req, reply) => {
      const ok = await this.operators.cancel(decodeURIComponent(req.params.id));
      return ok ? { cancelled: req.params.id } : reply.code(404).send({ error: `no operator ${req.params.id}` });
    });
    app.get<{ Params: { volume: string; index: string } }>('/v1/segments/:volume/:index', async (req, reply) => {
      const id = `${req.params.volume}/${req.params.index}`;
      const e = this.view.entry(id);
      return e ? { segmentId: id, ...e } : reply.code(404).send({ error: `no segment ${id}` });
    });
    app.post<{ Params: { volume: string; index: string }; Body: { server?: string } }>('/v1/segments/:volume/:index/promote', async (req, reply) => {
      const id = `${req.params.volume}/${req.params.index}`;
      try {
        if (typeof req.body?.server !== 'string') throw new Error('body must name the replica to promote: {"server": ID}');
        const e = await this.writer.promote(id, req.body.server);
        this.log.info({ segment: id, primary: e.replicas[0], epoch: e.epoch }, 'primary changed');
        return { segmentId: id, ...e };
      } catch (err) {
        return fail(reply, err);
      }
    });

    this.retrain.register(app);
    registerAuthRoutes(app, this.kv, this.keyring, this.writer);

    // The SMT and cluster records are for every identity; the keyring's verifiers only for
    // servers (which check clients against them) and admins; anything else only for admins.
    const kvRefusal = (req: FastifyRequest, prefix: string): string | undefined => {
      const who = identityOf(req)!;
      if (prefix.startsWith(ROOT)) return undefined;
      if (prefix.startsWith(AUTH_ROOT) && can(who, 'serve')) return undefined;
      if (can(who, 'admin')) return undefined;
      return `${who.name} (role ${who.role}) may not read ${prefix}`;
    };
    app.get<{ Querystring: { prefix?: string } }>('/v1/kv/range', async (req, reply) => {
      const prefix = req.query.prefix ?? ROOT;
      const refusal = kvRefusal(req, prefix);
      if (refusal) return reply.code(403).send({ error: refusal, code: 'ERR_PRESAGE_FORBIDDEN' });
      return this.kv.range(prefix);
    });
    app.get<{ Querystring: { prefix?: string; after?: string; timeoutMs?: string } }>('/v1/kv/changes', async (req, reply) => {
      const refusal = kvRefusal(req, req.query.prefix ?? ROOT);
      if (refusal) return reply.code(403).send({ error: refusal, code: 'ERR_PRESAGE_FORBIDDEN' });
      const after = Number(req.query.after);
      const timeoutMs = Math.min(Math.max(Number(req.query.timeoutMs ?? 0) || 0, 0), 60000);
      if (!Number.isSafeInteger(after) || after < 0) return reply.code(400).send({ error: 'after must be a revision' });
      try {
        return await this.kv.changesSince(req.query.prefix ?? ROOT, after, timeoutMs);
      } catch (err) {
        if (err instanceof CompactedError) return reply.code(410).send({ error: err.message });
        throw err;
      }
    });
  }
}
