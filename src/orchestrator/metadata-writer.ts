// The only writer of cluster metadata. Every change is a transaction that compares what it
// read (compare-and-swap on modRevision), so concurrent writers can never interleave badly.

import crypto from 'node:crypto';
import type { RegisterRequest, RegisterResponse } from '../api/types.ts';
import { parseServerAddress } from '../common/address.ts';
import type { ClusterView } from '../metadata/cluster-view.ts';
import type { KvStore } from '../metadata/kv.ts';
import {
  CLUSTER_KEY, FLAGS_KEY, type ClusterFlags, type ClusterRecord,
  segmentCountOf, segmentIdOf, segmentLength, serverKey, smtKey, validateVolumeSpec, volumeKey,
  type ServerRecord, type ServerState, type SmtEntry, type VolumeRecord, type VolumeSpec,
} from '../metadata/model.ts';
import { placeSegments, type PlacementCandidate } from './placement.ts';

import { promote, TransitionError } from './smt-transitions.ts';

export class ConflictError extends Error {}
export class NotFoundError extends Error {}
/** The caller's identity may not do this (a server registering under another's binding). */
export class ForbiddenError extends Error {}
/** A server of another cluster reported here (an empty, foreign or misplaced metadata store). */
export class ForeignClusterError extends ConflictError {
  readonly code = 'ERR_PRESAGE_FOREIGN_CLUSTER';
}

