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
}

export interface HeartbeatRequest {
  usedBytes: number;
  segments: number;
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
}

export interface ClusterStatus {
  revision: number;
  servers: ServerStatus[];
  volumes: (VolumeRecord & { degradedSegments: number })[];
  segments: { total: number; degraded: number };
  /** Data movement in progress (repairs, migrations) with progress. */
  operators: OperatorView[];
}

export interface SegmentView extends SmtEntry {
  segmentId: string;
}

export interface ApiErrorBody {
  error: string;
}
