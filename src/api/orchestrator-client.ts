// Typed client of the orchestrator's REST API, used by servers, the client library and the CLI.

import { CompactedError, type KvEvent, type KvRange, type KvStore } from '../metadata/kv.ts';
import type { VolumeRecord, VolumeSpec } from '../metadata/model.ts';
import type { Verifier } from '../auth/credentials.ts';
import type { EntitySpec, EntityView } from '../auth/keyring.ts';
import type { Identity } from '../auth/policy.ts';
import { ApiError, httpJson } from './http.ts';
import type { ClusterStatus, Decision, FailureLabel, FailureScoreReport, HeartbeatRequest, HeartbeatResponse, ModelsStatus, Operator, OperatorView, RegisterRequest, RegisterResponse, RetrainProgress, RetrainRun, SegmentView, SuspectResult } from './types.ts';

export class OrchestratorClient {
  /** Aborted by close(): ends long-polls at once so a closing process does not linger. */
  private readonly closing = new AbortController();

  private base?: string;

  /**
   * `target` is the orchestrator's URL, or a function that finds the active orchestrator (with
   * etcd, from the leader election); it is asked again when a call cannot reach the one it had
   * or is told "not the leader".
   */
  constructor(private readonly target: string | (() => Promise<string>)) {
    if (typeof target === 'string') this.base = target;
  }

  /** The URL calls currently go to (undefined until first resolved). */
  get baseUrl(): string | undefined {
    return this.base;
  }

