// Operators: one unit of data movement for one segment (TiKV PD's model). Policies propose
// them, the controller admits them, the executor runs them through the copy engine. They are
// persisted in the metadata store, one key per segment, so there is never more than one
// operator per segment and an orchestrator restart resumes them.

export const OPERATORS = '/presage-ops/';
export const operatorKey = (segmentId: string) => `${OPERATORS}${segmentId}`;

export type { Operator, OperatorKind, OperatorProgress, OperatorState, OperatorView } from '../api/types.ts';


/** Priorities: reactive repair of lost redundancy always comes first. */
export const PRIORITY = { repair: 1_000_000, manual: 10_000 } as const;
