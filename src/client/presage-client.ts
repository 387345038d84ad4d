// The client library compute instances link: it keeps a local copy of the SMT (following the
// orchestrator's metadata by deltas), sends each I/O straight to the server that holds the
// segment, and turns STALE / NOT_OWNER answers into one refresh and a retry — never an error.

import { connectMeta, type MetaConnection } from '../api/connect.ts';
import { SuspectReporter, type OrchestratorClient } from '../api/orchestrator-client.ts';
import type { Logger } from '../common/log.ts';
import { silentLogger } from '../common/log.ts';
import { ClusterView } from '../metadata/cluster-view.ts';
import { KvReplica } from '../metadata/kv-replica.ts';
import { ROOT, segmentIdOf, smtKey, type ServerRecord, type SmtEntry, type VolumeRecord } from '../metadata/model.ts';
import { ConnectionError, ConnectionPool, isUnreachable, type LocalEndpoint } from '../protocol/connection.ts';
import { Flag, MAX_IO_BYTES, Op, OP_NAMES, ProtocolError, Status, type Response } from '../protocol/messages.ts';
import type { BlockDevice } from './block-device.ts';

export interface ClientOptions {
  /** The orchestrator's URL; with etcd metadata it may be omitted (found by leader election). */
  orchestratorUrl?: string;
  /** "embedded" (default) or etcd://HOST:PORT[,…]: with etcd the client watches the SMT in etcd directly. */
  meta?: string;
  /** One request's timeout; a server that does not answer in time is treated as unreachable. */
  requestTimeoutMs?: number;
  /** How long one I/O keeps retrying (redirects, failover, a server restarting) before failing. */
  opTimeoutMs?: number;
  /** A read that another replica could serve waits at most this long for a silent server (default 2000 ms). */
  readFailoverMs?: number;
  /**
   * Follow SMT changes in the background (default true). A lazy client (false) loads the SMT once
   * and catches up only when a server redirects it.
   */
  watch?: boolean;
  /** A storage server in this process (an NBD export inside a server): its segments are served without a socket. */
  local?: LocalEndpoint;
  logger?: Logger;
}

export interface ClientStats {
  requests: number;
  redirects: number;
  retries: number;
  failovers: number;
}

export class PresageClient {
  readonly api: OrchestratorClient;
  private readonly meta: MetaConnection;
  readonly view: ClusterView;
  readonly stats: ClientStats = { requests: 0, redirects: 0, retries: 0, failovers: 0 };
  private readonly replica: KvReplica;
  readonly pool: ConnectionPool;
  private readonly volumes = new Map<string, Volume>();
  readonly log: Logger;
  readonly opTimeoutMs: number;
  readonly readFailoverMs: number;
  /** Servers that recently failed to answer: reads try other replicas first for a while. */
  private readonly suspects = new Map<string, number>();
  private readonly unreachable: SuspectReporter;

  private constructor(readonly opts: ClientOptions) {
    this.log = opts.logger ?? silentLogger;
    this.meta = connectMeta(opts);
    this.api = this.meta.api;
    // Timeouts are not reported (see segmentRequest): a slow server is not a dead one.
    this.unreachable = new SuspectReporter(this.api, 'a client');
    this.replica = new KvReplica(this.meta.source, ROOT, {
      pollTimeoutMs: 20000,
      retryDelayMs: 300,
      follow: opts.watch ?? true,
      onError: (err) => this.log.debug({ err: (err as Error).message }, 'metadata watch error; retrying'),
    });
    this.view = new ClusterView(this.replica);
    this.pool = new ConnectionPool({ requestTimeoutMs: opts.requestTimeoutMs ?? 10000, connectTimeoutMs: 2000, local: opts.local });
    // A server marked down (e.g. it hung: connections open, no answers) will not answer the requests
    // in flight to it: fail them now, so they retry on the new primary instead of waiting out their timeout.
    this.view.on('server-down', (s: ServerRecord) => this.pool.close(s.dataAddr));
    this.opTimeoutMs = opts.opTimeoutMs ?? 60000;
    this.readFailoverMs = opts.readFailoverMs ?? 2000;
  }

