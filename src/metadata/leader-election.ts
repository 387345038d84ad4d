// Leader election on etcd by lease, the recipe of etcd's own concurrency package: every candidate
// writes `<prefix>/<lease id>` bound to its lease (create-if-absent); the key with the lowest
// create_revision leads; the others each wait for the deletion of the key just before theirs (no
// thundering herd). A leader that dies without resigning stops refreshing its lease, etcd deletes
// its key after at most `ttlSeconds`, and the next candidate takes over.

import type { Etcd3, Lease, Watcher } from 'etcd3';
import { prefixRangeEnd } from './etcd-kv.ts';

const ELECTION_ROOT = '/presage/election/';

export class NotLeaderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotLeaderError';
  }
}

export class LeaderElection {
  private lease: Lease | undefined;
  private myKey: Buffer | undefined;
  private myRev = 0;
  private leading = false;
  private resigned = false;
  private readonly lostCbs = new Set<(reason: Error) => void>();
  private readonly prefix: Buffer;
  private readonly end: Buffer;
  private watchers = new Set<Watcher>();
  private abortCampaign: ((err: Error) => void) | undefined;

  constructor(
    private readonly client: Etcd3,
    readonly name: string,
    readonly candidateId: string,
    readonly ttlSeconds: number,
  ) {
    if (typeof name !== 'string' || name === '' || name.includes('/')) throw new TypeError('election name must be a non-empty string without "/"');
    if (typeof candidateId !== 'string' || candidateId === '') throw new TypeError('candidateId must be a non-empty string');
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new RangeError(`ttlSeconds must be an integer >= 1, got ${ttlSeconds}`);
    this.prefix = Buffer.from(`${ELECTION_ROOT}${name}/`);
    this.end = prefixRangeEnd(this.prefix);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * The fence of the last leadership this candidate won: its election key and that key's create
   * revision. A transaction that compares on it succeeds only while that leadership lasts, so a
   * leader that was deposed (lease expired while it was paused, key deleted) cannot write even
   * before it notices. Kept after the loss (that is the point); replaced by the next win.
   */
  get fence(): { key: Buffer; createRevision: number } | undefined {
    return this.lastFence;
  }
  private lastFence?: { key: Buffer; createRevision: number };

  /** Called once leadership (or the candidacy) is lost without resign(): lease expired or key gone. */
  onLost(cb: (reason: Error) => void): () => void {
    this.lostCbs.add(cb);
    return () => this.lostCbs.delete(cb);
  }

  /** Resolves when this candidate leads; rejects if the lease is lost or resign() is called first. */
  async campaign(): Promise<void> {
    if (this.lease) throw new Error('already campaigning');
    this.resigned = false;
    const lease = this.client.lease(this.ttlSeconds);
    this.lease = lease;
    const aborted = new Promise<never>((_, reject) => (this.abortCampaign = reject));
    aborted.catch(() => {});
    lease.on('lost', (err: Error) => this.lose(new NotLeaderError(`lease lost: ${err.message}`)));
    const id = await Promise.race([lease.grant(), aborted]);
    this.myKey = Buffer.concat([this.prefix, Buffer.from(id)]);
    const res = await this.client.kv.txn({
      compare: [{ key: this.myKey, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: this.myKey, value: Buffer.from(this.candidateId), lease: id } }],
      failure: [{ request_range: { key: this.myKey } }],
    });
    this.myRev = res.succeeded ? Number(res.header.revision) : Number(res.responses[0]!.response_range!.kvs[0]!.create_revision);
    for (;;) {
      if (this.resigned || !this.lease) throw new NotLeaderError('resigned while campaigning');
      // The candidate just before us in create order, at one revision.
      const pred = await this.client.kv.range({
        key: this.prefix,
        range_end: this.end,
        sort_order: 'Descend',
        sort_target: 'Create',
        max_create_revision: this.myRev - 1,
        limit: 1,
      });
      const before = pred.kvs[0];
      if (!before) break;
      await Promise.race([this.waitDeleted(before.key, Number(pred.header.revision)), aborted]);
    }
    this.lastFence = { key: this.myKey, createRevision: this.myRev };
    this.leading = true;
    this.abortCampaign = undefined;
    // Our own key vanishing (revoked, deleted by an operator) also ends our leadership.
    const own = await this.client.watch().key(this.myKey).only('delete').create();
    this.watchers.add(own);
    own.on('delete', () => this.lose(new NotLeaderError('leader key deleted')));
  }

  private async waitDeleted(key: Buffer, atRevision: number): Promise<void> {
    const w = await this.client.watch().key(key).startRevision(String(atRevision + 1)).only('delete').create();
    this.watchers.add(w);
    try {
      // The key may already be gone by the time the watch started: it replays from atRevision+1.
      await new Promise<void>((resolve) => w.once('delete', () => resolve()));
    } finally {
      this.watchers.delete(w);
      await w.cancel().catch(() => {});
    }
  }

  private lose(reason: Error): void {
    if (this.resigned) return;
    const was = this.leading || !!this.abortCampaign;
    this.leading = false;
    this.abortCampaign?.(reason);
    this.abortCampaign = undefined;
    void this.cleanup();
    if (!was) return;
    for (const cb of [...this.lostCbs]) {
      try {
        cb(reason);
      } catch {
        // a callback's failure must not hide the loss from the others
      }
    }
  }

  private async cleanup(): Promise<void> {
    const ws = [...this.watchers];
    this.watchers.clear();
    await Promise.all(ws.map((w) => w.cancel().catch(() => {})));
    const lease = this.lease;
    this.lease = undefined;
    if (lease) {
      // Revoking deletes our key at once: the next candidate need not wait for the TTL.
      await lease.revoke().catch(() => {});
    }
  }

  /** Steps down (or stops campaigning): deletes our key and revokes the lease. */
  async resign(): Promise<void> {
    this.resigned = true;
    this.leading = false;
    this.abortCampaign?.(new NotLeaderError('resigned while campaigning'));
    this.abortCampaign = undefined;
    await this.cleanup();
  }

  /** The current leader's candidateId, or undefined when there is none. */
  async leader(): Promise<string | undefined> {
    const res = await this.client.kv.range({ key: this.prefix, range_end: this.end, sort_order: 'Ascend', sort_target: 'Create', limit: 1 });
    return res.kvs[0]?.value.toString('utf8');
  }
}
