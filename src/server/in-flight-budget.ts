// The server-wide budget of bytes held by requests being handled (WRITE payloads received, READ
// data being fetched), shared by every connection of a data port. Over it, connections stop
// handing requests to the handler and stop reading their sockets (backpressure, as Ceph's
// messenger throttles client message bytes) until earlier requests finish; nothing is refused,
// so a burst from many clients slows down instead of erroring or growing memory.
//
// Invariants: `used` ≤ `capacity` except for a single request admitted into an empty budget (one
// request larger than the budget must still make progress, and it is bounded by the frame limit);
// every take is given back exactly once; a waiter is woken when bytes are given back, retries,
// and waits again if there is still no room (no request is lost, the order within a connection
// is kept because each connection only ever waits for its own oldest request).

export class InFlightBudget {
  private usedBytes = 0;
  private readonly waiters = new Set<() => void>();
  /** Times a connection had to wait (exposed for tests and diagnostics). */
  waits = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isSafeInteger(capacity) && capacity > 0)) throw new RangeError(`in-flight budget must be a positive integer of bytes, got ${capacity}`);
  }

  get used(): number {
    return this.usedBytes;
  }

  /** Takes `n` bytes if they fit (or the budget is empty); false means wait (see waitForRoom). */
  tryTake(n: number): boolean {
    if (this.usedBytes > 0 && this.usedBytes + n > this.capacity) return false;
    this.usedBytes += n;
    return true;
  }

  give(n: number): void {
    this.usedBytes -= n;
    if (this.waiters.size === 0) return;
    const woken = [...this.waiters];
    this.waiters.clear();
    for (const w of woken) w();
  }

  /** Calls `retry` once when bytes are given back; `cancel` (e.g. on close) forgets it. */
  waitForRoom(retry: () => void): void {
    if (!this.waiters.has(retry)) this.waits++;
    this.waiters.add(retry);
  }

  cancel(retry: () => void): void {
    this.waiters.delete(retry);
  }
}
