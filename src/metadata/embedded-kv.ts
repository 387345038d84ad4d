// The embedded metadata store: a KvStore in one SQLite file inside the orchestrator process.
// SQLite gives atomic, crash-safe transactions (WAL + synchronous=FULL: an acknowledged txn is on
// disk). Watches are served from an event log trimmed to the last `historyLimit` revisions, and
// long-polls wait on in-process notifications after each commit (no polling).

import Database from 'better-sqlite3';
import {
  CompactedError,
  type KvEntry,
  type KvEvent,
  type KvRange,
  type KvStore,
  type KvTxn,
  type KvTxnResult,
} from './kv.ts';
import { checkAfter, checkString, checkTxn } from './kv-validate.ts';

export interface EmbeddedKvOptions {
  /** How many revisions of history the event log keeps for changesSince (default 100000). */
  historyLimit?: number;
  /** At most this many events per changesSince answer (default 10000; a revision is never split). */
  maxEventsPerCall?: number;
}

/** Thrown by every call on a closed store, and to long-polls still waiting when it closes. */
export class KvStoreClosedError extends Error {
  constructor() {
    super('the KV store is closed');
    this.name = 'KvStoreClosedError';
  }
}

const DEFAULT_HISTORY_LIMIT = 100_000;
const DEFAULT_MAX_EVENTS = 10_000;
// setTimeout's ceiling; longer waits would fire at once.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

type Db = Database.Database;
type Row = [string, string, number, number];
type EventRow = [number, string, string, string | null];

interface Waiter {
  prefix: string;
  wake: (err?: Error) => void;
}

/**
 * The smallest string greater than every string starting with `prefix`, in SQLite's (UTF-8 byte =
 * code point) order, or undefined when there is none. Incrementing the last code point is exact:
 * `s >= prefix && s < upper` iff `s` starts with `prefix`.
 */
export function prefixUpperBound(prefix: string): string | undefined {
  const cps = Array.from(prefix, (c) => c.codePointAt(0)!);
  while (cps.length > 0) {
    let last = cps.pop()!;
    if (last < 0x10ffff) {
      last += 1;
      if (last === 0xd800) last = 0xe000; // skip the surrogate range: not valid scalar values
      cps.push(last);
      return String.fromCodePoint(...cps);
    }
  }
  return undefined;
}


export class EmbeddedKvStore implements KvStore {
  private closed = false;
  // Waiters grouped by prefix: a commit checks each distinct prefix once against its keys.
  private readonly waiters = new Map<string, Set<Waiter>>();

  private readonly stmts;
  private readonly applyTxn: (txn: KvTxn) => { succeeded: boolean; revision: number; keys: string[] };
  private readonly readRange: (prefix: string) => KvRange;
  private readonly readChanges: (prefix: string, after: number) => { events: KvEvent[]; revision: number };

