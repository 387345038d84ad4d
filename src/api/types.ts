// Shapes of the orchestrator's HTTP API, shared by the orchestrator, servers, clients and the CLI.

import type { ServerRecord, SmtEntry, VolumeRecord } from '../metadata/model.ts';
import type { OperatorView } from '../orchestrator/operators.ts';

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

export const FAILURE_MODES = ['disk', 'fail-slow', 'network', 'software'] as const;
export type FailureMode = (typeof FAILURE_MODES)[number];

/** A server's Failure Score as served by `GET /v1/failure-score` (server) and the orchestrator. */
export interface FailureScoreReport {
  serverId: string;
  /** 0 healthy … 100 critical. */
  score: number;
  level: 'healthy' | 'warning' | 'critical';
  /** The failure mode that drives the score. */
  mode: FailureMode;
  /** Calibrated probability of failing within the mode's horizon. */
  probabilities: Record<FailureMode, number>;
  /** Each mode's horizon, e.g. { disk: '7d', 'fail-slow': '1h', … }. */
  horizons: Record<FailureMode, string>;
  /** The features that drove the leading mode, largest contribution first. */
  topFeatures: { name: string; value: number; contribution: number }[];
  modelVersion: string;
  /** ISO time of the computation. */
  computedAt: string;
  /** Forecasts of key metrics (ms timestamps), for the dashboard. */
  forecast: { metric: string; model: string; points: { t: number; value: number; lower?: number; upper?: number }[] }[];
  /** Set when the score could not be computed from models (e.g. not enough telemetry yet). */
  note?: string;
  /** Modes that had no input telemetry this time (their probability is the prior): no evidence either way. */
  noData?: FailureMode[];
}
