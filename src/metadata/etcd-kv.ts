// The etcd metadata backend: a KvStore over a real etcd (v3 API, `etcd3` client).
//
// Mapping: keys are UTF-8 bytes (etcd orders bytes, which for UTF-8 is code point order, the same
// order as the embedded store); revisions are etcd's (it bumps once per txn that writes, like ours);
// a txn is one etcd Txn comparing mod_revision (0 ⇒ create_revision == 0, "absent") with every
// put/delete in the success branch. Ranges are read page by page at one revision, so a million keys
// never hit gRPC's message limit and still form one consistent snapshot.
//
// Watches: per prefix the store keeps ONE etcd watch (a "prefix watch") with a bounded buffer of
// recent events. Every changesSince long-poll and every watchPrefix subscriber on that prefix is
// served from it, so 100 followers in one process cost etcd one watcher, not 100 watch creations per
// round. A watch only proves "no change under the prefix up to revision R" through etcd's progress
// notifications (sent to idle, synced watchers every --experimental-watch-progress-notify-interval,
// 10 min by default: run etcd with ~1 s); until then an empty answer reports the last revision it
// can vouch for, which is never wrong, only behind (the interface allows that: a stale copy is slower,
// never dangerous).

import { Etcd3, type IOptions } from 'etcd3';
import type * as RPC from 'etcd3';
import { KvStoreClosedError } from './embedded-kv.ts';
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
import { etcdClientOptions, explainEtcdError, processEtcdSecurity, type EtcdSecurity } from './etcd-security.ts';

export interface EtcdKvOptions {
  /** Keys per range request (default 10000). */
  pageSize?: number;
  /** At most this many events per changesSince answer (default 10000; a revision is never split). */
  maxEventsPerCall?: number;
  /** Events a prefix watch keeps for followers that lag (default 100000). */
  bufferEvents?: number;
  /**
   * How long an answer may wait for the watch to vouch for the current revision when the caller
   * asked for no (or a shorter) wait (default 2000 ms). Bounded: past it we answer with less.
   */
  settleMs?: number;
  /** A key prefix every key of this store lives under, invisible to callers (default none). */
  namespace?: string;
  /**
   * The key read (count only) to learn the current revision (default '/presage/', under the
   * namespace): with etcd RBAC a user may read only its own prefix, so the probe must lie inside it.
   */
  revisionProbeKey?: string;
}

export interface EtcdUrl {
  /** `http://host:port` (`https://` for etcds://) endpoints for the etcd3 client. */
  hosts: string[];
  /** etcds://: TLS to every endpoint. */
  tls: boolean;
  /** The path after the hosts, e.g. `/presage/` in `etcd://h:2379/presage/` ('' when none). */
  namespace: string;
}

/** Parses `etcd://host:port[,host:port…][/namespace]` (`etcds://` for TLS). */
export function parseEtcdUrl(url: string): EtcdUrl {
  if (typeof url !== 'string') throw new TypeError('etcd URL must be a string');
  const m = /^etcd(s?):\/\/([^/]+)(\/.*)?$/.exec(url.trim());
  if (!m) throw new Error(`bad etcd URL ${JSON.stringify(url)}: expected etcd://host:port[,host:port…] (etcds:// for TLS)`);
  const tls = m[1] === 's';
  const hosts = m[2]!.split(',').map((hp) => {
    const h = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(hp);
    const port = h ? Number(h[2]) : 0;
    if (!h || port < 1 || port > 65535) throw new Error(`bad etcd URL ${JSON.stringify(url)}: ${JSON.stringify(hp)} is not host:port`);
    return `${tls ? 'https' : 'http'}://${h[1]}:${port}`;
  });
  const path = m[3] ?? '';
  return { hosts, tls, namespace: path === '/' ? '' : path };
}


/** The end of etcd's byte range holding every key that starts with `prefix` ([0] = to the end). */
export function prefixRangeEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

function isCompactedRpcError(err: unknown): boolean {
  return err instanceof Error && /required revision has been compacted/.test(err.message);
}

export interface PrefixSubscription {
  cancel(): void;
}

type Listener = (events: KvEvent[], revision: number) => void;

/**
 * One etcd watch on a prefix from `base + 1`, its recent events and how far it is known complete.
 * Invariant: `events` holds every event under the prefix with revision in (trimmedThrough, covered].
 */
