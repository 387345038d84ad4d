// Where new replicas go: balanced by free capacity, replicas of one segment on distinct
// servers, spread over distinct zones and then racks when servers carry those labels.

export interface PlacementCandidate {
  id: string;
  zone?: string;
  rack?: string;
  capacityBytes: number;
  /** Bytes already assigned to the server by the SMT. */
  assignedBytes: number;
}

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
  for (let r = 0; r < n; r++) {
    let best: PlacementCandidate | undefined;
    let bestKey: [number, number, number, string] | undefined;
    for (const c of candidates) {
      if (chosen.some((x) => x.id === c.id)) continue;
      // Prefer a zone not yet used, then a rack not yet used, then the most free space.
      const zoneClash = c.zone !== undefined && chosen.some((x) => x.zone === c.zone) ? 1 : 0;
      const rackClash = c.rack !== undefined && chosen.some((x) => x.rack === c.rack && x.zone === c.zone) ? 1 : 0;
      // Free space counted in whole segments, and ties broken by a hash of the segment and the
      // server: equal servers must not always pair up the same way, or a failure's repair would
      // copy everything from one partner.
      const free = Math.floor((c.capacityBytes - c.assignedBytes) / Math.max(segmentBytes, 1));
      const key: [number, number, number, string] = [zoneClash, rackClash, -free, tieBreak(salt, c.id)];
      if (!bestKey || compareKeys(key, bestKey) < 0) { best = c; bestKey = key; }
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

function compareKeys(a: [number, number, number, string], b: [number, number, number, string]): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return a[3] < b[3] ? -1 : a[3] > b[3] ? 1 : 0;
}
