// Shapes of a storage server's admin HTTP API that the orchestrator drives (copy jobs). The server
// implements them and the orchestrator calls them; both import them from here, neither from the other.

export interface CopyJobSpec {
  segmentId: string;
  /** Server to copy from (a healthy replica; the primary by default). */
  source?: string;
  /** Bytes per second for this job (0 = only the server-wide limit). */
  bandwidthBytesPerSec?: number;
}

export type CopyJobState = 'running' | 'done' | 'failed' | 'cancelled';

export interface CopyJobStatus {
  id: string;
  segmentId: string;
  source: string;
  state: CopyJobState;
  totalBytes: number;
  bytesCopied: number;
  passes: number;
  /** Blocks found different in the final, paused comparison and copied again. */
  recopiedBlocks: number;
  verified: boolean;
  rateBytesPerSec: number;
  etaSeconds?: number;
  /** Where the time went: waiting for a slot, the live comparison, the live copy, the paused verification (with re-copies), the flush. */
  phaseMs?: { queued: number; diff: number; copy: number; verify: number; flush: number };
  startedAt: string;
  finishedAt?: string;
  error?: string;
}
