// The decision log: every decision the orchestrator takes about data (a drain started because of
// a score, an operator proposed, refused, committed or rolled back, a failover), with its reason:
// the score, the failure mode, the features that drove it, the priority. Served by
// GET /v1/events and `presage events`.

import type { Logger } from '../common/log.ts';
import type { Decision } from '../api/types.ts';

export type { Decision, DecisionType } from '../api/types.ts';

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
