// Typed cluster metadata on top of the key-value store: volumes, servers and the Segment
// Mapping Table (SMT). Keys live under one root so a single watch follows everything.

import { isPowerOfTwo } from '../common/size.ts';

export const ROOT = '/presage/';
export const VOLUMES = `${ROOT}volumes/`;
export const SERVERS = `${ROOT}servers/`;
export const SMT = `${ROOT}smt/`;
/**
 * The cluster's identity, created with the metadata store: servers remember it and refuse (and
 * never garbage-collect against) a store with another one, so an empty or foreign store cannot
 * make them delete their data.
 */
export const CLUSTER_KEY = `${ROOT}cluster`;

export interface ClusterRecord {
  id: string;
  createdAt: string;
}

/**
 * Operator switches that hold automatic actions back cluster-wide, kept in the store so that a
 * restarted or newly elected orchestrator obeys them too. `noout`: servers marked down are never
 * taken "out" (their segments are not re-replicated) while it is set, as Ceph's flag of that name
 * does during planned maintenance.
 */
export const FLAGS_KEY = `${ROOT}flags`;

export interface ClusterFlags {
  noout?: boolean;
  /** Who set the flags last, and when (shown in status). */
  setBy?: string;
  setAt?: string;
}

export const volumeKey = (name: string) => `${VOLUMES}${name}`;
export const serverKey = (id: string) => `${SERVERS}${id}`;
export const smtKey = (segmentId: string) => `${SMT}${segmentId}`;

export const CRITICALITY = ['low', 'normal', 'high', 'critical'] as const;
export type Criticality = (typeof CRITICALITY)[number];
/** Weight of a criticality class in migration priority (risk × access × criticality). */
export const CRITICALITY_WEIGHT: Record<Criticality, number> = { low: 0.5, normal: 1, high: 2, critical: 4 };

export const MIN_SEGMENT_SIZE = 1024 * 1024;
export const DEFAULT_SEGMENT_SIZE = 1024 ** 3;
export const DEFAULT_REPLICAS = 2;
export const MAX_REPLICAS = 5;

export interface VolumeSpec {
  name: string;
  size: number;
  segmentSize: number;
  replicas: number;
  criticality: Criticality;
}

export interface VolumeRecord extends VolumeSpec {
  segmentCount: number;
  createdAt: string;
}

export type ServerState = 'up' | 'down';

export interface ServerRecord {
  id: string;
  /** host:port of the data protocol. */
  dataAddr: string;
  /** host:port of the admin HTTP API. */
  adminAddr: string;
  zone?: string;
  rack?: string;
  /** Bytes the server offers for segments (its filesystem's size at registration, or configured). */
  capacityBytes: number;
  state: ServerState;
  /** Being emptied (by hand or by predictive drain): takes no new data, its segments move away. */
  draining?: boolean;
  /** Why it is draining, for status and the decision log. */
  drainReason?: string;
  registeredAt: string;
  /**
   * The entity (auth keyring) that registered the server. Another entity cannot register,
   * heartbeat or re-address it; only an admin's `presage auth rebind` lifts the binding.
   */
  credential?: string;
}

export type SegmentState = 'ok' | 'degraded';

export interface SmtEntry {
  /** Bumps on every change of the entry. */
  epoch: number;
  /** Server ids; the first is the primary. */
  replicas: string[];
  /** Servers being brought into the entry (they receive writes, but are not yet readable). */
  joining?: string[];
  state: SegmentState;
}

export const segmentIdOf = (volume: string, index: number) => `${volume}/${index}`;

export function parseSegmentId(id: string): { volume: string; index: number } {
  const slash = id.lastIndexOf('/');
  const volume = id.slice(0, slash);
  const index = Number(id.slice(slash + 1));
  if (slash <= 0 || !VOLUME_NAME.test(volume) || !Number.isSafeInteger(index) || index < 0 || String(index) !== id.slice(slash + 1)) {
    throw new Error(`invalid segment id "${id}" (expected VOLUME/INDEX)`);
  }
  return { volume, index };
}

export const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Validates a volume request; returns the complete spec or throws a one-line reason. */
export function validateVolumeSpec(input: Partial<VolumeSpec> & { name?: unknown; size?: unknown }): VolumeSpec {
  const name = input.name;
  if (typeof name !== 'string' || !VOLUME_NAME.test(name)) {
    throw new Error(`invalid volume name ${JSON.stringify(name)}: 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  const size = input.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) throw new Error('volume size must be a positive whole number of bytes');
  const segmentSize = input.segmentSize ?? DEFAULT_SEGMENT_SIZE;
  if (!isPowerOfTwo(segmentSize) || segmentSize < MIN_SEGMENT_SIZE) throw new Error('segment size must be a power of two of at least 1 MiB');
  if (size % 4096 !== 0) throw new Error('volume size must be a multiple of 4 KiB');
  const replicas = input.replicas ?? DEFAULT_REPLICAS;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > MAX_REPLICAS) throw new Error(`replicas must be between 1 and ${MAX_REPLICAS}`);
  const criticality = input.criticality ?? 'normal';
  if (!CRITICALITY.includes(criticality)) throw new Error(`criticality must be one of ${CRITICALITY.join(', ')}`);
  return { name, size, segmentSize, replicas, criticality };
}

export const segmentCountOf = (v: Pick<VolumeSpec, 'size' | 'segmentSize'>) => Math.ceil(v.size / v.segmentSize);

/** Size of one segment of the volume: the last may be shorter. */
export function segmentLength(v: Pick<VolumeSpec, 'size' | 'segmentSize'>, index: number): number {
  return Math.min(v.segmentSize, v.size - index * v.segmentSize);
}
