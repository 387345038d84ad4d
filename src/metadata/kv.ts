// The key-value interface under the cluster metadata. It is shaped like etcd's (revisions,
// transactions comparing a key's modRevision, watches from a revision) so that the embedded
// store and the etcd backend are interchangeable.

export interface KvEntry {
  key: string;
  value: string;
  /** Revision of the transaction that created the key. */
  createRevision: number;
  /** Revision of the last transaction that changed the key. */
  modRevision: number;
}

export interface KvEvent {
  type: 'put' | 'delete';
  key: string;
  /** Present for puts. */
  value?: string;
  /** The revision of the transaction that made this change. */
  revision: number;
}

/** `modRevision: 0` means "the key must not exist". */
export interface KvCompare {
  key: string;
  modRevision: number;
}

export interface KvTxn {
  compare?: KvCompare[];
  put?: { key: string; value: string }[];
  delete?: string[];
}

export interface KvTxnResult {
  succeeded: boolean;
  /** The store's revision after the transaction (unchanged when it did not succeed). */
  revision: number;
}

export interface KvRange {
  entries: KvEntry[];
  /** The store revision the range was read at. */
  revision: number;
}

/** Thrown by `changesSince` when the history no longer reaches back to the asked revision. */
export class CompactedError extends Error {
  constructor(readonly requested: number, readonly oldest: number) {
    super(`revision ${requested} has been compacted (oldest kept: ${oldest}); reload from a snapshot`);
    this.name = 'CompactedError';
  }
}

export interface KvStore {
  /** Current global revision: bumps by one with every successful transaction that changes something. */
  revision(): Promise<number>;
  get(key: string): Promise<KvEntry | undefined>;
  /** All keys starting with `prefix`, sorted by key. */
  range(prefix: string): Promise<KvRange>;
  /** Atomically: if every compare holds, apply all puts and deletes as one revision. */
  txn(txn: KvTxn): Promise<KvTxnResult>;
  /**
   * The changes under `prefix` with revision > `afterRevision`, oldest first, and the revision they
   * bring the caller to. Waits up to `timeoutMs` for the first change when there is none yet.
   * Throws CompactedError when `afterRevision` is older than the kept history.
   */
  changesSince(prefix: string, afterRevision: number, timeoutMs: number): Promise<{ events: KvEvent[]; revision: number }>;
  close(): Promise<void>;
}
