// Every way an SMT entry may change, as pure functions: entry in, the next entry out, or
// undefined for "nothing to do" (already done, or not applicable). They never touch the store
// and never set the epoch: the metadata writer, the only module that writes SMT keys, applies
// them under compare-and-swap and bumps the epoch by one for each change it commits. Because
// they are pure and idempotent (applying one to its own result is "nothing to do"), a step that
// crashed between its store write and its bookkeeping is simply applied again.
//
// Invariants every transition keeps: the last named replica is never removed (a segment whose
// only copy is unavailable stays unavailable, never silently lost); `joining` never names a
// replica; an empty `joining` is absent.

import type { SmtEntry } from '../metadata/model.ts';

/** A transition refused because the entry is not in a state it applies to (maps to HTTP 409). */
export class TransitionError extends Error {
  readonly code = 'ERR_PRESAGE_CONFLICT';
}

function withJoining(e: SmtEntry, joining: string[] | undefined): SmtEntry {
  const { joining: _old, ...rest } = e;
  return joining && joining.length > 0 ? { ...rest, joining } : rest;
}

/** Copy step 1: `target` joins (receives writes, is not yet readable). */
export function join(e: SmtEntry, target: string): SmtEntry | undefined {
  if (e.joining?.includes(target) || e.replicas.includes(target)) return undefined;
  return withJoining(e, [...(e.joining ?? []), target]);
}

/** Undoes a join: `target` leaves `joining` (the data never moved in the SMT). */
export function leave(e: SmtEntry, target: string): SmtEntry | undefined {
  if (!e.joining?.includes(target)) return undefined;
  return withJoining(e, e.joining.filter((s) => s !== target));
}

/**
 * Copy's last step: the verified `target` becomes a replica, in the place of `remove` when given
 * (a migration) or added (a repair); ok once the entry has `want` replicas. `lost` is true when
 * the target is neither joining nor a replica any more (something else removed it: the copy must
 * start again); undefined next with lost false means it was committed already.
 */
export function commit(e: SmtEntry, target: string, remove: string | undefined, want: number): { next?: SmtEntry; lost: boolean } {
  if (!e.joining?.includes(target)) return { lost: !e.replicas.includes(target) };
  let replicas = [...e.replicas];
  const at = remove ? replicas.indexOf(remove) : -1;
  if (at >= 0) replicas[at] = target;
  else replicas.push(target);
  replicas = [...new Set(replicas)];
  const next = withJoining({ ...e, replicas, state: replicas.length >= want ? 'ok' : 'degraded' }, e.joining.filter((s) => s !== target));
  return { next, lost: false };
}

/** Makes `to`, already a replica, the primary (clients follow by redirect). */
export function promote(e: SmtEntry, to: string, segmentId: string): SmtEntry | undefined {
  if (!e.replicas.includes(to)) throw new TransitionError(`${to} is not a replica of ${segmentId}`);
  if (e.replicas[0] === to) return undefined;
  return { ...e, replicas: [to, ...e.replicas.filter((x) => x !== to)] };
}

/**
 * A server was marked down: it leaves the replicas (unless it holds the last named copy) and
 * `joining`; the entry is degraded until repair brings it back to its replication factor.
 */
export function dropServer(e: SmtEntry, server: string): SmtEntry | undefined {
  const inReplicas = e.replicas.includes(server);
  if (!inReplicas && !(e.joining?.includes(server) ?? false)) return undefined;
  const survivors = e.replicas.filter((x) => x !== server);
  // The last copy, already marked degraded, with nothing joining to drop: nothing more to do.
  if (survivors.length === 0 && e.state === 'degraded' && !e.joining?.includes(server)) return undefined;
  return withJoining({ ...e, replicas: survivors.length > 0 ? survivors : e.replicas, state: 'degraded' }, e.joining?.filter((x) => x !== server));
}

/**
 * One server's copy is unusable (damaged, or its disk is full): it leaves the entry, but only
 * while another replica for which `usable` holds remains; otherwise nothing changes.
 */
export function dropCopy(e: SmtEntry, server: string, usable: (other: string) => boolean): SmtEntry | undefined {
  if (!e.replicas.includes(server)) return undefined;
  if (!e.replicas.some((x) => x !== server && usable(x))) return undefined;
  return withJoining({ ...e, replicas: e.replicas.filter((x) => x !== server), state: 'degraded' }, e.joining?.filter((x) => x !== server));
}

/** A degraded entry back at its replication factor `want` is ok again. */
export function markOk(e: SmtEntry, want: number): SmtEntry | undefined {
  return e.state === 'degraded' && e.replicas.length >= want ? { ...e, state: 'ok' } : undefined;
}