  static async connect(opts: ClientOptions): Promise<PresageClient> {
    const c = new PresageClient(opts);
    await c.replica.start();
    return c;
  }

  /**
   * Opens a volume by name. The same object is returned while the volume is the same one (so a
   * flush covers all its writers); a volume deleted and created again under the name gets a new one.
   */
  async openVolume(name: string): Promise<Volume> {
    let rec = this.view.volumes.get(name);
    if (!rec) {
      await this.view.refresh();
      rec = this.view.volumes.get(name);
    }
    if (!rec) throw new Error(`no volume named "${name}"`);
    const open = this.volumes.get(name);
    if (open && open.record.createdAt === rec.createdAt && open.size === rec.size) return open;
    const v = new Volume(this, rec);
    this.volumes.set(name, v);
    return v;
  }

  async close(): Promise<void> {
    this.pool.closeAll();
    const stopped = this.replica.stop();
    await this.meta.close();
    await stopped;
  }

  /**
   * Sends one request for one segment, following redirects and failing over between replicas
   * until it succeeds, fails for good (a typed ProtocolError), or the op deadline passes.
   */
  async segmentRequest(segmentId: string, op: Op, offset: number, length: number, payload: Buffer, flags = 0): Promise<Response> {
    const deadline = Date.now() + this.opTimeoutMs;
    const readable = op === Op.READ || op === Op.CHECKSUMS || op === Op.STAT;
    const avoid = new Set<string>(); // replicas that failed this read (unreachable or corrupt)
    let lastError = '';
    let noSpaceUntil = 0; // set by the first NO_SPACE: how long to wait for the orchestrator to move the write set
    for (let attempt = 0; ; attempt++) {
      if (Date.now() > deadline) {
        throw new ProtocolError(Status.UNAVAILABLE, `${OP_NAMES[op]} ${segmentId}: gave up after ${this.opTimeoutMs} ms (${lastError})`);
      }
      let entry = this.view.entry(segmentId);
      if (!entry) {
        await this.view.refresh().catch(() => {});
        entry = this.view.entry(segmentId);
        if (!entry) throw new ProtocolError(Status.NOT_OWNER, `no segment ${segmentId} (was the volume deleted?)`);
      }
      const target = this.pickTarget(entry, readable, avoid);
      const alternatives = readable && entry.replicas.some((r) => r !== target && !avoid.has(r));
      if (!target) {
        // Every replica failed this read: start over after the metadata has had a chance to move.
        avoid.clear();
        await this.backoff(attempt);
        continue;
      }
      const server = this.view.servers.get(target);
      if (!server) {
        await this.view.refresh().catch(() => {});
        await this.backoff(attempt);
        continue;
      }
      this.stats.requests++;
      let res: Response;
      try {
        // A read with another replica to go to does not wait long for a silent (hung) server.
        const timeout = alternatives ? Math.min(this.readFailoverMs, this.pool.requestTimeoutMs) : undefined;
        res = await this.pool.get(server.dataAddr).send({ op, flags, epoch: entry.epoch, segmentId, offset, length, payload }, timeout);
      } catch (err) {
        if (!(err instanceof ConnectionError)) throw err;
        lastError = err.message;
        this.stats.retries++;
        this.suspects.set(target, Date.now() + SUSPECT_MS);
        if (isUnreachable(err)) this.unreachable.report(target);
        if (readable && entry.replicas.length > 1) {
          // Reads fail over to another replica at once instead of waiting for the orchestrator.
          avoid.add(target);
          this.stats.failovers++;
          continue;
        }
        await this.view.refresh().catch(() => {});
        await this.backoff(attempt, segmentId);
        continue;
      }
      this.suspects.delete(target);
      switch (res.status) {
        case Status.OK:
          return res;
        case Status.STALE:
        case Status.NOT_OWNER:
          this.stats.redirects++;
          lastError = res.payload.toString('utf8');
          await this.catchUp(segmentId, res.epoch);
          continue;
        case Status.UNAVAILABLE:
          this.stats.retries++;
          lastError = res.payload.toString('utf8');
          await this.view.refresh().catch(() => {});
          await this.backoff(attempt, segmentId);
          continue;
        case Status.NO_SPACE:
          // A full replica: with others in the set the orchestrator takes the full copy out within
          // a heartbeat or so, and the write then succeeds on the new set. Waited for only briefly,
          // so that a cluster with no room anywhere answers ENOSPC within about a second.
          if (noSpaceUntil === 0) noSpaceUntil = Date.now() + NO_SPACE_WAIT_MS;
          if (entry.replicas.length + (entry.joining?.length ?? 0) > 1 && Date.now() < noSpaceUntil) {
            this.stats.retries++;
            lastError = res.payload.toString('utf8');
            await this.view.refresh().catch(() => {});
            await this.backoff(attempt, segmentId);
            continue;
          }
          throw new ProtocolError(res.status, res.payload.toString('utf8'), res.epoch);
        case Status.CORRUPT:
        case Status.IO_ERROR:
          // A bad block or a failing disk on one replica: another replica can still serve the read.
          if (readable && entry.replicas.some((r) => r !== target && !avoid.has(r))) {
            avoid.add(target);
            this.stats.failovers++;
            continue;
          }
          throw new ProtocolError(res.status, res.payload.toString('utf8'), res.epoch);
        default:
          throw new ProtocolError(res.status, res.payload.toString('utf8'), res.epoch);
      }
    }
  }

