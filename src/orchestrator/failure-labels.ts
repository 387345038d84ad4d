// Failure labels: what actually failed, and when, as the orchestrator saw it. Retraining learns
// from them (a feature snapshot is a positive when its server failed in that mode within the
// mode's horizon), so they must be real outcomes, never predictions:
//
// - every mark-down (the server stopped heartbeating unannounced) is a label. Its mode:
//     1. an explicit cause naming the disk (an operator's "drive replaced", a disk-error cause)
//        → 'disk';
//     2. else the server's last Failure Score, if it was fresh (≤ SCORE_FRESH_MS old) and at or
//        above the warning level → that report's leading mode: the server itself saw it coming
//        and said how;
//     3. else 'software'. A server that vanishes with no hardware precursor (healthy SMART, normal
//        latency and network) most often lost its process (crash, OOM kill, hang). Labelling such
//        deaths 'disk' or 'network' would teach those models that healthy-looking hardware fails;
//        'software' is the mode whose model is a heuristic anyway, so it is the cheapest place
//        for the residual. The label keeps its cause text so it can be re-labelled by hand.
// - a completed predictive drain is NOT a label: it is a prediction acted upon, and counting it
//   would make the model learn its own output.
// - an operator can add a label (POST /v1/labels) for failures the orchestrator cannot see (a
//   drive replaced during maintenance, a known kernel bug).
//
// Labels live in the metadata store under LABELS_PREFIX (outside the cluster ROOT, so the SMT
// watchers never see them) and survive orchestrator restarts and leader changes.

import { FAILURE_MODES, type FailureLabel, type FailureMode, type FailureScoreReport } from '../api/types.ts';
import type { Logger } from '../common/log.ts';
import { WARN_SCORE } from '../prediction/failure-report.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { KvEvent, KvStore } from '../metadata/kv.ts';
import { SERVERS, type ServerRecord } from '../metadata/model.ts';
import type { DecisionLog } from './decision-log.ts';

export const LABELS_PREFIX = '/presage-labels/';
/** A Failure Score older than this at the mark-down says nothing about how the server died. */
export const SCORE_FRESH_MS = 15 * 60_000;
/** Mark-downs of the same server closer than this are one failure (a failover retry sets it down again). */
export const DEDUPE_MS = 10 * 60_000;
/** Score at or above which a report's leading mode is trusted as the cause (the warning level). */
export const WARNING_SCORE = WARN_SCORE;

export type { FailureLabel } from '../api/types.ts';

const labelKey = (server: string, t: number) => `${LABELS_PREFIX}${server}/${String(Math.floor(t)).padStart(15, '0')}`;

/** The mode of a mark-down (see the header for the rules and why). */
export function markDownMode(at: number, lastScore?: FailureScoreReport, cause?: string): { mode: FailureMode; cause: string; score?: number } {
  if (cause && /\bdisk\b|\bdrive\b|\bsmart\b|\bEIO\b/i.test(cause)) return { mode: 'disk', cause };
  if (lastScore) {
    const age = at - Date.parse(lastScore.computedAt);
    if (age <= SCORE_FRESH_MS && lastScore.score >= WARNING_SCORE && FAILURE_MODES.includes(lastScore.mode)) {
      return { mode: lastScore.mode, cause: `${cause ? cause + '; ' : ''}last Failure Score ${lastScore.score.toFixed(0)} (${lastScore.level}) led by ${lastScore.mode}`, score: lastScore.score };
    }
    return { mode: 'software', cause: `${cause ? cause + '; ' : ''}died without warning (last score ${lastScore.score.toFixed(0)})`, score: lastScore.score };
  }
  return { mode: 'software', cause: `${cause ? cause + '; ' : ''}died without warning (no Failure Score seen)` };
}