  private async call<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    if (typeof this.target === 'string') return httpJson<T>(this.target, method, path, body, timeoutMs, this.closing.signal);
    for (let attempt = 0; ; attempt++) {
      this.base ??= await this.target();
      try {
        return await httpJson<T>(this.base, method, path, body, timeoutMs, this.closing.signal);
      } catch (err) {
        const moved = err instanceof ApiError && (err.status === 0 || (err.status === 503 && /not the leader/.test(err.message)));
        if (!moved || attempt >= 3 || this.closing.signal.aborted) throw err;
        this.base = undefined; // find the leader again
        await new Promise((r) => setTimeout(r, 200 * (attempt + 1)));
      }
    }
  }

  /** Cancels every call in flight (they reject); later calls fail at once. */
  close(): void {
    this.closing.abort();
  }

  health(): Promise<{ ok: boolean }> {
    return this.call('GET', '/healthz', undefined, 3000);
  }

  whoami(): Promise<Identity> {
    return this.call('GET', '/v1/auth/whoami');
  }

  entities(): Promise<EntityView[]> {
    return this.call('GET', '/v1/auth/entities');
  }

  /** Adds an entity with the verifier of a secret made by the caller (the secret stays with it). */
  createEntity(spec: EntitySpec, v: Verifier): Promise<EntityView> {
    const b64 = (x: Buffer) => x.toString('base64');
    return this.call('POST', '/v1/auth/entities', {
      ...spec,
      verifier: { storedKey: b64(v.storedKey), serverKey: b64(v.serverKey), tokenHash: b64(v.tokenHash), ...(v.signingKey ? { signingKey: b64(v.signingKey) } : {}) },
    });
  }

  /** One entity's role and grants (undefined if there is none by that name). */
  async entity(name: string): Promise<EntityView | undefined> {
    try {
      return await this.call<EntityView>('GET', `/v1/auth/entities/${encodeURIComponent(name)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  revokeEntity(name: string): Promise<EntityView> {
    return this.call('DELETE', `/v1/auth/entities/${encodeURIComponent(name)}`);
  }

  /** Lifts a server's binding to its entity and addresses (it moved, or its key was replaced). */
  rebindServer(id: string): Promise<unknown> {
    return this.call('DELETE', `/v1/servers/${encodeURIComponent(id)}/binding`);
  }

  register(req: RegisterRequest): Promise<RegisterResponse> {
    return this.call('POST', '/v1/servers', req);
  }

  heartbeat(id: string, req: HeartbeatRequest): Promise<HeartbeatResponse> {
    return this.call('POST', `/v1/servers/${encodeURIComponent(id)}/heartbeat`, req, 5000);
  }

  createVolume(spec: Partial<VolumeSpec> & { name: string; size: number }): Promise<VolumeRecord> {
    return this.call('POST', '/v1/volumes', spec, 60000);
  }

  listVolumes(): Promise<VolumeRecord[]> {
    return this.call('GET', '/v1/volumes');
  }

  getVolume(name: string): Promise<VolumeRecord> {
    return this.call('GET', `/v1/volumes/${encodeURIComponent(name)}`);
  }

  deleteVolume(name: string): Promise<{ deleted: string }> {
    return this.call('DELETE', `/v1/volumes/${encodeURIComponent(name)}`, undefined, 60000);
  }

  segments(volume: string): Promise<SegmentView[]> {
    return this.call('GET', `/v1/volumes/${encodeURIComponent(volume)}/segments`);
  }

  segment(segmentId: string): Promise<SegmentView> {
    return this.call('GET', `/v1/segments/${segmentId.split('/').map(encodeURIComponent).join('/')}`);
  }

  promote(segmentId: string, server: string): Promise<SegmentView> {
    return this.call('POST', `/v1/segments/${segmentId.split('/').map(encodeURIComponent).join('/')}/promote`, { server });
  }

  migrations(): Promise<OperatorView[]> {
    return this.call('GET', '/v1/migrations');
  }

  migrate(req: { segmentId: string; to?: string; from?: string }): Promise<Operator> {
    return this.call('POST', '/v1/migrations', req);
  }

  cancelMigration(id: string): Promise<{ cancelled: string }> {
    return this.call('DELETE', `/v1/migrations/${encodeURIComponent(id)}`);
  }

  drain(server: string, reason?: string): Promise<{ server: string; draining: boolean; remaining: number }> {
    return this.call('POST', `/v1/servers/${encodeURIComponent(server)}/drain`, { reason });
  }

  /** Reports a server this process could not reach; the orchestrator probes it and fails it over if nothing listens. */
  suspect(server: string, reportedBy: string): Promise<{ server: string; result: SuspectResult }> {
    return this.call('POST', `/v1/servers/${encodeURIComponent(server)}/suspect`, { reportedBy }, 3000);
  }

  undrain(server: string): Promise<{ server: string; draining: boolean; remaining: number }> {
    return this.call('DELETE', `/v1/servers/${encodeURIComponent(server)}/drain`);
  }

  events(since = 0): Promise<Decision[]> {
    return this.call('GET', `/v1/events?since=${since}`);
  }

  /**
   * Per-metric fail-slow reference (median/MAD pooled over the peers' per-minute means); with
   * `exclude`, over the other servers of that server's peer group.
   */
  fleetStats(exclude?: string, group?: string): Promise<Record<string, { median: number; mad: number; n: number }>> {
    const q = new URLSearchParams();
    if (exclude) q.set('exclude', exclude);
    if (group) q.set('group', group);
    const qs = q.size ? `?${q}` : '';
    return this.call('GET', `/v1/fleet/stats${qs}`, undefined, 3000);
  }

  failureScores(): Promise<FailureScoreReport[]> {
    return this.call('GET', '/v1/failure-scores');
  }

  failureScore(server: string): Promise<FailureScoreReport> {
    return this.call('GET', `/v1/servers/${encodeURIComponent(server)}/failure-score`);
  }

  /** The orchestrator's model, its last retrain and every server's model version. */
  models(): Promise<ModelsStatus> {
    return this.call('GET', '/v1/models');
  }

  /** Retrains now (pulls history, trains, validates, pushes if replaced); 409 while one runs. */
  retrain(): Promise<RetrainRun> {
    return this.call('POST', '/v1/models/retrain', undefined, 30 * 60_000);
  }

  /** The running retrain's stage and progress (GET /v1/models' `running`), null when none runs. */
  async retrainProgress(): Promise<RetrainProgress | null> {
    return (await this.models()).running;
  }

  labels(server?: string): Promise<FailureLabel[]> {
    return this.call('GET', `/v1/labels${server ? `?server=${encodeURIComponent(server)}` : ''}`);
  }

  addLabel(label: { server: string; mode: string; t?: number | string; cause?: string }): Promise<FailureLabel> {
    return this.call('POST', '/v1/labels', label);
  }

  status(): Promise<ClusterStatus> {
    return this.call('GET', '/v1/status');
  }

  /** Sets or clears the cluster's noout switch (re-replication of down servers held back). */
  setFlags(flags: { noout: boolean }): Promise<ClusterStatus['flags']> {
    return this.call('PUT', '/v1/flags', flags);
  }

  /** The metadata store as a watch source for KvReplica: range + long-polled changes. */
  kvSource(): Pick<KvStore, 'range' | 'changesSince'> {
    return {
      range: (prefix: string) => this.call<KvRange>('GET', `/v1/kv/range?prefix=${encodeURIComponent(prefix)}`, undefined, 120000),
      changesSince: async (prefix: string, after: number, timeoutMs: number) => {
        try {
          return await this.call<{ events: KvEvent[]; revision: number }>(
            'GET',
            `/v1/kv/changes?prefix=${encodeURIComponent(prefix)}&after=${after}&timeoutMs=${timeoutMs}`,
            undefined,
            timeoutMs + 10000,
          );
        } catch (err) {
          if (err instanceof ApiError && err.status === 410) throw new CompactedError(after, Number(/oldest kept: (\d+)/.exec(err.message)?.[1] ?? 0));
          throw err;
        }
      },
    };
  }
}

/**
 * Reports servers this process could not connect to (clients and primaries forwarding writes), at
 * most once a second per server and without waiting: the orchestrator probes them and fails them
 * over at once if nothing listens, instead of after the heartbeat timeout.
 */
export class SuspectReporter {
  private readonly last = new Map<string, number>();

  constructor(private readonly api: OrchestratorClient, private readonly reportedBy: string, private readonly everyMs = 1000) {}

  report(serverId: string): void {
    const now = Date.now();
    if (now - (this.last.get(serverId) ?? 0) < this.everyMs) return;
    this.last.set(serverId, now);
    this.api.suspect(serverId, this.reportedBy).catch(() => {});
  }
}
