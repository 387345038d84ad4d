// The decision log: every decision the orchestrator takes about data (a drain started because of
// a score, an operator proposed, refused, committed or rolled back, a failover), with its reason:
// the score, the failure mode, the features that drove it, the priority. Served by
// GET /v1/events and `presage events`.

import type { Logger } from '../common/log.ts';
import type { Operator } from './operators.ts';

export type DecisionType =
  | 'proposed' | 'refused' | 'started' | 'committed' | 'rolled-back' | 'cancelled' | 'replaced'
  | 'drain-started' | 'drain-stopped' | 'score-warning' | 'failover' | 'server-back'
  | 'retrain' | 'promoted' | 'quarantined'
  | 'stall' | 'mark-down-held' | 'no-space' | 'flags';

export interface Decision {
  /** Increasing sequence number, for `?since=`. */
  seq: number;
  at: string;
  type: DecisionType;
  /** The segment concerned; '' for decisions about a whole server. */
  segmentId: string;
  server?: string;
  reason: string;
  operator?: Operator;
  priority?: number;
  score?: number;
  mode?: string;
  features?: { name: string; value: number; contribution: number }[];
}

export class DecisionLog {
  private readonly items: Decision[] = [];
  private seq = 0;

  constructor(private readonly log?: Logger, private readonly keep = 5000) {}

  record(d: Omit<Decision, 'seq' | 'at'>): Decision {
    const full: Decision = { seq: ++this.seq, at: new Date().toISOString(), ...d };
    this.items.push(full);
    if (this.items.length > this.keep) this.items.splice(0, this.items.length - this.keep);
    this.log?.info({ decision: full.type, segment: full.segmentId || undefined, server: full.server, priority: full.priority, score: full.score, mode: full.mode, reason: full.reason }, 'decision');
    return full;
  }

  /** Decisions after `since` (a seq), oldest first, at most `limit`. */
  list(since = 0, limit = 1000): Decision[] {
    const out = this.items.filter((d) => d.seq > since);
    return out.slice(Math.max(0, out.length - limit));
  }
}