class PrefixWatch {
  covered: number;
  trimmedThrough: number;
  events: KvEvent[] = [];
  error: Error | undefined;
  readonly ready: Promise<void>;
  readonly listeners = new Set<{ fn: Listener; onError: (err: Error) => void }>();
  users = 0;
  private wakers = new Set<() => void>();
  private stream: RPC.IDuplexStream<RPC.IWatchRequest, RPC.IWatchResponse> | undefined;
  private resolveReady!: () => void;

  constructor(
    private readonly store: EtcdKvStore,
    readonly prefix: string,
    private readonly key: Buffer,
    private readonly end: Buffer,
    readonly base: number,
    private readonly maxBuffered: number,
  ) {
    this.covered = base;
    this.trimmedThrough = base;
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // observed through `error` too
    void this.open();
  }

  private rejectReady!: (err: Error) => void;

  private async open(): Promise<void> {
    try {
      const stream = await this.store.client.watchClient.watch();
      if (this.error) {
        this.closeStream(stream);
        return;
      }
      this.stream = stream;
      stream.on('data', (res: RPC.IWatchResponse) => this.onData(res));
      stream.on('error', (err: Error) => this.fail(new Error(`etcd watch on ${JSON.stringify(this.prefix)} failed: ${err.message}`)));
      stream.on('end', () => this.fail(new Error(`etcd watch on ${JSON.stringify(this.prefix)} ended`)));
      stream.write({
        create_request: { key: this.key, range_end: this.end, start_revision: String(this.base + 1), progress_notify: true },
      });
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /**
   * Half-closes before cancelling: the etcd3 client counts an error on a still-writable stream
   * against the host's circuit breaker, and our own cancel is no failure of etcd.
   */
  private closeStream(stream: RPC.IDuplexStream<RPC.IWatchRequest, RPC.IWatchResponse> | undefined): void {
    if (!stream) return;
    try {
      stream.end();
      stream.cancel?.();
    } catch {
      // already gone
    }
  }

  private onData(res: RPC.IWatchResponse): void {
    if (this.error) return;
    if (res.canceled) {
      const compact = Number(res.compact_revision ?? 0);
      this.fail(
        compact > 0
          ? new CompactedError(this.base, compact)
          : new Error(`etcd cancelled the watch on ${JSON.stringify(this.prefix)}: ${res.cancel_reason || 'no reason given'}`),
      );
      return;
    }
    if (res.created) {
      this.resolveReady();
      return;
    }
    if (res.events.length === 0) {
      // A progress notification: sent only to a synced watcher, after every earlier event.
      const rev = Number(res.header.revision);
      if (rev > this.covered) {
        this.covered = rev;
        this.publish([]);
      }
      return;
    }
    const fresh: KvEvent[] = [];
    const nsLen = this.store.nsBytes.length;
    for (const ev of res.events) {
      const revision = Number(ev.kv.mod_revision);
      if (revision <= this.covered) continue;
      const key = ev.kv.key.subarray(nsLen).toString('utf8');
      fresh.push(ev.type === 'Put' ? { type: 'put', key, value: ev.kv.value.toString('utf8'), revision } : { type: 'delete', key, revision });
    }
    if (fresh.length === 0) return;
    // A response holds whole revisions (etcd never splits one without `fragment`).
    for (const e of fresh) this.events.push(e);
    this.covered = fresh[fresh.length - 1]!.revision;
    this.trim();
    this.publish(fresh);
  }

  private trim(): void {
    if (this.events.length <= this.maxBuffered) return;
    let n = this.events.length - Math.floor(this.maxBuffered / 2);
    const cut = this.events[n - 1]!.revision;
    while (n < this.events.length && this.events[n]!.revision === cut) n++;
    this.trimmedThrough = cut;
    this.events = this.events.slice(n);
  }

  private publish(fresh: KvEvent[]): void {
    for (const w of [...this.wakers]) w();
    for (const l of [...this.listeners]) {
      try {
        l.fn(fresh, this.covered);
      } catch {
        // a subscriber's bug must not stop the others
      }
    }
  }

  /** Events after `after`, at most `cap` (cut at a revision boundary), and the revision they bring to. */
  answer(after: number, cap: number): { events: KvEvent[]; revision: number } {
    const ev = this.events;
    let lo = 0;
    let hi = ev.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ev[mid]!.revision <= after) lo = mid + 1;
      else hi = mid;
    }
    if (lo === ev.length) return { events: [], revision: Math.max(after, this.covered) };
    if (ev.length - lo <= cap) return { events: ev.slice(lo), revision: this.covered };
    let n = lo + cap;
    const cut = ev[n]!.revision;
    while (n > lo && ev[n - 1]!.revision === cut) n--;
    if (n === lo) {
      n = lo + cap;
      while (n < ev.length && ev[n]!.revision === cut) n++;
    }
    return { events: ev.slice(lo, n), revision: ev[n - 1]!.revision };
  }

