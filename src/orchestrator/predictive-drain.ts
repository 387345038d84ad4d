// Predictive drain: a server whose Failure Score stays at or above the threshold (default 70)
// is drained before it fails. Hysteresis keeps a flapping score from moving data back and forth:
// draining starts only after the score has stayed high for `sustainMs`, and a drained server
// takes data again only after its score has stayed below the warning level (default 50) for
// `recoverMs`. Undraining never moves data back; it only lets placement use the server again.
// A cap limits how much of the cluster may be draining at once.

import type { FailureScoreReport } from '../api/types.ts';
import type { Logger } from '../common/log.ts';
import { ACT_SCORE, WARN_SCORE } from '../prediction/failure-report.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { DecisionLog } from './decision-log.ts';

export interface PredictiveDrainConfig {
  enabled: boolean;
  threshold: number;
  warning: number;
  /** The score must stay ≥ threshold this long before draining starts. */
  sustainMs: number;
  /** A predicted-drained server must stay < warning this long before it takes data again. */
  recoverMs: number;
  /** At most this fraction of the up servers may be draining at once (at least one server). */
  maxDrainingFraction: number;
}

export const DEFAULT_PREDICTIVE: PredictiveDrainConfig = {
  enabled: true,
  threshold: ACT_SCORE,
  warning: WARN_SCORE,
  sustainMs: 15000,
  recoverMs: 120000,
  maxDrainingFraction: 0.25,
};

/** Reasons of drains started by this policy begin with this, so it only undoes its own drains. */
export const PREDICTED = 'predicted failure';

export interface DrainControl {
  setDraining(server: string, draining: boolean, reason?: string): Promise<unknown>;
}

export class PredictiveDrainPolicy {
  private readonly aboveSince = new Map<string, number>();
  private readonly belowSince = new Map<string, number>();
  private readonly warned = new Set<string>();
  readonly config: PredictiveDrainConfig;

  constructor(
    private readonly view: ClusterView,
    private readonly scores: () => Map<string, FailureScoreReport>,
    private readonly control: DrainControl,
    private readonly decisions: DecisionLog,
    private readonly log: Logger,
    config: Partial<PredictiveDrainConfig> = {},
    private readonly now: () => number = Date.now,
  ) {
    this.config = { ...DEFAULT_PREDICTIVE, ...config };
  }

  /** The risk (0..1) a server's score stands for: used to weigh migration priority. */
  risk(serverId: string): number {
    const s = this.scores().get(serverId);
    return s ? Math.min(Math.max(s.score / 100, 0), 1) : 1;
  }

  async tick(): Promise<void> {
    if (!this.config.enabled) return;
    const now = this.now();
    const scores = this.scores();
    const up = [...this.view.servers.values()].filter((s) => s.state === 'up');
    const cap = Math.max(1, Math.floor(up.length * this.config.maxDrainingFraction));
    let draining = up.filter((s) => s.draining).length;
    for (const s of up) {
      const r = scores.get(s.id);
      if (!r) continue;
      const predicted = !!s.draining && (s.drainReason ?? '').startsWith(PREDICTED);
      if (r.score >= this.config.threshold) {
        this.belowSince.delete(s.id);
        if (s.draining) continue;
        const since = this.aboveSince.get(s.id) ?? now;
        this.aboveSince.set(s.id, since);
        if (now - since < this.config.sustainMs) continue;
        if (draining >= cap) {
          if (!this.warned.has(`cap:${s.id}`)) {
            this.warned.add(`cap:${s.id}`);
            this.decisions.record({ type: 'score-warning', segmentId: '', server: s.id, score: r.score, mode: r.mode, features: r.topFeatures, reason: `score ${r.score.toFixed(0)} ≥ ${this.config.threshold} but ${draining} of ${up.length} servers are already draining (cap ${cap})` });
          }
          continue;
        }
        const top = r.topFeatures.slice(0, 3).map((f) => f.name).join(', ');
        const reason = `${PREDICTED}: score ${r.score.toFixed(0)} (${r.mode}${top ? `; ${top}` : ''})`; // drainedFor() parses the mode back
        await this.control.setDraining(s.id, true, reason);
        draining++;
        this.aboveSince.delete(s.id);
        this.warned.delete(`cap:${s.id}`);
        this.decisions.record({ type: 'drain-started', segmentId: '', server: s.id, score: r.score, mode: r.mode, features: r.topFeatures, reason });
        continue;
      }
      this.aboveSince.delete(s.id);
      if (r.score >= this.config.warning) {
        this.belowSince.delete(s.id);
        if (!this.warned.has(s.id) && !s.draining) {
          this.warned.add(s.id);
          this.decisions.record({ type: 'score-warning', segmentId: '', server: s.id, score: r.score, mode: r.mode, features: r.topFeatures, reason: `score ${r.score.toFixed(0)} ≥ warning level ${this.config.warning}` });
        }
        continue;
      }
      this.warned.delete(s.id);
      if (!predicted) continue;
      // A drained server serves no I/O, so the inputs of the mode it was drained for can dry up and
      // its score fall to the prior: that is no evidence of recovery, and must not start the clock.
      const mode = drainedFor(s.drainReason);
      if (mode && r.noData?.includes(mode as FailureScoreReport['mode'])) {
        this.belowSince.delete(s.id);
        continue;
      }
      const since = this.belowSince.get(s.id) ?? now;
      this.belowSince.set(s.id, since);
      if (now - since < this.config.recoverMs) continue;
      await this.control.setDraining(s.id, false);
      this.belowSince.delete(s.id);
      this.decisions.record({ type: 'drain-stopped', segmentId: '', server: s.id, score: r.score, mode: r.mode, reason: `score ${r.score.toFixed(0)} stayed below ${this.config.warning} for ${Math.round(this.config.recoverMs / 1000)} s: takes new data again` });
    }
  }
}

/** The failure mode a predictive drain was started for, from its reason (kept in the metadata, so it survives restarts). */
export function drainedFor(reason: string | undefined): string | undefined {
  return reason?.startsWith(PREDICTED) ? /\(([a-z-]+)[;)]/.exec(reason)?.[1] : undefined;
}
