// Bandwidth limiting for background copies (re-replication, migration, scrub repair):
// a token bucket in bytes. `take` waits until the bytes may be sent.

export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  private queue: Promise<void> = Promise.resolve();

  /** `rate` bytes per second (0 or Infinity = unlimited), `burst` the most that can be saved up. */
  constructor(public rate: number, private readonly burst = Math.max(rate, 1024 * 1024)) {
    this.tokens = this.burst;
  }

  get unlimited(): boolean {
    return !(this.rate > 0) || this.rate === Infinity;
  }

  take(bytes: number): Promise<void> {
    if (this.unlimited) return Promise.resolve();
    // Serialise takers so a large request is not starved by a stream of small ones.
    const turn = this.queue.then(() => this.wait(bytes));
    this.queue = turn.catch(() => {});
    return turn;
  }

  private async wait(bytes: number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      if (this.tokens >= Math.min(bytes, this.burst)) {
        this.tokens -= bytes;
        return;
      }
      const need = Math.min(bytes, this.burst) - this.tokens;
      await new Promise((r) => setTimeout(r, Math.max(1, (need / this.rate) * 1000)));
    }
  }
}