  /** Resolves on the next event or progress, or after `ms`. */
  waitChange(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
      this.wakers.add(wake);
    });
  }

  fail(err: Error): void {
    if (this.error) return;
    this.error = err;
    this.rejectReady(err);
    this.store.forget(this);
    this.closeStream(this.stream);
    for (const w of [...this.wakers]) w();
    for (const l of [...this.listeners]) {
      try {
        l.onError(err);
      } catch {
        // ignore
      }
    }
    this.listeners.clear();
  }
}

/** A write refused because the leadership it was made under is over (see EtcdKvStore.fence). */
export class FencedError extends Error {
  readonly code = 'ERR_PRESAGE_FENCED';
}

export class EtcdKvStore implements KvStore {
  readonly nsBytes: Buffer;
  /**
   * When set and returning a fence, every transaction also requires that key (raw, outside any
   * namespace) to still have that create revision: a deposed leader's writes fail (FencedError)
   * instead of racing its successor's.
   */
  fence?: () => { key: Buffer; createRevision: number } | undefined;
  private closed = false;
  private readonly hubs = new Map<string, PrefixWatch>();
  private readonly temps = new Set<PrefixWatch>();
  private readonly pageSize: number;
  private readonly maxEventsPerCall: number;
  private readonly bufferEvents: number;
  private readonly settleMs: number;
  /** Where connect() went, as the operator named it (for errors that say what access failed). */
  private where?: { url: string; user?: string };
  private readonly probeKey: Buffer;

  /** Wraps a client; `ownsClient` closes it with the store. */
  constructor(
    readonly client: Etcd3,
    opts: EtcdKvOptions = {},
    private readonly ownsClient = false,
  ) {
    this.pageSize = opts.pageSize ?? 10_000;
    this.maxEventsPerCall = opts.maxEventsPerCall ?? 10_000;
    this.bufferEvents = opts.bufferEvents ?? 100_000;
    this.settleMs = opts.settleMs ?? 2_000;
    for (const [name, v] of [
      ['pageSize', this.pageSize],
      ['maxEventsPerCall', this.maxEventsPerCall],
      ['bufferEvents', this.bufferEvents],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    if (!(this.settleMs >= 0)) throw new RangeError(`settleMs must be >= 0, got ${this.settleMs}`);
    const ns = opts.namespace ?? '';
    checkString('namespace', ns, true);
    this.nsBytes = Buffer.from(ns, 'utf8');
    this.probeKey = this.k(opts.revisionProbeKey ?? '/presage/');
  }

  /**
   * Connects to `etcd[s]://host:port[,host:port…][/namespace]` (or explicit hosts) with this
   * process's etcd TLS and user (etcd-security.ts) unless `security` is given.
   */
  static connect(target: string | { hosts: string[] }, opts: EtcdKvOptions = {}, clientOpts: Partial<IOptions> = {}, security: EtcdSecurity | undefined = processEtcdSecurity()): EtcdKvStore {
    const { hosts, namespace, tls } = typeof target === 'string' ? parseEtcdUrl(target) : { hosts: target.hosts, namespace: '', tls: target.hosts.some((h) => h.startsWith('https:')) };
    const client = new Etcd3({ hosts, ...etcdClientOptions(tls, security), ...clientOpts });
    const store = new EtcdKvStore(client, { namespace: namespace || undefined, ...opts }, true);
    store.where = { url: typeof target === 'string' ? target.trim() : hosts.join(','), user: security?.user };
    return store;
  }

  /** An access failure (credentials, TLS, reachability) restated for the operator; others unchanged. */
  explain(err: unknown): unknown {
    return this.where ? explainEtcdError(err, this.where.url, this.where.user) : err;
  }

  private check(): void {
    if (this.closed) throw new KvStoreClosedError();
  }

  private k(key: string): Buffer {
    return this.nsBytes.length === 0 ? Buffer.from(key, 'utf8') : Buffer.concat([this.nsBytes, Buffer.from(key, 'utf8')]);
  }

  private bounds(prefix: string): { key: Buffer; end: Buffer } {
    const key = this.k(prefix);
    if (key.length === 0) return { key: Buffer.from([0]), end: Buffer.from([0]) };
    return { key, end: prefixRangeEnd(key) };
  }

  private entry(kv: RPC.IKeyValue): KvEntry {
    return {
      key: kv.key.subarray(this.nsBytes.length).toString('utf8'),
      value: kv.value.toString('utf8'),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
    };
  }

  async revision(): Promise<number> {
    this.check();
    const res = await this.client.kv.range({ key: this.probeKey, limit: 1, keys_only: true, count_only: true }).catch((e) => Promise.reject(this.explain(e)));
    return Number(res.header.revision);
  }

  async get(key: string): Promise<KvEntry | undefined> {
    this.check();
    checkString('key', key, false);
    const res = await this.client.kv.range({ key: this.k(key) }).catch((e) => Promise.reject(this.explain(e)));
    const kv = res.kvs[0];
    return kv && this.entry(kv);
  }

  /** Keys starting with `prefix`, sorted by code point, read page by page at one revision. */
  async range(prefix: string): Promise<KvRange> {
    this.check();
    checkString('prefix', prefix, true);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.rangeOnce(prefix);
      } catch (err) {
        // Compacted between two pages: the snapshot is gone, take a newer one.
        if (!isCompactedRpcError(err) || attempt >= 3) throw err;
      }
    }
  }

