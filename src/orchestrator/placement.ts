// Where new replicas go: replicas of one segment on distinct servers, spread over distinct zones
// and then racks when servers carry those labels, away from servers whose Failure Score is at the
// warning level (they may be drained soon: data placed there would move twice), then balanced by
// free capacity and, among servers with about as much room, by the load they serve.

import type { SmtEntry } from '../metadata/model.ts';

export interface PlacementCandidate {
  id: string;
  zone?: string;
  rack?: string;
  capacityBytes: number;
  /** Bytes already assigned to the server by the SMT. */
  assignedBytes: number;
  /** Failure Score at or above the warning level: chosen only when no healthier server fits. */
  risky?: boolean;
  /** Accesses per second the server serves now (0 when unknown). */
  load?: number;
}

type Key = number[];

export class PlacementError extends Error {}

/**
 * Picks `replicas` servers for each of `count` segments of `segmentBytes`, updating the
 * candidates' assignedBytes as it goes so successive segments spread out.
 * `exclude` lists servers that must not be chosen (e.g. the ones already holding the segment).
 */
export function placeSegments(
  candidates: PlacementCandidate[],
  count: number,
  replicas: number,
  segmentBytes: number,
  salt = '',
): string[][] {
  if (candidates.length < replicas) {
    throw new PlacementError(`need ${replicas} servers up for ${replicas} replicas, have ${candidates.length}`);
  }
  const out: string[][] = [];
  // Primaries take every write first: spread them too, not just the bytes.
  const primaries = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const set = pickReplicas(candidates, replicas, segmentBytes, [], `${salt}/${i}`);
    let p = 0;
    for (let j = 1; j < set.length; j++) if ((primaries.get(set[j]) ?? 0) < (primaries.get(set[p]) ?? 0)) p = j;
    const ordered = [set[p], ...set.filter((_, j) => j !== p)];
    primaries.set(ordered[0], (primaries.get(ordered[0]) ?? 0) + 1);
    out.push(ordered);
  }
  return out;
}

/**
 * The server that receives one more copy of a segment (a repair, a drain, a manual move): any
 * candidate of `pool` that holds no copy yet (replica or joining), spread against the holders
 * that stay (all but `leaving`, the replica the copy replaces). Throws PlacementError when none
 * fits. Every policy picks its targets here, so placement rules change in one place.
 */
export function pickTarget(pool: PlacementCandidate[], entry: Pick<SmtEntry, 'replicas' | 'joining'>, segmentBytes: number, segmentId: string, leaving?: string): string {
  const holders = new Set([...entry.replicas, ...(entry.joining ?? [])]);
  return pickReplicas(pool.filter((c) => !holders.has(c.id)), 1, segmentBytes, pool.filter((c) => holders.has(c.id) && c.id !== leaving), segmentId)[0]!;
}

/** Picks `n` more servers for one segment whose current holders are `existing`. */
export function pickReplicas(
  candidates: PlacementCandidate[],
  n: number,
  segmentBytes: number,
  existing: PlacementCandidate[],
  salt = '',
): string[] {
  const chosen: PlacementCandidate[] = [...existing];
  const picked: string[] = [];
  const maxLoad = Math.max(0, ...candidates.map((c) => c.load ?? 0));
  for (let r = 0; r < n; r++) {
    let best: PlacementCandidate | undefined;
    let bestKey: Key | undefined;
    let bestTie = '';
    for (const c of candidates) {
      if (chosen.some((x) => x.id === c.id)) continue;
      const zoneClash = c.zone !== undefined && chosen.some((x) => x.zone === c.zone) ? 1 : 0;
      const rackClash = c.rack !== undefined && chosen.some((x) => x.rack === c.rack && x.zone === c.zone) ? 1 : 0;
      // Free space counted in whole segments; within 5 % of capacity, the less loaded server wins
      // (4 load bands relative to the busiest), then the exact free space.
      const free = Math.floor((c.capacityBytes - c.assignedBytes) / Math.max(segmentBytes, 1));
      const freeBand = Math.floor((20 * (c.capacityBytes - c.assignedBytes)) / Math.max(c.capacityBytes, 1));
      const loadBand = maxLoad > 0 ? Math.min(3, Math.floor((4 * (c.load ?? 0)) / maxLoad)) : 0;
      const key: Key = [zoneClash, c.risky ? 1 : 0, rackClash, -freeBand, loadBand, -free];
      // Ties broken by a hash of the segment and the server: equal servers must not always pair
      // up the same way, or a failure's repair would copy everything from one partner.
      const tie = tieBreak(salt, c.id);
      const cmp = bestKey ? compareKeys(key, bestKey) : -1;
      if (cmp < 0 || (cmp === 0 && tie < bestTie)) { best = c; bestKey = key; bestTie = tie; }
    }
    if (!best) throw new PlacementError(`not enough servers for ${existing.length + n} distinct replicas`);
    best.assignedBytes += segmentBytes;
    chosen.push(best);
    picked.push(best.id);
  }
  return picked;
}

/** A stable pseudo-random order of servers per segment (FNV-1a). */
function tieBreak(salt: string, id: string): string {
  let h = 0x811c9dc5;
  for (const ch of `${salt}|${id}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0') + id;
}

function compareKeys(a: Key, b: Key): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}