  private constructor(
    private readonly db: Db,
    readonly historyLimit: number,
    readonly maxEventsPerCall: number,
  ) {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(`
      CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL,
        create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS events (rev INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
        key TEXT NOT NULL, value TEXT, PRIMARY KEY (rev, seq)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('oldest', 1);
    `);
    const s = {
      getMeta: db.prepare<[string], number>('SELECT value FROM meta WHERE name = ?').pluck(),
      setMeta: db.prepare<[number, string]>('UPDATE meta SET value = ? WHERE name = ?'),
      getKey: db.prepare<[string], Row>('SELECT key, value, create_rev, mod_rev FROM kv WHERE key = ?').raw(),
      modRev: db.prepare<[string], number>('SELECT mod_rev FROM kv WHERE key = ?').pluck(),
      upsert: db.prepare<[string, string, number, number]>(
        `INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev`,
      ),
      del: db.prepare<[string]>('DELETE FROM kv WHERE key = ?'),
      addEvent: db.prepare<[number, number, string, string, string | null]>(
        'INSERT INTO events (rev, seq, type, key, value) VALUES (?, ?, ?, ?, ?)',
      ),
      trim: db.prepare<[number]>('DELETE FROM events WHERE rev < ?'),
      rangeAll: db.prepare<[], Row>('SELECT key, value, create_rev, mod_rev FROM kv ORDER BY key').raw(),
      rangeFrom: db.prepare<[string], Row>('SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? ORDER BY key').raw(),
      rangeBetween: db.prepare<[string, string], Row>(
        'SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? AND key < ? ORDER BY key',
      ).raw(),
      eventsAll: db.prepare<[number, number, number], EventRow>(
        'SELECT rev, type, key, value FROM events WHERE rev > ? AND rev <= ? ORDER BY rev, seq LIMIT ?',
      ).raw(),
      eventsFrom: db.prepare<[number, number, string, number], EventRow>(
        'SELECT rev, type, key, value FROM events WHERE rev > ? AND rev <= ? AND key >= ? ORDER BY rev, seq LIMIT ?',
      ).raw(),
      eventsBetween: db.prepare<[number, number, string, string, number], EventRow>(
        'SELECT rev, type, key, value FROM events WHERE rev > ? AND rev <= ? AND key >= ? AND key < ? ORDER BY rev, seq LIMIT ?',
      ).raw(),
    };
    this.stmts = s;

    const meta = (name: string): number => {
      const v = s.getMeta.get(name);
      if (v === undefined) throw new Error(`metadata store is missing its '${name}' counter`);
      return v;
    };
    const trimTo = (revision: number): void => {
      const keepFrom = revision - this.historyLimit + 1;
      if (keepFrom > meta('oldest')) {
        s.trim.run(keepFrom);
        s.setMeta.run(keepFrom, 'oldest');
      }
    };
    db.transaction(() => trimTo(meta('revision'))).immediate();

    this.applyTxn = db.transaction((txn: KvTxn) => {
      const current = meta('revision');
      for (const c of txn.compare ?? []) {
        if ((s.modRev.get(c.key) ?? 0) !== c.modRevision) return { succeeded: false, revision: current, keys: [] };
      }
      const rev = current + 1;
      const keys: string[] = [];
      let seq = 0;
      for (const p of txn.put ?? []) {
        s.upsert.run(p.key, p.value, rev, rev);
        s.addEvent.run(rev, seq++, 'put', p.key, p.value);
        keys.push(p.key);
      }
      for (const k of txn.delete ?? []) {
        if (s.del.run(k).changes === 0) continue; // deleting a missing key changes nothing
        s.addEvent.run(rev, seq++, 'delete', k, null);
        keys.push(k);
      }
      if (seq === 0) return { succeeded: true, revision: current, keys };
      s.setMeta.run(rev, 'revision');
      trimTo(rev);
      return { succeeded: true, revision: rev, keys };
    }).immediate;

    this.readRange = db.transaction((prefix: string): KvRange => {
      const upper = prefixUpperBound(prefix);
      const rows =
        prefix === '' ? s.rangeAll.all() : upper === undefined ? s.rangeFrom.all(prefix) : s.rangeBetween.all(prefix, upper);
      const entries = new Array<KvEntry>(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i]!;
        entries[i] = { key: r[0], value: r[1], createRevision: r[2], modRevision: r[3] };
      }
      return { entries, revision: meta('revision') };
    }).deferred;

