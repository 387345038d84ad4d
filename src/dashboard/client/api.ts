// Fetching the orchestrator's JSON API from the browser. Endpoints that do not exist yet
// (404) answer `null`, so the dashboard shows an empty state instead of an error.

import type { ClusterStatus, FailureScoreReport, SegmentView } from '../../api/types.ts';
import type { OperatorEvent } from '../../orchestrator/operator-controller.ts';
import type { SegmentHeat, Snapshot } from './model.ts';

/**
 * The bearer token (`presage auth token` prints one). Kept in this browser's localStorage once
 * given, or taken from the page's `#token=` fragment (never sent to a server, so it stays out
 * of access logs), which is then removed from the address bar.
 */
const TOKEN_KEY = 'presage-token';

export const token = {
  get: (): string | null => localStorage.getItem(TOKEN_KEY),
  set: (t: string) => localStorage.setItem(TOKEN_KEY, t.trim()),
  clear: () => localStorage.removeItem(TOKEN_KEY),
  /** Moves a `#token=…` fragment into storage. */
  fromFragment: () => {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!m) return;
    token.set(decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  },
};

/** The orchestrator refused the token (or there is none): the page asks for one. */
export class UnauthorizedError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
    this.name = 'UnauthorizedError';
  }
}

export async function getJson<T>(path: string, timeoutMs = 8000): Promise<T | null> {
  const t = token.get();
  const res = await fetch(path, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json', ...(t ? { authorization: `Bearer ${t}` } : {}) } });
  if (res.status === 401 || res.status === 403) {
    const body = (await res.json().catch(() => ({}))) as { error?: string };
    throw new UnauthorizedError(body.error ?? `HTTP ${res.status}`, res.status);
  }
  if (res.status === 404 || res.status === 501) return null;
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Polls the orchestrator. The SMT (every segment of every volume) is the only large answer:
 * it is refetched every poll on small clusters and less often on big ones, where placement
 * changes slowly relative to its size.
 */
export class ApiSource {
  private segments: SegmentView[] | null = null;
  private segmentsAt = 0;
  private segmentsRevision = -1;
  /** Optional endpoints that answered 404 are retried only every so often. */
  private missingUntil = new Map<string, number>();

  constructor(private readonly base = '') {}

  async poll(): Promise<Snapshot> {
    const [status, events, scores, heat] = await Promise.all([
      getJson<ClusterStatus>(`${this.base}/v1/status`),
      getJson<OperatorEvent[]>(`${this.base}/v1/events`),
      this.optional<FailureScoreReport[]>('/v1/failure-scores'),
      this.optional<SegmentHeat[]>('/v1/segments/heat'),
    ]);
    if (!status) throw new Error('/v1/status: not found — is this an orchestrator?');
    const now = Date.now();
    const every = status.segments.total > 20000 ? 15000 : status.segments.total > 2000 ? 5000 : 0;
    if (this.segments === null || (status.revision !== this.segmentsRevision && now - this.segmentsAt >= every)) {
      const lists = await mapLimit(status.volumes, 6, (v) => getJson<SegmentView[]>(`${this.base}/v1/volumes/${encodeURIComponent(v.name)}/segments`).then((x) => x ?? []));
      this.segments = lists.flat();
      this.segmentsAt = now;
      this.segmentsRevision = status.revision;
    }
    return {
      at: now,
      status,
      segments: this.segments,
      heat: Array.isArray(heat) ? heat : null,
      scores: Array.isArray(scores) ? scores : null,
      events: events ?? [],
    };
  }

  /** One server's score history as the orchestrator keeps it (empty when not served). */
  async scoreHistory(serverId: string): Promise<{ t: number; score: number }[]> {
    try {
      const r = await getJson<Record<string, { t: number; score: number }[]>>(`${this.base}/v1/failure-scores/history?server=${encodeURIComponent(serverId)}`);
      return Array.isArray(r?.[serverId]) ? r[serverId] : [];
    } catch {
      return [];
    }
  }

  private async optional<T>(path: string): Promise<T | null> {
    if ((this.missingUntil.get(path) ?? 0) > Date.now()) return null;
    try {
      const r = await getJson<T>(`${this.base}${path}`);
      if (r === null) this.missingUntil.set(path, Date.now() + 10000);
      return r;
    } catch (err) {
      if (err instanceof UnauthorizedError) throw err;
      return null;
    }
  }
}