  private pickTarget(entry: SmtEntry, readable: boolean, avoid: Set<string>): string | undefined {
    if (!readable) return entry.replicas[0];
    const now = Date.now();
    const usable = entry.replicas.filter((r) => !avoid.has(r));
    return usable.find((r) => !((this.suspects.get(r) ?? 0) > now)) ?? usable[0];
  }

  /** After a redirect: pull the metadata delta; if the server knew a newer epoch, wait briefly for it. */
  private async catchUp(segmentId: string, serverEpoch: number): Promise<void> {
    await this.view.refresh().catch(() => {});
    const until = Date.now() + 2000;
    while ((this.view.entry(segmentId)?.epoch ?? 0) < serverEpoch && Date.now() < until) {
      await sleep(20);
      await this.view.refresh().catch(() => {});
    }
  }

  /** Waits before a retry, but wakes at once when the segment's SMT entry changes (e.g. the failover committed). */
  private backoff(attempt: number, segmentId?: string): Promise<unknown> {
    const ms = Math.min(10 * 2 ** Math.min(attempt, 6), 500);
    if (!segmentId) return sleep(ms);
    const key = smtKey(segmentId);
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.view.off('change', onChange);
        resolve();
      };
      const onChange = (ev: { key: string }) => {
        if (ev.key === key) done();
      };
      const timer = setTimeout(done, ms);
      this.view.on('change', onChange);
    });
  }
}

/** A volume opened through the client: byte-addressed I/O at any offset and length. */
export class Volume implements BlockDevice {
  readonly name: string;
  readonly size: number;
  readonly segmentSize: number;
  /** Segments written since the last flush: a flush fsyncs exactly these. */
  private readonly dirty = new Set<number>();