    this.readChanges = db.transaction((prefix: string, after: number) => {
      const revision = meta('revision');
      const oldest = meta('oldest');
      if (after < oldest - 1) throw new CompactedError(after, oldest);
      if (after >= revision) return { events: [], revision };
      const upper = prefixUpperBound(prefix);
      const fetch = (from: number, to: number, limit: number): EventRow[] =>
        prefix === ''
          ? s.eventsAll.all(from, to, limit)
          : upper === undefined
            ? s.eventsFrom.all(from, to, prefix, limit)
            : s.eventsBetween.all(from, to, prefix, upper, limit);
      const cap = this.maxEventsPerCall;
      let rows = fetch(after, revision, cap + 1);
      let through = revision;
      if (rows.length > cap) {
        // Cut at a revision boundary so that the caller, continuing from `through`, misses none
        // of a revision's events. A single revision larger than the cap is returned whole.
        const cut = rows[cap]![0];
        let n = cap;
        while (n > 0 && rows[n - 1]![0] === cut) n--;
        if (n > 0) {
          rows.length = n;
          through = rows[n - 1]![0];
        } else {
          rows = fetch(cut - 1, cut, Number.MAX_SAFE_INTEGER);
          through = cut;
        }
      }
      const events = rows.map(([rev, type, key, value]): KvEvent =>
        type === 'put' ? { type: 'put', key, value: value ?? '', revision: rev } : { type: 'delete', key, revision: rev },
      );
      return { events, revision: through };
    }).deferred;
  }

  static open(path: string, opts: EmbeddedKvOptions = {}): EmbeddedKvStore {
    const historyLimit = opts.historyLimit ?? DEFAULT_HISTORY_LIMIT;
    const maxEvents = opts.maxEventsPerCall ?? DEFAULT_MAX_EVENTS;
    if (!Number.isSafeInteger(historyLimit) || historyLimit < 1) {
      throw new RangeError(`historyLimit must be a positive integer, got ${historyLimit}`);
    }
    if (!Number.isSafeInteger(maxEvents) || maxEvents < 1) {
      throw new RangeError(`maxEventsPerCall must be a positive integer, got ${maxEvents}`);
    }
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    const db = new Database(path);
    try {
      return new EmbeddedKvStore(db, historyLimit, maxEvents);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private check(): void {
    if (this.closed) throw new KvStoreClosedError();
  }

  async revision(): Promise<number> {
    this.check();
    return this.stmts.getMeta.get('revision') ?? 0;
  }

  /** The oldest revision whose events are still kept: changesSince accepts afterRevision >= this - 1. */
  async oldestRevision(): Promise<number> {
    this.check();
    return this.stmts.getMeta.get('oldest') ?? 1;
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.check();
    checkString('key', key, false);
    const r = this.stmts.getKey.get(key);
    return r && { key: r[0], value: r[1], createRevision: r[2], modRevision: r[3] };
  }

  /** Keys starting with `prefix`, sorted by code point (SQLite's UTF-8 byte order). */
  async range(prefix: string): Promise<KvRange> {
    this.check();
    checkString('prefix', prefix, true);
    return this.readRange(prefix);
  }

  async txn(txn: KvTxn): Promise<KvTxnResult> {
    this.check();
    checkTxn(txn);
    const { succeeded, revision, keys } = this.applyTxn(txn);
    if (keys.length > 0) this.notify(keys);
    return { succeeded, revision };
  }

  async changesSince(prefix: string, afterRevision: number, timeoutMs: number): Promise<{ events: KvEvent[]; revision: number }> {
    this.check();
    checkString('prefix', prefix, true);
    checkAfter(afterRevision);
    if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) throw new TypeError('timeoutMs must be a number');
    const first = this.readChanges(prefix, afterRevision);
    // A cursor ahead of the store means the caller followed another history (the store was
    // replaced): answer at once so that it can reload, rather than after the timeout.
    if (first.events.length > 0 || timeoutMs <= 0 || afterRevision > first.revision) return first;
    await this.waitForChange(prefix, Math.min(timeoutMs, MAX_TIMEOUT_MS));
    this.check(); // closed while waiting: do not answer "nothing changed", that could be a lie
    return this.readChanges(prefix, afterRevision);
  }

  /** Resolves on the first commit touching a key under `prefix`, or after `ms`. */
  private waitForChange(prefix: string, ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let set = this.waiters.get(prefix);
      if (!set) this.waiters.set(prefix, (set = new Set()));
      const waiters = set;
      const waiter: Waiter = {
        prefix,
        wake: (err) => {
          clearTimeout(timer);
          waiters.delete(waiter);
          if (waiters.size === 0 && this.waiters.get(prefix) === waiters) this.waiters.delete(prefix);
          if (err) reject(err);
          else resolve();
        },
      };
      const timer = setTimeout(() => waiter.wake(), ms);
      waiters.add(waiter);
    });
  }

  private notify(keys: string[]): void {
    for (const [prefix, set] of [...this.waiters]) {
      if (prefix === '' || keys.some((k) => k.startsWith(prefix))) {
        for (const w of [...set]) w.wake();
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new KvStoreClosedError();
    for (const set of [...this.waiters.values()]) for (const w of [...set]) w.wake(err);
    this.db.close();
  }
}
