// How urgent moving a segment is: risk × access frequency × volume criticality (DESIGN.md).
// A hot, critical segment on a dying server moves before a cold one.

import { CRITICALITY_WEIGHT, type Criticality } from '../metadata/model.ts';
import { PRIORITY } from './operators.ts';

export interface PriorityInputs {
  /** 0..1: the failure risk of the server the segment leaves (1 for a manual drain). */
  risk: number;
  /** Accesses per second of the segment (moving average); 0 when unknown. */
  accessRate: number;
  criticality: Criticality;
}

/**
 * Below the reactive-repair band, always. log1p keeps a very hot segment from dwarfing risk:
 * a segment twice as hot gets somewhat more priority, not twice as much.
 */
export function migrationPriority(p: PriorityInputs): number {
  const risk = Math.min(Math.max(p.risk, 0), 1);
  const access = 1 + Math.log1p(Math.max(p.accessRate, 0));
  const score = risk * access * CRITICALITY_WEIGHT[p.criticality];
  return Math.min(PRIORITY.repair - 1, Math.round(1000 * score));
}
