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
  /** Created only when a later request has to wait for this one (most never are waited for). */
  released: Promise<void> | undefined;
  resolve: (() => void) | undefined;
  release: Release;
}

export class RangeLock {
  // Insertion-ordered: queued and held requests, oldest first.
  private readonly entries = new Set<Entry>();

  /**
   * Takes the range at once if no older request conflicts with it (the common case: no promise,
   * no await), else returns undefined and takes nothing.
   */
  tryAcquire(start: number, end: number, exclusive: boolean): Release | undefined {
    checkRange(start, end);
    for (const e of this.entries) {
      if (e.start < end && start < e.end && (exclusive || e.exclusive)) return undefined;
    }
    return this.enter(start, end, exclusive).release;
  }

  /** Requests the range; resolves once every older conflicting request has released. */
  acquire(start: number, end: number, exclusive: boolean): Promise<Release> {
    try {
      checkRange(start, end);
    } catch (err) {
      return Promise.reject(err);
    }
    let waitFor: Promise<void>[] | undefined;
    for (const e of this.entries) {
      if (e.start < end && start < e.end && (exclusive || e.exclusive)) (waitFor ??= []).push(releasedOf(e));
    }
    const entry = this.enter(start, end, exclusive);
    if (!waitFor) return Promise.resolve(entry.release);
    return (waitFor.length === 1 ? waitFor[0]! : Promise.all(waitFor)).then(() => entry.release);
  }

  private enter(start: number, end: number, exclusive: boolean): Entry {
    const entry: Entry = {
      start,
      end,
      exclusive,
      released: undefined,
      resolve: undefined,
      release: () => {
        if (this.entries.delete(entry)) entry.resolve?.();
      },
    };
    this.entries.add(entry);
    return entry;
  }

  /** Number of requests held or waiting (for tests and diagnostics). */
  get size(): number {
    return this.entries.size;
  }
}

function checkRange(start: number, end: number): void {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid lock range [${start}, ${end})`);
  }
}

function releasedOf(e: Entry): Promise<void> {
  return (e.released ??= new Promise<void>((r) => (e.resolve = r)));
}
