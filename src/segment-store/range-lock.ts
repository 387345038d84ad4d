// A FIFO reader/writer lock over half-open integer ranges [start, end) (block indexes).
//
// Exclusive holders conflict with any overlapping holder; shared holders conflict only with
// overlapping exclusive ones. Each request waits for the conflicting requests that were queued
// before it (held or still waiting), so grants are first-come-first-served per overlap: a stream
// of readers cannot starve a writer, and waiting only ever points at older requests, so there is
// no deadlock. Non-overlapping requests never wait for each other.

/** Releases the range; calling it more than once is harmless. */
export type Release = () => void;

interface Entry {
  start: number;
  end: number;
  exclusive: boolean;
  released: Promise<void>;
  release: () => void;
}

export class RangeLock {
  // Insertion-ordered: queued and held requests, oldest first.
  private readonly entries = new Set<Entry>();

  /** Requests the range; resolves once every older conflicting request has released. */
  async acquire(start: number, end: number, exclusive: boolean): Promise<Release> {
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start) {
      throw new RangeError(`invalid lock range [${start}, ${end})`);
    }
    const waitFor: Promise<void>[] = [];
    for (const e of this.entries) {
      if (e.start < end && start < e.end && (exclusive || e.exclusive)) waitFor.push(e.released);
    }
    let resolve!: () => void;
    const released = new Promise<void>((r) => (resolve = r));
    const entry: Entry = {
      start,
      end,
      exclusive,
      released,
      release: () => {
        if (this.entries.delete(entry)) resolve();
      },
    };
    this.entries.add(entry);
    if (waitFor.length > 0) await Promise.all(waitFor);
    return entry.release;
  }

  /** Number of requests held or waiting (for tests and diagnostics). */
  get size(): number {
    return this.entries.size;
  }
}
