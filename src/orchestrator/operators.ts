// Operators: one unit of data movement for one segment (TiKV PD's model). Policies propose
// them, the controller admits them, the executor runs them through the copy engine. They are
// persisted in the metadata store, one key per segment, so there is never more than one
// operator per segment and an orchestrator restart resumes them.

export const OPERATORS = '/presage-ops/';
export const operatorKey = (segmentId: string) => `${OPERATORS}${segmentId}`;

export type OperatorKind = 'repair' | 'migrate';

/**
 * pending → (target joins the entry, epoch+1) → copying → (copy verified) → committing →
 * (target becomes a replica, `remove` leaves, epoch+1) → deleted.
 */
export type OperatorState = 'pending' | 'copying' | 'committing';

export interface Operator {
  id: string;
  segmentId: string;
  kind: OperatorKind;
  /** The server that receives a copy. */
  target: string;
  /** The server whose replica is replaced (migration); absent for repair. */
  remove?: string;
  /** Higher runs first. */
  priority: number;
  reason: string;
  state: OperatorState;
  attempts: number;
  createdAt: string;
  updatedAt: string;
  /** Who asked: a policy name or "user". */
  source: string;
  error?: string;
}

export interface OperatorProgress {
  jobId?: string;
  bytesCopied: number;
  totalBytes: number;
  rateBytesPerSec: number;
  etaSeconds?: number;
}

export interface OperatorView extends Operator {
  progress?: OperatorProgress;
}

/** Priorities: reactive repair of lost redundancy always comes first. */
export const PRIORITY = { repair: 1_000_000, manual: 10_000 } as const;
