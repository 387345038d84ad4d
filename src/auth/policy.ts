// Who may do what: roles, the capabilities they carry, and the one check each interface makes.
// Everything here is a pure function of an Identity, so the rules are unit-tested in one place
// and every interface applies the same ones (the data protocol's per-request rule, which needs
// its op codes, is protocol/data-policy.ts).
//
//   admin     everything (the orchestrator acts as admin: it owns the keyring anyway)
//   operator  read, manage volumes, operate (drain, migrate, promote, models, labels, faults)
//   server    read, register and heartbeat, follow the keyring, every data-protocol request
//   client    read, report suspects, data I/O on the volumes it is granted (read-only if so)
//   reader    read (status, scores, metrics, dashboard)

import type { Role } from './credentials.ts';

export interface Identity {
  name: string;
  role: Role;
  /** client only: volume names it may use; a trailing `*` matches a prefix, `*` alone everything. */
  volumes?: string[];
  /** client only: READ and STAT, never a change. */
  readOnly?: boolean;
}

export type Capability =
  /** GET of cluster state: status, volumes, segments, scores, events, metrics, the SMT. */
  | 'read'
  /** Suspect reports (a client or server that cannot reach a server says so). */
  | 'report'
  /** Create and delete volumes. */
  | 'volumes'
  /** Drain, migrate, promote, cancel operators, models, labels, faults, telemetry import. */
  | 'operate'
  /** Register, heartbeat, read the keyring's verifiers. */
  | 'serve'
  /** Keys and roles; model pushes and copy jobs on servers (the orchestrator's own calls). */
  | 'admin';

const CAPABILITIES: Record<Role, ReadonlySet<Capability>> = {
  admin: new Set<Capability>(['read', 'report', 'volumes', 'operate', 'serve', 'admin']),
  operator: new Set<Capability>(['read', 'report', 'volumes', 'operate']),
  server: new Set<Capability>(['read', 'report', 'serve']),
  client: new Set<Capability>(['read', 'report']),
  reader: new Set<Capability>(['read']),
};

export function can(id: Identity, cap: Capability): boolean {
  return CAPABILITIES[id.role].has(cap);
}

/** Whether a client grant covers a volume. */
export function granted(id: Identity, volume: string): boolean {
  for (const v of id.volumes ?? []) {
    if (v === '*' || v === volume || (v.endsWith('*') && volume.startsWith(v.slice(0, -1)))) return true;
  }
  return false;
}

/**
 * The capability an HTTP request needs, or undefined for the open routes (/healthz, and the
 * dashboard's static page, which holds no data: it asks for a token to read anything).
 * One table for the orchestrator and the server admin API; the first matching rule decides.
 */
const ROUTES: { method: string; path: RegExp; cap: Capability | undefined }[] = [
  { method: 'GET', path: /^\/healthz$/, cap: undefined },
  { method: 'GET', path: /^\/(dashboard(\/.*)?)?$/, cap: undefined },
  // The keyring: anyone may ask who they are; only admins list or change it.
  { method: 'GET', path: /^\/v1\/auth\/whoami$/, cap: 'read' },
  // One named entity's role and grants (no verifier): what an NBD export checks a TLS identity by.
  { method: 'GET', path: /^\/v1\/auth\/entities\/[^/]+$/, cap: 'read' },
  { method: '*', path: /^\/v1\/auth(\/|$)/, cap: 'admin' },
  // Servers joining and staying alive.
  { method: 'POST', path: /^\/v1\/servers$/, cap: 'serve' },
  { method: 'POST', path: /^\/v1\/servers\/[^/]+\/heartbeat$/, cap: 'serve' },
  { method: 'POST', path: /^\/v1\/servers\/[^/]+\/suspect$/, cap: 'report' },
  { method: 'DELETE', path: /^\/v1\/servers\/[^/]+\/binding$/, cap: 'admin' },
  // Volumes.
  { method: 'POST', path: /^\/v1\/volumes$/, cap: 'volumes' },
  { method: 'DELETE', path: /^\/v1\/volumes\//, cap: 'volumes' },
  // A server's own admin API: what only the orchestrator does to it.
  { method: 'POST', path: /^\/v1\/model$/, cap: 'admin' },
  { method: '*', path: /^\/v1\/copy-jobs/, cap: 'admin' },
  // Deleting quarantined copies destroys data nobody could vouch for: admins only.
  { method: 'DELETE', path: /^\/v1\/quarantine/, cap: 'admin' },
  // Every other change is operating the cluster.
  { method: 'POST', path: /./, cap: 'operate' },
  { method: 'PUT', path: /./, cap: 'operate' },
  { method: 'DELETE', path: /./, cap: 'operate' },
  { method: '*', path: /./, cap: 'read' },
];

/** What an HTTP request needs; `null` means open to anyone. */
export function httpCapability(method: string, url: string): Capability | null {
  const q = url.indexOf('?');
  const p = q < 0 ? url : url.slice(0, q);
  for (const r of ROUTES) {
    if ((r.method === '*' || r.method === method || (method === 'HEAD' && r.method === 'GET')) && r.path.test(p)) return r.cap ?? null;
  }
  return 'read';
}

/** Whether an entity (as the keyring lists it) may use a volume: admins all, clients their grants. */
export function mayUseVolume(e: { name: string; role: Role; volumes?: string[]; revokedAt?: string }, volume: string): boolean {
  if (e.revokedAt) return false;
  if (e.role === 'admin') return true;
  return e.role === 'client' && granted({ name: e.name, role: e.role, volumes: e.volumes }, volume);
}
