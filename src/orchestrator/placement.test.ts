import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PlacementError, pickReplicas, pickTarget, placeSegments, type PlacementCandidate } from './placement.ts';

const GiB = 1024 ** 3;
const SEG = GiB;

function server(id: string, o: Partial<PlacementCandidate> = {}): PlacementCandidate {
  return { id, capacityBytes: 100 * GiB, assignedBytes: 0, ...o };
}

describe('placement', () => {
  it('puts the replicas of a segment on distinct servers in distinct zones', () => {
    const c = [server('a', { zone: 'z1' }), server('b', { zone: 'z1', assignedBytes: 0 }), server('c', { zone: 'z2', assignedBytes: 50 * GiB })];
    const picked = pickReplicas(c, 2, SEG, [], 's/0');
    assert.equal(new Set(picked).size, 2);
    assert.ok(picked.includes('c'), 'the only server of the other zone, although it has the least room');
  });

  it('avoids a server at the warning level while a healthier one fits, even if it has the most room', () => {
    const c = [server('risky', { risky: true }), server('h1', { assignedBytes: 40 * GiB }), server('h2', { assignedBytes: 60 * GiB })];
    for (let i = 0; i < 20; i++) assert.ok(!pickReplicas(c.map((x) => ({ ...x })), 2, SEG, [], `s/${i}`).includes('risky'));
    // With no alternative it is still used: a replica on a risky server beats no replica.
    assert.deepEqual(pickReplicas([server('risky', { risky: true })], 1, SEG, []), ['risky']);
  });

  it('keeps failure-domain spread ahead of risk', () => {
    const c = [server('same-zone', { zone: 'z1' }), server('other-zone-risky', { zone: 'z2', risky: true })];
    assert.deepEqual(pickReplicas(c, 1, SEG, [server('holder', { zone: 'z1' })]), ['other-zone-risky']);
  });

  it('among servers with about as much free space, takes the less loaded; a clear space difference still wins', () => {
    const similar = [server('busy', { load: 900, assignedBytes: 1 * GiB }), server('quiet', { load: 10, assignedBytes: 3 * GiB })];
    for (let i = 0; i < 10; i++) assert.deepEqual(pickReplicas(similar.map((x) => ({ ...x })), 1, SEG, [], `s/${i}`), ['quiet']);
    const roomier = [server('busy-empty', { load: 900, assignedBytes: 0 }), server('quiet-full', { load: 10, assignedBytes: 50 * GiB })];
    assert.deepEqual(pickReplicas(roomier, 1, SEG, []), ['busy-empty']);
  });

  it('spreads a volume evenly over equal servers, primaries included, and varies the pairs', () => {
    const c = ['a', 'b', 'c', 'd'].map((id) => server(id));
    const placed = placeSegments(c, 40, 2, SEG, 'vol');
    const bytes = new Map<string, number>();
    const primaries = new Map<string, number>();
    const pairs = new Set<string>();
    for (const set of placed) {
      assert.equal(new Set(set).size, 2);
      for (const id of set) bytes.set(id, (bytes.get(id) ?? 0) + 1);
      primaries.set(set[0], (primaries.get(set[0]) ?? 0) + 1);
      pairs.add([...set].sort().join('+'));
    }
    assert.deepEqual([...bytes.values()], [20, 20, 20, 20]);
    for (const n of primaries.values()) assert.ok(n >= 8 && n <= 12, `primaries ${[...primaries.values()]}`);
    assert.ok(pairs.size >= 4, `pairs vary: ${[...pairs]}`);
  });

  it('refuses with a clear error when there are too few servers', () => {
    assert.throws(() => placeSegments([server('a')], 1, 2, SEG), (e: Error) => e instanceof PlacementError && /need 2 servers/.test(e.message));
    assert.throws(() => pickReplicas([server('a')], 2, SEG, []), PlacementError);
  });

  it('pickTarget: one more copy goes to a server holding none, spread against the holders that stay', () => {
    const pool = () => [server('a', { zone: 'z1' }), server('b', { zone: 'z2' }), server('c', { zone: 'z1' }), server('d', { zone: 'z2' }), server('e', { zone: 'z3', assignedBytes: 90 * GiB })];
    // A repair of [a, b] with c joining: neither holder nor joiner, and the empty zone z3 wins over room.
    assert.equal(pickTarget(pool(), { replicas: ['a', 'b'], joining: ['c'] }, SEG, 'v/0'), 'e');
    // Draining a out of [a, e]: a does not count as staying, so a z1 server is as good as any;
    // it is never a holder again, and never e.
    for (let i = 0; i < 10; i++) {
      const t = pickTarget(pool(), { replicas: ['a', 'e'] }, SEG, `v/${i}`, 'a');
      assert.ok(['b', 'c', 'd'].includes(t), t);
    }
    // With the leaving replica counted as staying, its zone would be avoided.
    assert.equal(pickTarget(pool().filter((x) => x.id !== 'e'), { replicas: ['a', 'b'] }, SEG, 'v/0', 'b'), 'd');
    assert.throws(() => pickTarget([server('a'), server('b')], { replicas: ['a', 'b'] }, SEG, 'v/0'), PlacementError);
  });
});
