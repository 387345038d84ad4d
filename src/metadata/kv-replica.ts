// A local copy of every key under a prefix, kept current by long-polling `changesSince` and
// applying the deltas. Clients and servers read the SMT from it; a stale copy is only slower
// (the data path answers STALE and the caller refreshes), so the replica favours staying alive
// over anything else: errors are reported and retried after a delay, compaction reloads fully.

import { EventEmitter } from 'node:events';
import type { KvEvent, KvStore } from './kv.ts';

export type KvSource = Pick<KvStore, 'range' | 'changesSince'>;

export interface KvReplicaOptions {
  /** How long each background long-poll may wait for a change (default 30000 ms). */
  pollTimeoutMs?: number;
  /** Called with every error the background loop survives (source down, bad answer…). */
  onError?: (err: unknown) => void;
  /** Pause before retrying after an error (default 1000 ms). */
  retryDelayMs?: number;
  /**
   * Follow changes in the background (default true). A lazy copy (false) loads once and then only
   * catches up on `refresh()`, e.g. after a server answered STALE: fewer watchers on the store.
   */
  follow?: boolean;
}

export interface KvReplicaStats {
  /** Full loads from `range` (the initial one included). */
  fullLoads: number;
  /** Events applied from deltas. */
  deltaEvents: number;
}

export interface KvReplicaEvents {
  change: [ev: KvEvent];
  reload: [];
}

function checkAnswer(answer: unknown): asserts answer is { events: KvEvent[]; revision: number } {
  const a = answer as { events?: unknown; revision?: unknown } | null;
  if (!a || typeof a !== 'object' || !Array.isArray(a.events) || !Number.isSafeInteger(a.revision)) {
    throw new Error('changesSince returned a malformed answer');
  }
  for (const ev of a.events as unknown[]) {
    const e = ev as Partial<KvEvent> | null;
    const ok =
      !!e &&
      typeof e.key === 'string' &&
      Number.isSafeInteger(e.revision) &&
      ((e.type === 'put' && typeof e.value === 'string') || e.type === 'delete');
    if (!ok) throw new Error(`changesSince returned a malformed event: ${JSON.stringify(ev)?.slice(0, 200)}`);
  }
}

function isCompacted(err: unknown): boolean {
  // By name too: a remote source (HTTP) rebuilds the error rather than sharing the class.
  return err instanceof Error && err.name === 'CompactedError';
}

export class KvReplica extends EventEmitter<KvReplicaEvents> {
  readonly stats: KvReplicaStats = { fullLoads: 0, deltaEvents: 0 };

  private readonly data = new Map<string, string>();
  private rev = 0;
  private loaded = false;
  // Bumped by each full reload: a delta answer asked for before a reload is thrown away.
  private generation = 0;
  private reloading: Promise<void> | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private stopWake: (() => void) | undefined;
  private stopped: Promise<void> = Promise.resolve();
  private catchingUp: Promise<void> | undefined;
  private readonly revWaiters = new Set<{ rev: number; done: (ok: boolean) => void }>();

  private readonly pollTimeoutMs: number;
  private readonly retryDelayMs: number;
  private readonly onError: (err: unknown) => void;
  private readonly follows: boolean;

  constructor(
    private readonly source: KvSource,
    readonly prefix: string,
    opts: KvReplicaOptions = {},
  ) {
    super();
    if (typeof prefix !== 'string') throw new TypeError('prefix must be a string');
    this.pollTimeoutMs = opts.pollTimeoutMs ?? 30_000;
    this.retryDelayMs = opts.retryDelayMs ?? 1_000;
    if (!(this.pollTimeoutMs >= 0)) throw new RangeError(`pollTimeoutMs must be >= 0, got ${this.pollTimeoutMs}`);
    if (!(this.retryDelayMs > 0)) throw new RangeError(`retryDelayMs must be > 0, got ${this.retryDelayMs}`);
    this.onError = opts.onError ?? (() => {});
    this.follows = opts.follow ?? true;
    // Many views may subscribe to one replica.
    this.setMaxListeners(0);
  }

  /** The revision the copy is at: every change up to it is applied. */
  get revision(): number {
    return this.rev;
  }

  get size(): number {
    return this.data.size;
  }

  get(key: string): string | undefined {
    return this.data.get(key);
  }

  /** The keys under the prefix with their values, in no particular order. */
  entries(): IterableIterator<[string, string]> {
    return this.data.entries();
  }

  /** Loads everything once, then follows changes in the background until `stop()`. */
  async start(): Promise<void> {
    if (this.running) throw new Error('KvReplica already started');
    this.running = true;
    try {
      await this.reload();
    } catch (err) {
      this.running = false;
      throw err;
    }
    this.stopped = new Promise<void>((resolve) => (this.stopWake = resolve));
    if (this.follows) this.loop = this.follow();
  }

  /** Stops following. Does not wait for the long-poll in flight; its answer is dropped. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopWake?.();
    await this.loop;
    await this.catchingUp;
    this.loop = undefined;
    for (const w of [...this.revWaiters]) w.done(false);
  }

  /**
   * True once the copy is at `rev` or later; false after `timeoutMs` or on stop. The long-poll
   * only returns on changes under our prefix, so the copy's revision lags the store's while the
   * store changes elsewhere; a waiter therefore also pulls (timeout 0), which brings the copy to
   * the store's current revision, and again every `retryDelayMs` while the store is behind `rev`.
   */
  waitForRevision(rev: number, timeoutMs: number): Promise<boolean> {
    if (this.rev >= rev) return Promise.resolve(true);
    if (!this.running || timeoutMs <= 0) return Promise.resolve(false);
    const result = new Promise<boolean>((resolve) => {
      const w = {
        rev,
        done: (ok: boolean) => {
          clearTimeout(timer);
          this.revWaiters.delete(w);
          resolve(ok);
        },
      };
      const timer = setTimeout(() => w.done(false), Math.min(timeoutMs, 2 ** 31 - 1));
      this.revWaiters.add(w);
    });
    this.catchUp();
    return result;
  }