  constructor(private readonly client: PresageClient, readonly record: VolumeRecord) {
    this.name = record.name;
    this.size = record.size;
    this.segmentSize = record.segmentSize;
  }

  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new ProtocolError(Status.BAD_REQUEST, `invalid range offset=${offset} length=${length}`);
    }
    if (offset + length > this.size) {
      throw new ProtocolError(Status.OUT_OF_RANGE, `range ${offset}+${length} is past the end of volume ${this.name} (${this.size} bytes)`);
    }
  }

  /** Splits a volume range into per-segment pieces of at most MAX_IO_BYTES. */
  private pieces(offset: number, length: number): { seg: number; segOffset: number; volOffset: number; len: number }[] {
    const out = [];
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const seg = Math.floor(pos / this.segmentSize);
      const segOffset = pos - seg * this.segmentSize;
      const len = Math.min(end - pos, this.segmentSize - segOffset, MAX_IO_BYTES);
      out.push({ seg, segOffset, volOffset: pos, len });
      pos += len;
    }
    return out;
  }

  private segId(seg: number): string {
    return segmentIdOf(this.name, seg);
  }

  /** The segment of [offset, offset + length) when the range is one request's worth (the common case), else -1. */
  private single(offset: number, length: number): number {
    const seg = Math.floor(offset / this.segmentSize);
    return length <= MAX_IO_BYTES && offset + length <= (seg + 1) * this.segmentSize ? seg : -1;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    const one = this.single(offset, length);
    if (one >= 0 && length > 0) {
      // One request: its payload is the answer, with no buffer to allocate and copy into.
      const res = await this.client.segmentRequest(this.segId(one), Op.READ, offset - one * this.segmentSize, length, EMPTY);
      if (res.payload.length !== length) throw new ProtocolError(Status.IO_ERROR, `short read from ${this.segId(one)}: ${res.payload.length} of ${length} bytes`);
      return res.payload;
    }
    const out = Buffer.allocUnsafe(length);
    await Promise.all(this.pieces(offset, length).map(async (p) => {
      const res = await this.client.segmentRequest(this.segId(p.seg), Op.READ, p.segOffset, p.len, EMPTY);
      if (res.payload.length !== p.len) throw new ProtocolError(Status.IO_ERROR, `short read from ${this.segId(p.seg)}: ${res.payload.length} of ${p.len} bytes`);
      res.payload.copy(out, p.volOffset - offset);
    }));
    return out;
  }

  async write(offset: number, data: Buffer, opts: { fua?: boolean } = {}): Promise<void> {
    this.check(offset, data.length);
    const flags = opts.fua ? Flag.FUA : 0;
    const one = this.single(offset, data.length);
    if (one >= 0 && data.length > 0) {
      await this.client.segmentRequest(this.segId(one), Op.WRITE, offset - one * this.segmentSize, data.length, data, flags);
      this.dirty.add(one);
      return;
    }
    await Promise.all(this.pieces(offset, data.length).map(async (p) => {
      const chunk = data.subarray(p.volOffset - offset, p.volOffset - offset + p.len);
      await this.client.segmentRequest(this.segId(p.seg), Op.WRITE, p.segOffset, p.len, chunk, flags);
      this.dirty.add(p.seg);
    }));
  }

  async trim(offset: number, length: number): Promise<void> {
    this.check(offset, length);
    await Promise.all(this.pieces(offset, length).map(async (p) => {
      await this.client.segmentRequest(this.segId(p.seg), Op.TRIM, p.segOffset, p.len, EMPTY);
      this.dirty.add(p.seg);
    }));
  }

  /** Our TRIM already guarantees zeros on read, so WRITE_ZEROES is a trim (made durable with FUA). */
  async writeZeroes(offset: number, length: number, opts: { fua?: boolean } = {}): Promise<void> {
    await this.trim(offset, length);
    if (opts.fua) await this.flushSegments([...new Set(this.pieces(offset, length).map((p) => p.seg))]);
  }

  async flush(): Promise<void> {
    const segs = [...this.dirty];
    this.dirty.clear();
    try {
      await this.flushSegments(segs);
    } catch (err) {
      for (const s of segs) this.dirty.add(s);
      throw err;
    }
  }

  private async flushSegments(segs: number[]): Promise<void> {
    await Promise.all(segs.map((s) => this.client.segmentRequest(this.segId(s), Op.FLUSH, 0, 0, EMPTY)));
  }
}

const EMPTY = Buffer.alloc(0);
/** How long a server that failed to answer stays second choice for reads. */
const SUSPECT_MS = 5000;
/**
 * How long a write that met a full replica waits for the orchestrator to take that copy out of the
 * write set before ENOSPC is final (the server reports at once; the move takes a few hundred ms).
 */
const NO_SPACE_WAIT_MS = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