const SERVER_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Limits checked before any work (issue #22): one volume creation writes one SMT entry per
 * segment in one transaction, so a request for 2^30 segments would hold the orchestrator for
 * minutes and its memory for gigabytes; a volume larger than the cluster can store is accepted
 * only as far as the over-commit ratio allows (1.0: no thin provisioning unless asked).
 */
export interface AdmissionLimits {
  /** Segments one volume may have (default 65 536: 64 TiB at the default 1 GiB segment). */
  maxSegmentsPerVolume: number;
  /** SMT entries the whole cluster may hold (default 1 000 000). */
  maxSegmentsPerCluster: number;
  /** Logical bytes × replicas the cluster may promise, as a multiple of the up servers' capacity (default 1.0). */
  overcommit: number;
}

export const DEFAULT_ADMISSION: AdmissionLimits = { maxSegmentsPerVolume: 65_536, maxSegmentsPerCluster: 1_000_000, overcommit: 1 };

/** A request refused before any work because it exceeds a limit (stable code for clients). */
export class LimitError extends Error {
  readonly code = 'ERR_PRESAGE_LIMIT';
}

/** What placement learns about a server beyond its record. */
export interface ServerHealth {
  risky: boolean;
  load: number;
  /** Its writes found the disk full lately: never a target. */
  full?: boolean;
}

export class MetadataWriter {
  readonly limits: AdmissionLimits;

  constructor(private readonly kv: KvStore, private readonly view: ClusterView, limits: Partial<AdmissionLimits> = {}) {
    this.limits = { ...DEFAULT_ADMISSION, ...limits };
    if (!(this.limits.overcommit > 0)) throw new RangeError(`overcommit must be > 0, got ${this.limits.overcommit}`);
  }

  /**
   * The store's cluster identity, created (create-if-absent, so concurrent orchestrators agree)
   * when the store has none: on a new store, and on one written before identities existed.
   */
  async ensureClusterIdentity(): Promise<{ cluster: ClusterRecord; created: boolean }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.kv.get(CLUSTER_KEY);
      if (cur) return { cluster: JSON.parse(cur.value) as ClusterRecord, created: false };
      const rec: ClusterRecord = { id: crypto.randomUUID(), createdAt: new Date().toISOString() };
      const r = await this.kv.txn({ compare: [{ key: CLUSTER_KEY, modRevision: 0 }], put: [{ key: CLUSTER_KEY, value: JSON.stringify(rec) }] });
      if (r.succeeded) return { cluster: rec, created: true };
    }
    throw new ConflictError('could not create the cluster identity: too much contention');
  }

  /**
   * Registers (or re-registers) a server as `credential`. A server is bound to the entity that
   * first registered it and to its addresses: a registration of the same id by another entity,
   * or at other addresses, is refused (a rogue taking over a known server's identity would
   * otherwise be handed its segments' traffic). `rebindServer` lifts the binding. The addresses
   * must be exactly HOST:PORT of a usable IP or host name (AddressError otherwise), before any
   * read: whether they are the sender's own is the API route's check (it knows the sender).
   */
  async registerServer(req: RegisterRequest, credential: string): Promise<RegisterResponse> {
    if (typeof req.id !== 'string' || !SERVER_ID.test(req.id)) throw new Error(`invalid server id ${JSON.stringify(req.id)}`);
    parseServerAddress(req.dataAddr, 'dataAddr');
    parseServerAddress(req.adminAddr, 'adminAddr');
    // Failure-domain labels go into the server record every reader of the metadata loads: bounded.
    for (const what of ['zone', 'rack'] as const) {
      const v = req[what];
      if (v !== undefined && v !== null && (typeof v !== 'string' || v.length > 64 || /[\u0000-\u001f\u007f]/.test(v))) {
        throw new Error(`${what} must be a label of at most 64 characters without control characters`);
      }
    }
    if (req.clusterId !== undefined && typeof req.clusterId !== 'string') throw new Error('clusterId must be a string');
    const clusterEntry = await this.kv.get(CLUSTER_KEY);
    if (!clusterEntry) throw new ConflictError('this metadata store has no cluster identity yet (the orchestrator is starting); retry');
    const cluster = JSON.parse(clusterEntry.value) as ClusterRecord;
    if (req.clusterId && req.clusterId !== cluster.id) {
      throw new ForeignClusterError(
        `server ${req.id} belongs to cluster ${req.clusterId}, but this metadata store is cluster ${cluster.id} (created ${cluster.createdAt}): ` +
        'if the metadata was lost or restored to the wrong place, restart the orchestrator on the right store (the server keeps its data and deletes nothing meanwhile); ' +
        'to make the server part of this cluster, restart it with --join-new-cluster',
      );
    }
    if (!Number.isFinite(req.capacityBytes) || req.capacityBytes <= 0) throw new Error('capacityBytes must be positive');
    for (let attempt = 0; attempt < 20; attempt++) {
      const cur = await this.kv.get(serverKey(req.id));
      const prev = cur ? (JSON.parse(cur.value) as ServerRecord) : undefined;
      if (prev?.credential && prev.credential !== credential) {
        throw new ForbiddenError(`server ${req.id} is registered by ${prev.credential}; ${credential} may not register it (an admin can lift the binding: presage auth rebind ${req.id})`);
      }
      if (prev?.credential && (prev.dataAddr !== req.dataAddr || prev.adminAddr !== req.adminAddr)) {
        throw new ForbiddenError(`server ${req.id} is registered at ${prev.dataAddr} (admin ${prev.adminAddr}) and reappeared at ${req.dataAddr} (admin ${req.adminAddr}); refused. If it really moved, an admin runs: presage auth rebind ${req.id}`);
      }
      const rec: ServerRecord = {
        ...(prev?.draining ? { draining: true, drainReason: prev.drainReason } : {}),
        id: req.id,
        dataAddr: req.dataAddr,
        adminAddr: req.adminAddr,
        zone: req.zone || undefined,
        rack: req.rack || undefined,
        capacityBytes: req.capacityBytes,
        state: 'up',
        registeredAt: prev?.registeredAt ?? new Date().toISOString(),
        credential,
      };
      if (prev && JSON.stringify(prev) === JSON.stringify(rec)) return { id: req.id, revision: await this.kv.revision(), clusterId: cluster.id };
      const r = await this.kv.txn({
        // The identity checked above is still the store's (a restore in between would change it).
        compare: [{ key: serverKey(req.id), modRevision: cur?.modRevision ?? 0 }, { key: CLUSTER_KEY, modRevision: clusterEntry.modRevision }],
        put: [{ key: serverKey(req.id), value: JSON.stringify(rec) }],
      });
      if (r.succeeded) return { id: req.id, revision: r.revision, clusterId: cluster.id };
    }
    throw new ConflictError(`could not register ${req.id}: too much contention`);
  }

  /** Lifts a server's binding to its entity and addresses: its next registration binds anew. */
  async rebindServer(id: string): Promise<ServerRecord> {
    return this.updateServer(id, (rec) => {
      if (!rec.credential) return undefined;
      const { credential: _c, ...rest } = rec;
      return rest;
    });
  }

  /** Sets or clears the cluster's operator switches (FLAGS_KEY); returns them as now stored. */
  async setFlags(change: Pick<ClusterFlags, 'noout'>, by: string): Promise<ClusterFlags> {
    if (typeof change.noout !== 'boolean') throw new Error('noout must be true or false');
    const next: ClusterFlags = { ...this.view.flags, noout: change.noout, setBy: by, setAt: new Date().toISOString() };
    const r = await this.kv.txn({ put: [{ key: FLAGS_KEY, value: JSON.stringify(next) }] });
    await this.view.replica.waitForRevision(r.revision, 5000);
    return next;
  }

  async setServerState(id: string, state: ServerState): Promise<void> {
    await this.updateServer(id, (rec) => (rec.state === state ? undefined : { ...rec, state }));
  }

  /** Starts or stops draining a server: a draining server takes no new data and its segments move away. */
  async setDraining(id: string, draining: boolean, reason?: string): Promise<ServerRecord> {
    return this.updateServer(id, (rec) => {
      if (!!rec.draining === draining && (!draining || rec.drainReason === reason)) return undefined;
      const { draining: _d, drainReason: _r, ...rest } = rec;
      return draining ? { ...rest, draining: true, drainReason: reason } : rest;
    });
  }

  private async updateServer(id: string, change: (rec: ServerRecord) => ServerRecord | undefined): Promise<ServerRecord> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const cur = await this.kv.get(serverKey(id));
      if (!cur) throw new NotFoundError(`no server ${id}`);
      const rec = JSON.parse(cur.value) as ServerRecord;
      const next = change(rec);
      if (!next) return rec;
      const r = await this.kv.txn({
        compare: [{ key: serverKey(id), modRevision: cur.modRevision }],
        put: [{ key: serverKey(id), value: JSON.stringify(next) }],
      });
      if (r.succeeded) {
        await this.view.replica.waitForRevision(r.revision, 5000);
        return next;
      }
    }
    throw new ConflictError(`could not update server ${id}: too much contention`);
  }

  /** Bytes of segments the SMT assigns to each server (replicas and joining replicas). */
  assignedBytes(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [segId, e] of this.view.smt) {
      const vol = this.view.volumes.get(segId.slice(0, segId.lastIndexOf('/')));
      if (!vol) continue;
      const len = segmentLength(vol, Number(segId.slice(segId.lastIndexOf('/') + 1)));
      for (const s of [...e.replicas, ...(e.joining ?? [])]) out.set(s, (out.get(s) ?? 0) + len);
    }
    return out;
  }

  /**
   * Up, non-draining servers with room (none that reports its disk full) with the bytes already
   * assigned to them, plus `extra` (bytes that admitted operators will soon add, before they show
   * in the SMT).
   */
  placementCandidates(exclude: Set<string> = new Set(), extra?: Map<string, number>): PlacementCandidate[] {
    const assigned = this.assignedBytes();
    for (const [id, b] of extra ?? []) assigned.set(id, (assigned.get(id) ?? 0) + b);
    const out: PlacementCandidate[] = [];
    for (const s of this.view.servers.values()) {
      if (s.state !== 'up' || s.draining || exclude.has(s.id)) continue;
      const h = this.health?.(s.id);
      if (h?.full) continue;
      out.push({ id: s.id, zone: s.zone, rack: s.rack, capacityBytes: s.capacityBytes, assignedBytes: assigned.get(s.id) ?? 0, ...(h ? { risky: h.risky, load: h.load } : {}) });
    }
    return out;
  }

  private health?: (serverId: string) => ServerHealth | undefined;

  /** Where placement learns each server's risk, load and whether its disk is full (the orchestrator's fleet monitor and heartbeats). */
  setHealthSource(fn: (serverId: string) => ServerHealth | undefined): void {
    this.health = fn;
  }

  async createVolume(input: Partial<VolumeSpec> & { name?: unknown; size?: unknown }): Promise<VolumeRecord> {
    const spec = validateVolumeSpec(input);
    const count = segmentCountOf(spec);
    const { maxSegmentsPerVolume, maxSegmentsPerCluster, overcommit } = this.limits;
    if (count > maxSegmentsPerVolume) {
      throw new LimitError(`volume ${spec.name} would have ${count} segments; at most ${maxSegmentsPerVolume} per volume (use a larger --segment-size)`);
    }
    await this.view.refresh();
    if (this.view.volumes.has(spec.name)) throw new ConflictError(`volume ${spec.name} already exists`);
    if (this.view.smt.size + count > maxSegmentsPerCluster) {
      throw new LimitError(`the cluster holds ${this.view.smt.size} segments; ${count} more would pass its limit of ${maxSegmentsPerCluster}`);
    }
    const candidates = this.placementCandidates();
    const capacity = candidates.reduce((a, c) => a + c.capacityBytes, 0);
    const promised = [...this.view.volumes.values()].reduce((a, v) => a + v.size * v.replicas, 0);
    const asked = spec.size * spec.replicas;
    if (promised + asked > overcommit * capacity) {
      throw new LimitError(`volume ${spec.name} needs ${asked} bytes with its ${spec.replicas} replicas; the cluster has promised ${promised} of ${capacity} bytes` +
        ` on its up servers (over-commit ratio ${overcommit}; start the orchestrator with a larger --overcommit for thin provisioning)`);
    }
    const placement = placeSegments(candidates, count, spec.replicas, spec.segmentSize, spec.name);
    const rec: VolumeRecord = { ...spec, segmentCount: count, createdAt: new Date().toISOString() };
    const put = [{ key: volumeKey(spec.name), value: JSON.stringify(rec) }];
    for (let i = 0; i < count; i++) {
      const entry: SmtEntry = { epoch: 1, replicas: placement[i], state: 'ok' };
      put.push({ key: smtKey(segmentIdOf(spec.name, i)), value: JSON.stringify(entry) });
    }
    const r = await this.kv.txn({ compare: [{ key: volumeKey(spec.name), modRevision: 0 }], put });
    if (!r.succeeded) throw new ConflictError(`volume ${spec.name} already exists`);
    await this.view.replica.waitForRevision(r.revision, 5000);
    return rec;
  }

  async deleteVolume(name: string): Promise<void> {
    const cur = await this.kv.get(volumeKey(name));
    if (!cur) throw new NotFoundError(`no volume ${name}`);
    const vol = JSON.parse(cur.value) as VolumeRecord;
    const del = [volumeKey(name)];
    for (let i = 0; i < vol.segmentCount; i++) del.push(smtKey(segmentIdOf(name, i)));
    const r = await this.kv.txn({ compare: [{ key: volumeKey(name), modRevision: cur.modRevision }], delete: del });
    if (!r.succeeded) throw new ConflictError(`volume ${name} changed while deleting; retry`);
    await this.view.replica.waitForRevision(r.revision, 5000);
  }

  /** Makes `serverId` (already a replica) the primary of a segment: an epoch bump clients follow by redirect. */
  async promote(segmentId: string, serverId: string): Promise<SmtEntry> {
    try {
      return (await this.updateEntry(segmentId, (e) => promote(e, serverId, segmentId))).entry;
    } catch (err) {
      throw err instanceof TransitionError ? new ConflictError(err.message) : err;
    }
  }

  /**
   * Applies `change` (a transition of smt-transitions.ts) to every SMT entry in one transaction,
   * each compared against the revision it was read at; retried on contention. Returns the
   * segments it changed (none: nothing to do) and the revision the change committed at.
   */
  async updateEntries(change: (e: SmtEntry, segmentId: string) => SmtEntry | undefined, attempts = 20): Promise<{ segments: string[]; revision: number }> {
    const prefix = smtKey('');
    for (let attempt = 0; attempt < attempts; attempt++) {
      const r = await this.kv.range(prefix);
      const compare = [];
      const put = [];
      const segments: string[] = [];
      for (const kv of r.entries) {
        const e = JSON.parse(kv.value) as SmtEntry;
        const segmentId = kv.key.slice(prefix.length);
        const next = change(e, segmentId);
        if (!next) continue;
        compare.push({ key: kv.key, modRevision: kv.modRevision });
        put.push({ key: kv.key, value: JSON.stringify({ ...next, epoch: e.epoch + 1 }) });
        segments.push(segmentId);
      }
      if (put.length === 0) return { segments, revision: r.revision };
      const res = await this.kv.txn({ compare, put });
      if (res.succeeded) {
        await this.view.replica.waitForRevision(res.revision, 5000);
        return { segments, revision: res.revision };
      }
    }
    throw new ConflictError('could not update the SMT: too much contention');
  }

  /**
   * Read-modify-CAS of one SMT entry, retried on contention. `change` returns the new entry (its
   * epoch is set here to the old one + 1) or undefined for "nothing to do"; it may throw to refuse.
   */
  async updateEntry(segmentId: string, change: (e: SmtEntry) => SmtEntry | undefined): Promise<{ entry: SmtEntry; changed: boolean }> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const cur = await this.kv.get(smtKey(segmentId));
      if (!cur) throw new NotFoundError(`no segment ${segmentId}`);
      const e = JSON.parse(cur.value) as SmtEntry;
      const next = change(e);
      if (!next) return { entry: e, changed: false };
      const entry: SmtEntry = { ...next, epoch: e.epoch + 1 };
      if (entry.joining && entry.joining.length === 0) delete entry.joining;
      const r = await this.kv.txn({
        compare: [{ key: smtKey(segmentId), modRevision: cur.modRevision }],
        put: [{ key: smtKey(segmentId), value: JSON.stringify(entry) }],
      });
      if (r.succeeded) {
        await this.view.replica.waitForRevision(r.revision, 5000);
        return { entry, changed: true };
      }
    }
    throw new ConflictError(`could not update ${segmentId}: too much contention`);
  }

  /**
   * Compare-and-swap of one SMT entry: succeeds only if the entry still has `expectedEpoch`.
   * The new entry's epoch must be greater. Returns false when another change won.
   */
  async casEntry(segmentId: string, expectedEpoch: number, next: SmtEntry): Promise<boolean> {
    if (next.epoch <= expectedEpoch) throw new Error('a changed SMT entry must have a greater epoch');
    const cur = await this.kv.get(smtKey(segmentId));
    if (!cur) throw new NotFoundError(`no segment ${segmentId}`);
    const entry = JSON.parse(cur.value) as SmtEntry;
    if (entry.epoch !== expectedEpoch) return false;
    const r = await this.kv.txn({
      compare: [{ key: smtKey(segmentId), modRevision: cur.modRevision }],
      put: [{ key: smtKey(segmentId), value: JSON.stringify(next) }],
    });
    if (r.succeeded) await this.view.replica.waitForRevision(r.revision, 5000);
    return r.succeeded;
  }
}