/** Checks an operator's label; throws a one-line reason. */
export function validateLabel(input: unknown, now = Date.now()): FailureLabel {
  const b = (input ?? {}) as Record<string, unknown>;
  if (typeof b.server !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(b.server)) throw new Error('label: "server" must be a server id');
  if (typeof b.mode !== 'string' || !(FAILURE_MODES as readonly string[]).includes(b.mode)) throw new Error(`label: "mode" must be one of ${FAILURE_MODES.join(', ')}`);
  const t = b.t === undefined ? now : typeof b.t === 'string' ? Date.parse(b.t) : Number(b.t);
  if (!Number.isFinite(t) || t <= 0 || t > now + 60_000) throw new Error('label: "t" must be a time (ms or ISO) not in the future');
  // Stored in the metadata and listed to every reader: bounded like the rest of a label.
  if (b.cause !== undefined && (typeof b.cause !== 'string' || b.cause.length > 1000)) throw new Error('label: "cause" must be a string of at most 1000 characters');
  return { server: b.server, mode: b.mode as FailureMode, t, source: 'operator', cause: (b.cause as string | undefined) ?? 'recorded by an operator' };
}

export class FailureLabelStore {
  constructor(private readonly kv: KvStore) {}

  /** Stores a label; a mark-down within DEDUPE_MS of an existing label of the server is dropped (returns false). */
  async add(label: FailureLabel): Promise<boolean> {
    if (label.source === 'mark-down') {
      const near = (await this.list(label.server)).some((l) => Math.abs(l.t - label.t) < DEDUPE_MS);
      if (near) return false;
    }
    const key = labelKey(label.server, label.t);
    const r = await this.kv.txn({ compare: [{ key, modRevision: 0 }], put: [{ key, value: JSON.stringify(label) }] });
    return r.succeeded;
  }

  /** Labels (of one server, or all), oldest first per server. */
  async list(server?: string): Promise<FailureLabel[]> {
    const r = await this.kv.range(server ? `${LABELS_PREFIX}${server}/` : LABELS_PREFIX);
    const out: FailureLabel[] = [];
    for (const e of r.entries) {
      try {
        out.push(JSON.parse(e.value) as FailureLabel);
      } catch {
        // A value that does not parse is skipped: one bad record must not stop retraining.
      }
    }
    return out;
  }
}

/**
 * Watches the cluster view for servers going from up to down and records a label for each. Only
 * transitions seen while running count: servers already down when it starts were labelled by
 * whoever saw them go (or before labels existed).
 */
export class MarkDownLabeler {
  private readonly state = new Map<string, ServerRecord['state']>();
  private readonly onChange = (ev: KvEvent) => this.changed(ev);
  private readonly onReload = () => this.snapshot();
  private running = false;
  /** Pending writes, so tests and shutdown can wait for them. */
  private pending: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly view: ClusterView,
    private readonly store: FailureLabelStore,
    private readonly lastScore: (server: string) => FailureScoreReport | undefined,
    private readonly log: Logger,
    private readonly decisions?: DecisionLog,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.snapshot();
    this.view.on('change', this.onChange);
    this.view.on('reload', this.onReload);
  }

  stop(): void {
    this.running = false;
    this.view.off('change', this.onChange);
    this.view.off('reload', this.onReload);
  }

  /** Resolves when the labels of transitions seen so far are written. */
  flush(): Promise<unknown> {
    return this.pending;
  }

  private snapshot(): void {
    this.state.clear();
    for (const s of this.view.servers.values()) this.state.set(s.id, s.state);
  }

  private changed(ev: KvEvent): void {
    if (!ev.key.startsWith(SERVERS)) return;
    const id = ev.key.slice(SERVERS.length);
    const rec = this.view.servers.get(id);
    const before = this.state.get(id);
    if (!rec) {
      this.state.delete(id);
      return;
    }
    this.state.set(id, rec.state);
    if (before !== 'up' || rec.state !== 'down') return;
    const at = Date.now();
    const m = markDownMode(at, this.lastScore(id));
    const label: FailureLabel = { server: id, mode: m.mode, t: at, source: 'mark-down', cause: m.cause, ...(m.score !== undefined ? { score: m.score } : {}) };
    this.pending = this.pending.then(() => this.store.add(label)).then((added) => {
      if (!added) return;
      this.log.info({ server: id, mode: m.mode, cause: m.cause }, 'failure label recorded');
      this.decisions?.record({ type: 'retrain', segmentId: '', server: id, mode: m.mode, ...(m.score !== undefined ? { score: m.score } : {}), reason: `failure label: ${m.mode} (${m.cause})` });
    }, (err) => this.log.warn({ server: id, err: (err as Error).message }, 'could not record a failure label'));
  }
}
