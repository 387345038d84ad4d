// The interface of a server's local segment store. One sparse data file per segment replica,
// fixed 4 KiB blocks, a checksum per block kept beside the data and verified on every read.

export const BLOCK_SIZE = 4096;

/** A block (or blocks) failed checksum verification. Its data is never returned. */
export class CorruptBlockError extends Error {
  constructor(readonly segmentId: string, readonly blocks: number[]) {
    super(`segment ${segmentId}: block(s) ${blocks.slice(0, 8).join(', ')}${blocks.length > 8 ? ', …' : ''} failed checksum verification`);
    this.name = 'CorruptBlockError';
  }
}

/** Offset/length outside the segment, or an unknown segment. */
export class OutOfRangeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutOfRangeError';
  }
}

/**
 * The filesystem under the store has no room for the operation (ENOSPC, or EDQUOT for a quota).
 * What was acknowledged before is intact; this operation's blocks may be half written, and the
 * store re-learns their checksums before trusting them (the caller must not acknowledge it).
 * `code` is 'ENOSPC' so layers that map errno codes (NBD) report it as such.
 */
export class NoSpaceError extends Error {
  readonly code = 'ENOSPC';
  constructor(readonly segmentId: string, cause: unknown) {
    super(`segment ${segmentId}: no space left on the server's disk (${(cause as Error)?.message ?? String(cause)})`);
    this.name = 'NoSpaceError';
  }
}

/** `err` as a NoSpaceError when it is the filesystem saying it is full; unchanged otherwise. */
export function asNoSpace(err: unknown, segmentId: string): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return (code === 'ENOSPC' || code === 'EDQUOT') && !(err instanceof NoSpaceError) ? new NoSpaceError(segmentId, err) : err;
}

export interface SegmentInfo {
  segmentId: string;
  /** Logical size in bytes (a multiple of BLOCK_SIZE). */
  size: number;
  /** Bytes actually allocated on disk (sparse files). */
  allocatedBytes: number;
  /** Written since the last flush. */
  dirty: boolean;
}

export interface BlockChecksums {
  /**
   * Canonical per-block checksum computed from the data as it is on disk now: 0 for a block that
   * is all zeros (never written, trimmed, or written with zeros), crc32c of the 4 KiB otherwise.
   * Two replicas hold the same data exactly when these arrays are equal.
   */
  sums: Uint32Array;
  /** Block indexes (relative to the segment start) whose stored checksum does not match. */
  corrupt: number[];
  /**
   * Blocks whose data verifies only against the sidecar's previous checksum, with the checksum of
   * the latest write the sidecar recorded: either a write interrupted between sidecar and data (the
   * write was never acknowledged) or data that lost its latest write (a hole, a restored file).
   * Scrub repairs such a block from a replica whose data matches `recorded`, and never copies it
   * over one. Only full scans report it (recorded-checksum answers know every block is current).
   */
  stale?: { block: number; recorded: number }[];
}