  private catchUp(): void {
    if (this.catchingUp) return;
    this.catchingUp = (async () => {
      const behind = () => this.running && [...this.revWaiters].some((w) => w.rev > this.rev);
      while (behind()) {
        try {
          await this.pull(0, this.stopped);
        } catch (err) {
          this.report(err);
        }
        if (behind()) await this.sleep(this.retryDelayMs);
      }
    })().finally(() => (this.catchingUp = undefined));
  }

  /** Pulls the pending changes now (after a STALE answer) rather than waiting for the long-poll. */
  async refresh(): Promise<void> {
    if (!this.loaded) throw new Error('KvReplica not started');
    await this.pull(0);
  }

  /** One changesSince round; reloads on compaction. Errors other than compaction propagate. */
  private async pull(timeoutMs: number, cancel?: Promise<void>): Promise<void> {
    if (this.reloading) await this.reloading;
    const from = this.rev;
    const gen = this.generation;
    let answer: { events: KvEvent[]; revision: number } | undefined;
    try {
      const call = this.source.changesSince(this.prefix, from, timeoutMs);
      if (cancel) {
        call.catch(() => {}); // may settle after we stopped listening
        answer = await Promise.race([call, cancel.then(() => undefined)]);
      } else {
        answer = await call;
      }
    } catch (err) {
      if (!isCompacted(err)) throw err;
      if (gen === this.generation) await this.reload();
      return;
    }
    if (answer === undefined || gen !== this.generation || (cancel && !this.running)) return;
    // Checked whole before applying anything, so that a bad answer never leaves a half-applied copy.
    checkAnswer(answer);
    if (answer.revision < from) {
      // The source went back in time (e.g. a fresh store replaced it): our copy is not a
      // prefix of its history any more.
      if (gen === this.generation) await this.reload();
      return;
    }
    this.apply(answer.events, answer.revision);
  }

  private apply(events: KvEvent[], revision: number): void {
    // Another pull (refresh beside the loop) may have applied part of this answer already. An
    // answer holds every event in (from, revision], so skipping what is <= our revision is exact.
    const base = this.rev;
    if (revision <= base) return;
    const applied: KvEvent[] = [];
    for (const ev of events) {
      if (ev.revision <= base || ev.revision > revision || !ev.key.startsWith(this.prefix)) continue;
      if (ev.type === 'put') this.data.set(ev.key, ev.value!);
      else this.data.delete(ev.key);
      applied.push(ev);
    }
    this.rev = revision;
    this.stats.deltaEvents += applied.length;
    // Listeners run once the copy is whole at the new revision.
    for (const ev of applied) this.safeEmit('change', ev);
    this.wakeRevWaiters();
  }

  private reload(): Promise<void> {
    if (!this.reloading) {
      this.reloading = (async () => {
        try {
          const r = await this.source.range(this.prefix);
          this.generation++;
          this.data.clear();
          for (const e of r.entries) {
            if (e.key.startsWith(this.prefix)) this.data.set(e.key, e.value);
          }
          this.rev = r.revision;
          this.loaded = true;
          this.stats.fullLoads++;
          this.safeEmit('reload');
          this.wakeRevWaiters();
        } finally {
          this.reloading = undefined;
        }
      })();
    }
    return this.reloading;
  }

  private safeEmit<K extends keyof KvReplicaEvents>(name: K, ...args: KvReplicaEvents[K]): void {
    try {
      (this.emit as (n: K, ...a: KvReplicaEvents[K]) => boolean)(name, ...args);
    } catch (err) {
      // A throwing listener must not stop the replica from following.
      this.report(err);
    }
  }

  private wakeRevWaiters(): void {
    for (const w of [...this.revWaiters]) if (this.rev >= w.rev) w.done(true);
  }

  private async follow(): Promise<void> {
    const stopped = this.stopped;
    while (this.running) {
      const started = Date.now();
      const progress = this.stats.deltaEvents + this.stats.fullLoads;
      try {
        await this.pull(this.pollTimeoutMs, stopped);
        // A source that answers "nothing" at once instead of long-polling must not make us spin.
        const quick = Date.now() - started < Math.max(this.pollTimeoutMs / 2, 10);
        if (this.running && quick && this.stats.deltaEvents + this.stats.fullLoads === progress) {
          await this.sleep(Math.min(this.retryDelayMs, Math.max(this.pollTimeoutMs, 50)));
        }
      } catch (err) {
        if (!this.running) break;
        this.report(err);
        await this.sleep(this.retryDelayMs);
      }
    }
  }

  private report(err: unknown): void {
    try {
      this.onError(err);
    } catch {
      // the error reporter itself failed: nothing more to do than carry on
    }
  }

  /** Sleeps `ms`, or less when stopped. */
  private sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([new Promise<void>((r) => (timer = setTimeout(r, ms))), this.stopped]).finally(() => clearTimeout(timer));
  }
}