  private async rangeOnce(prefix: string): Promise<KvRange> {
    const { key, end } = this.bounds(prefix);
    const entries: KvEntry[] = [];
    let revision = 0;
    let from = key;
    for (;;) {
      this.check();
      const res = await this.client.kv.range({
        key: from,
        range_end: end,
        limit: this.pageSize,
        ...(revision ? { revision } : {}),
      }).catch((e) => Promise.reject(this.explain(e)));
      if (!revision) revision = Number(res.header.revision);
      for (const kv of res.kvs) entries.push(this.entry(kv));
      if (!res.more || res.kvs.length === 0) break;
      // The next page starts just after the last key of this one.
      from = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.from([0])]);
    }
    return { entries, revision };
  }

  async txn(txn: KvTxn): Promise<KvTxnResult> {
    this.check();
    checkTxn(txn);
    const compare: RPC.ICompare[] = (txn.compare ?? []).map((c) =>
      c.modRevision === 0
        ? { key: this.k(c.key), target: 'Create', result: 'Equal', create_revision: 0 }
        : { key: this.k(c.key), target: 'Mod', result: 'Equal', mod_revision: c.modRevision },
    );
    const success: RPC.IRequestOp[] = [
      ...(txn.put ?? []).map((p): RPC.IRequestOp => ({ request_put: { key: this.k(p.key), value: Buffer.from(p.value, 'utf8') } })),
      ...(txn.delete ?? []).map((d): RPC.IRequestOp => ({ request_delete_range: { key: this.k(d) } })),
    ];
    const fence = this.fence?.();
    if (fence) compare.push({ key: fence.key, target: 'Create', result: 'Equal', create_revision: fence.createRevision });
    const res = await this.client.kv.txn({ compare, success, failure: [] }).catch((e) => Promise.reject(this.explain(e)));
    if (!res.succeeded && fence) {
      const own = await this.client.kv.range({ key: fence.key }).catch((e) => Promise.reject(this.explain(e)));
      if (Number(own.kvs[0]?.create_revision ?? 0) !== fence.createRevision) {
        throw new FencedError('this orchestrator no longer leads (its election key is gone): the write was refused');
      }
    }
    return { succeeded: res.succeeded, revision: Number(res.header.revision) };
  }

  async changesSince(prefix: string, afterRevision: number, timeoutMs: number): Promise<{ events: KvEvent[]; revision: number }> {
    this.check();
    checkString('prefix', prefix, true);
    checkAfter(afterRevision);
    if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs)) throw new TypeError('timeoutMs must be a number');
    const started = Date.now();
    const live = this.hubs.get(prefix);
    // A live watch already past the cursor vouches for its own revision: no round trip needed for a
    // long-poll. A zero-wait call wants the store's revision, so it asks.
    let target: number;
    if (timeoutMs > 0 && live && !live.error && live.trimmedThrough <= afterRevision && live.covered >= afterRevision) {
      target = live.covered;
    } else {
      target = await this.revision();
      if (afterRevision > target) return { events: [], revision: target };
    }
    const hub = this.acquire(prefix, afterRevision);
    try {
      await hub.ready.catch(() => {});
      const deadline = started + Math.max(0, timeoutMs);
      const settle = started + Math.max(timeoutMs, this.settleMs);
      for (;;) {
        this.check();
        if (hub.error) throw this.mapError(hub.error, afterRevision);
        const ans = hub.answer(afterRevision, this.maxEventsPerCall);
        if (ans.events.length > 0) return ans;
        const now = Date.now();
        const synced = hub.covered >= target;
        if (now >= (synced ? deadline : settle)) return ans;
        await hub.waitChange((synced ? deadline : settle) - now);
      }
    } finally {
      this.release(hub);
    }
  }

  /**
   * Streams every change under `prefix` after `fromRevision`, in order, through one shared etcd
   * watch: `onEvents(events, revision)` means "the copy is complete up to `revision`" (events may be
   * empty: a progress notification). `onError` ends the subscription (CompactedError: reload from
   * `range` and subscribe again; anything else: the watch broke, resubscribe from the last revision).
   */
  watchPrefix(
    prefix: string,
    fromRevision: number,
    onEvents: (events: KvEvent[], revision: number) => void,
    onError: (err: Error) => void = () => {},
  ): PrefixSubscription {
    this.check();
    checkString('prefix', prefix, true);
    checkAfter(fromRevision);
    const hub = this.acquire(prefix, fromRevision);
    let cursor = fromRevision;
    let cancelled = false;
    const sub = {
      fn: (events: KvEvent[], revision: number) => {
        const mine = events.filter((e) => e.revision > cursor);
        if (revision <= cursor && mine.length === 0) return;
        cursor = Math.max(cursor, revision);
        onEvents(mine, cursor);
      },
      onError: (err: Error) => {
        if (!cancelled) onError(this.mapError(err, cursor));
        cancel();
      },
    };
    const cancel = () => {
      if (cancelled) return;
      cancelled = true;
      hub.listeners.delete(sub);
      this.release(hub);
    };
    void hub.ready.then(
      () => {
        if (cancelled || hub.error) return;
        // What the shared watch already holds beyond our cursor, then live events.
        for (;;) {
          const ans = hub.answer(cursor, this.maxEventsPerCall);
          if (ans.events.length === 0) break;
          sub.fn(ans.events, ans.revision);
        }
        if (hub.covered > cursor) sub.fn([], hub.covered);
        hub.listeners.add(sub);
      },
      (err: Error) => sub.onError(err),
    );
    return { cancel };
  }

  private mapError(err: Error, after: number): Error {
    if (err instanceof CompactedError) return new CompactedError(after, err.oldest);
    return err;
  }

  /** The shared watch for `prefix` when it reaches back to `after`; otherwise a private one. */
  private acquire(prefix: string, after: number): PrefixWatch {
    let hub = this.hubs.get(prefix);
    if (!hub || hub.error) {
      const { key, end } = this.bounds(prefix);
      hub = new PrefixWatch(this, prefix, key, end, after, this.bufferEvents);
      this.hubs.set(prefix, hub);
    } else if (hub.trimmedThrough > after) {
      const { key, end } = this.bounds(prefix);
      hub = new PrefixWatch(this, prefix, key, end, after, this.bufferEvents);
      this.temps.add(hub);
    }
    hub.users++;
    return hub;
  }

  private release(hub: PrefixWatch): void {
    hub.users--;
    if (hub.users <= 0 && this.temps.has(hub)) {
      this.temps.delete(hub);
      hub.fail(new Error('released'));
    }
  }

  /** Called by a watch that failed: the next caller opens a new one. */
  forget(hub: PrefixWatch): void {
    if (this.hubs.get(hub.prefix) === hub) this.hubs.delete(hub.prefix);
    this.temps.delete(hub);
  }

  /** Number of etcd watches this store holds open (for tests and benchmarks). */
  get openWatches(): number {
    return this.hubs.size + this.temps.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new KvStoreClosedError();
    for (const h of [...this.hubs.values(), ...this.temps]) h.fail(err);
    if (this.ownsClient) this.client.close();
  }
}
