// Draining: every segment replica on a draining server is moved to a healthy server, one
// operator per segment, highest priority first. Used by `presage drain` and by predictive drain.
// Where the draining server is a segment's primary, a healthy replica is promoted first (an epoch
// bump, no data moves): clients' reads and writes stop going through the failing disk at once,
// and the copy reads from the healthy primary instead of the slow one.

import type { Logger } from '../common/log.ts';
import type { DecisionLog } from './decision-log.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { MetadataWriter } from './metadata-writer.ts';
import type { OperatorController } from './operator-controller.ts';
import { pickTarget } from './placement.ts';
import { migrationPriority } from './priority.ts';

export interface DrainCandidate {
  segmentId: string;
  server: string;
  priority: number;
}

export class DrainPolicy {
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly view: ClusterView,
    private readonly writer: MetadataWriter,
    private readonly controller: OperatorController,
    private readonly log: Logger,
    /** Per-segment access rate (ops/s) for priority; 0 when unknown. */
    private readonly accessRate: (segmentId: string) => number = () => 0,
    /** Risk (0..1) of a draining server; 1 for a drain asked by hand. */
    private readonly riskOf: (serverId: string) => number = () => 1,
    private readonly decisions?: DecisionLog,
  ) {}

  start(intervalMs = 500): void {
    const loop = async () => {
      if (this.stopped) return;
      await this.tick().catch((err) => this.log.error({ err }, 'drain tick failed'));
      if (!this.stopped) this.timer = setTimeout(loop, intervalMs);
    };
    this.timer = setTimeout(loop, intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** Segments still to move off draining servers, most urgent first. */
  candidates(): DrainCandidate[] {
    const out: DrainCandidate[] = [];
    for (const s of this.view.servers.values()) {
      if (!s.draining || s.state !== 'up') continue;
      const risk = this.riskOf(s.id);
      for (const [segId, e] of this.view.smt) {
        if (!e.replicas.includes(s.id)) continue;
        const vol = this.view.volumes.get(segId.slice(0, segId.lastIndexOf('/')));
        if (!vol) continue;
        out.push({ segmentId: segId, server: s.id, priority: migrationPriority({ risk, accessRate: this.accessRate(segId), criticality: vol.criticality }) });
      }
    }
    return out.sort((a, b) => b.priority - a.priority || a.segmentId.localeCompare(b.segmentId));
  }

  /** Segments of a server not yet moved away. */
  remaining(serverId: string): number {
    let n = 0;
    for (const e of this.view.smt.values()) if (e.replicas.includes(serverId)) n++;
    return n;
  }

  async tick(): Promise<void> {
    // One candidate list for the whole tick: each pick adds to its target's assigned bytes, so
    // the segments of a drained server spread out instead of all landing on the emptiest one.
    const pool = this.writer.placementCandidates(new Set(), this.controller.pendingTargets());
    for (const c of this.candidates()) {
      if (this.stopped) return;
      if (this.controller.get(c.segmentId)) continue;
      const e = this.view.entry(c.segmentId);
      const vol = this.view.volumes.get(c.segmentId.slice(0, c.segmentId.lastIndexOf('/')));
      if (!e || !vol) continue;
      let target: string;
      try {
        target = pickTarget(pool, e, vol.segmentSize, c.segmentId, c.server);
      } catch {
        continue; // no healthy server with room: try again next tick
      }
      await this.handOffPrimary(c.segmentId, c.server);
      const server = this.view.servers.get(c.server);
      await this.controller.propose({
        segmentId: c.segmentId,
        kind: 'migrate',
        target,
        remove: c.server,
        priority: c.priority,
        reason: `drain ${c.server}${server?.drainReason ? `: ${server.drainReason}` : ''}`,
        source: 'drain',
      });
    }
  }

  /** Makes a healthy replica the primary of a segment the draining server leads (best effort). */
  private async handOffPrimary(segmentId: string, draining: string): Promise<void> {
    const e = this.view.entry(segmentId);
    if (!e || e.replicas[0] !== draining || e.joining?.length) return;
    const to = e.replicas.find((r) => {
      const s = this.view.servers.get(r);
      return r !== draining && s?.state === 'up' && !s.draining;
    });
    if (!to) return;
    try {
      await this.writer.promote(segmentId, to);
      this.decisions?.record({ type: 'promoted', segmentId, server: draining, reason: `${to} leads ${segmentId} instead of draining ${draining}: client I/O and the copy avoid it from now on` });
    } catch (err) {
      this.log.warn({ segment: segmentId, err: (err as Error).message }, 'could not hand off the primary; the migration copies from the draining server');
    }
  }
}
