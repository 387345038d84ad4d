// A server-wide cap on memory held by partial frames: the bytes each connection's FrameReader
// keeps while a frame is incomplete. Without it, N peers each sending most of a maximum-size
// frame and then nothing hold N × MAX_FRAME_BYTES (80 such connections took a server from 129 to
// 754 MiB RSS). Over the cap, the holder of the most partial bytes is evicted (its connection
// is closed with a typed error), not the newcomer: a slow flood cannot lock out a real client
// whose single write is in transit, because a flooder always holds more.
//
// Invariants: `total` is the sum of what every registered holder reported; after update()
// returns, total <= limitBytes (an evicted holder reports 0 and is forgotten).

export interface BudgetHolder {
  /** Drop everything held and close: called at most once, synchronously, from update(). */
  evict(reason: string): void;
}

export class PartialFrameBudget {
  private readonly held = new Map<BudgetHolder, number>();
  private totalBytes = 0;

  constructor(readonly limitBytes: number) {
    if (!(Number.isSafeInteger(limitBytes) && limitBytes > 0)) throw new RangeError(`partial-frame budget must be a positive byte count, got ${limitBytes}`);
  }

  get total(): number {
    return this.totalBytes;
  }

  /** Records what `h` holds now (0 = nothing; it is then forgotten) and evicts the largest holders while over the cap. */
  update(h: BudgetHolder, bytes: number): void {
    this.totalBytes += bytes - (this.held.get(h) ?? 0);
    if (bytes > 0) this.held.set(h, bytes);
    else this.held.delete(h);
    while (this.totalBytes > this.limitBytes) {
      let worst: BudgetHolder | undefined;
      let most = -1;
      for (const [x, n] of this.held) if (n > most) { worst = x; most = n; }
      if (!worst) break;
      this.held.delete(worst);
      this.totalBytes -= most;
      worst.evict(`server memory for incomplete frames is exhausted (${this.limitBytes} bytes); this connection held the most (${most} bytes)`);
    }
  }
}
