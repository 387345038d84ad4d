// Shapes of the orchestrator's HTTP API, shared by the orchestrator, servers, clients and the CLI.

import type { ServerRecord, SmtEntry, VolumeRecord } from '../metadata/model.ts';
import type { FailureMode } from '../prediction/failure-report.ts';
import type { RetrainResult } from '../prediction/lifecycle.ts';
import type { ModelBundle } from '../prediction/model-bundle.ts';

export interface RegisterRequest {
  id: string;
  dataAddr: string;
  adminAddr: string;
  zone?: string;
  rack?: string;
  capacityBytes: number;
  /** The cluster this server belongs to (its data directory's cluster-id), absent on a new server. */
  clusterId?: string;
}

/** What a registration answers: the cluster the server now belongs to. */
export interface RegisterResponse {
  id: string;
  revision: number;
  clusterId: string;
}

export interface HeartbeatRequest {
  usedBytes: number;
  segments: number;
  /** Segments whose local copy the server found damaged (the orchestrator replaces those copies). */
  damaged?: string[];
  /** Copies this server holds in quarantine (set aside, never deleted without an admin). */
  quarantined?: number;
  /** Segments whose writes found this server's disk full (the orchestrator moves those copies' write sets). */
  noSpace?: string[];
  /** Writes found the disk full lately: place no new data here. */
  full?: boolean;
}

export interface HeartbeatResponse {
  ok: boolean;
  /** The server may serve for this long after sending an acknowledged heartbeat, and no longer. */
  leaseMs: number;
  /** How often to send heartbeats. */
  intervalMs: number;
}

export interface ServerStatus extends ServerRecord {
  /** Milliseconds since the last heartbeat (undefined when none since the orchestrator started). */
  lastHeartbeatAgoMs?: number;
  segments: number;
  primaries: number;
  assignedBytes: number;
  usedBytes?: number;
  /** Copies the server set aside because the metadata does not know them (presage quarantine). */
  quarantined?: number;
}

export interface ClusterStatus {
  revision: number;
  servers: ServerStatus[];
  volumes: (VolumeRecord & { degradedSegments: number })[];
  segments: { total: number; degraded: number };
  /** Data movement in progress (repairs, migrations) with progress. */
  operators: OperatorView[];
  /** Operator switches (noout) as stored. */
  flags: { noout: boolean; setBy?: string; setAt?: string };
  /** Segments that lost a replica to a mark-down and wait for the down → out delay (or noout) before re-replication. */
  waitingOut: number;
}

export interface SegmentView extends SmtEntry {
  segmentId: string;
}

export interface ApiErrorBody {
  error: string;
}

export { FAILURE_MODES, type FailureMode, type FailureScoreReport } from '../prediction/failure-report.ts';

// --- The orchestrator's decisions, operators, labels and models, as GET /v1/events,
// /v1/migrations, /v1/labels and /v1/models serve them. The orchestrator implements these shapes;
// it re-exports them where its own modules used to define them.

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

export type SuspectResult = 'marked-down' | 'reachable' | 'inconclusive' | 'not-up' | 'held';

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

export interface FailureLabel {
  server: string;
  mode: FailureMode;
  /** When it failed (ms since the epoch). */
  t: number;
  source: 'mark-down' | 'operator';
  /** Why this mode, in words (kept so a label can be reviewed and corrected). */
  cause: string;
  /** The last Failure Score before the failure, when there was one. */
  score?: number;
}

export interface PushOutcome {
  server: string;
  version: string;
  ok: boolean;
  at: string;
  error?: string;
}

export interface RetrainRun extends RetrainResult {
  at: string;
  trigger: 'schedule' | 'request';
  /** Servers whose history was used. */
  servers: string[];
  skipped: { server: string; reason: string }[];
  /** Failure labels in the history (per mode). */
  labels: Partial<Record<FailureMode, number>>;
  pushes: PushOutcome[];
}

export interface ServerModel {
  server: string;
  state: ServerRecord['state'];
  version?: string;
  createdAt?: string;
  checkedAt?: string;
  /** 'current' | 'behind' (will be pushed) | 'ahead' (newer model loaded by hand) | 'unknown' (not reachable). */
  sync: 'current' | 'behind' | 'ahead' | 'unknown';
  error?: string;
  lastPush?: PushOutcome;
}

export type RetrainStage = 'pulling history' | 'training' | 'pushing';

/** Where a running retrain is. Stages come in this order; 'pushing' only when the model was replaced. */
export interface RetrainProgress {
  stage: RetrainStage;
  /**
   * 'pulling history': servers answered or skipped / up servers; 'pushing': servers checked or
   * pushed / up servers; 'training': percent of `step` done out of 100, or 0/0 while the trainer
   * has not reported yet (indeterminate).
   */
  done: number;
  total: number;
  /** When this retrain started (ISO 8601). */
  startedAt: string;
  /** Training only: the trainer's step ('building features', 'training candidate', 'validating'). */
  step?: string;
}

export interface ModelsStatus {
  version: string;
  createdAt: string;
  trainedOn: ModelBundle['trainedOn'];
  validation: ModelBundle['validation'];
  /** The retrain in progress, null when none runs. */
  running: RetrainProgress | null;
  intervalMs: number;
  nextRetrainAt?: string;
  lastRetrain?: RetrainRun;
  servers: ServerModel[];
}
