// The SMT transitions: each does what its name says, keeps the entry's invariants (the last copy
// stays named, joining never names a replica and is absent when empty), never sets the epoch, and
// is idempotent (applied to its own result it has nothing to do), which is what lets a crashed
// step be applied again. The invariants are also checked over random entries with fast-check.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { SmtEntry } from '../metadata/model.ts';
import { commit, dropCopy, dropServer, join, leave, markOk, promote, TransitionError } from './smt-transitions.ts';

const e = (replicas: string[], joining?: string[], state: SmtEntry['state'] = 'ok'): SmtEntry => ({ epoch: 7, replicas, state, ...(joining ? { joining } : {}) });

test('join, leave and commit: the copy steps', () => {
  const joined = join(e(['a', 'b']), 'c')!;
  assert.deepEqual(joined, e(['a', 'b'], ['c']));
  assert.equal(join(joined, 'c'), undefined, 'joining twice is nothing to do');
  assert.equal(join(joined, 'a'), undefined, 'a replica does not join');
  assert.deepEqual(leave(joined, 'c'), e(['a', 'b']), 'leaving drops the empty joining list');
  assert.equal(leave(e(['a', 'b']), 'c'), undefined);

  const migrated = commit(joined, 'c', 'a', 2);
  assert.deepEqual(migrated, { next: e(['c', 'b']), lost: false }, 'a migration puts the target in the place of the one it replaces');
  assert.deepEqual(commit(migrated.next!, 'c', 'a', 2), { lost: false }, 'committed already: nothing to do');
  assert.deepEqual(commit(e(['a'], ['b'], 'degraded'), 'b', undefined, 2), { next: e(['a', 'b']), lost: false }, 'a repair adds the target and is ok at the factor');
  assert.deepEqual(commit(e(['a'], ['b', 'c'], 'degraded'), 'b', undefined, 3).next, e(['a', 'b'], ['c'], 'degraded'), 'still short of the factor: degraded');
  assert.deepEqual(commit(e(['a', 'b']), 'c', 'a', 2), { lost: true }, 'a target that vanished from the entry must copy again');
});

test('promote, markOk', () => {
  assert.deepEqual(promote(e(['a', 'b', 'c']), 'c', 'v/0'), e(['c', 'a', 'b']));
  assert.equal(promote(e(['a', 'b']), 'a', 'v/0'), undefined);
  assert.throws(() => promote(e(['a', 'b']), 'z', 'v/0'), (err: unknown) => err instanceof TransitionError && /z is not a replica of v\/0/.test(err.message));
  assert.deepEqual(markOk(e(['a', 'b'], undefined, 'degraded'), 2), e(['a', 'b']));
  assert.equal(markOk(e(['a'], undefined, 'degraded'), 2), undefined, 'short of the factor: stays degraded');
  assert.equal(markOk(e(['a', 'b']), 2), undefined);
});

test('dropServer and dropCopy never remove the last copy', () => {
  assert.deepEqual(dropServer(e(['a', 'b'], ['c']), 'a'), e(['b'], ['c'], 'degraded'));
  assert.deepEqual(dropServer(e(['a', 'b'], ['c']), 'c'), e(['a', 'b'], undefined, 'degraded'), 'a joining server leaves too');
  assert.deepEqual(dropServer(e(['a']), 'a'), e(['a'], undefined, 'degraded'), 'the last copy stays named (unavailable, not lost)');
  assert.equal(dropServer(e(['a', 'b']), 'z'), undefined);
  const up = (x: string) => x !== 'down';
  assert.deepEqual(dropCopy(e(['a', 'b']), 'a', up), e(['b'], undefined, 'degraded'));
  assert.equal(dropCopy(e(['a', 'down']), 'a', up), undefined, 'no usable replica would remain');
  assert.equal(dropCopy(e(['a']), 'a', up), undefined);
  assert.equal(dropCopy(e(['b']), 'a', up), undefined);
});

test('every transition keeps the invariants, leaves the epoch alone and is idempotent (random entries)', () => {
  const server = fc.constantFrom('a', 'b', 'c', 'd', 'e');
  const entry = fc.record({
    replicas: fc.uniqueArray(server, { minLength: 1, maxLength: 4 }),
    joining: fc.uniqueArray(server, { maxLength: 2 }),
    state: fc.constantFrom<SmtEntry['state']>('ok', 'degraded'),
  }).map(({ replicas, joining, state }) => e(replicas, joining.filter((j) => !replicas.includes(j)).length ? joining.filter((j) => !replicas.includes(j)) : undefined, state));
  const usable = (x: string) => x !== 'e';
  const steps: [string, (x: SmtEntry, s: string) => SmtEntry | undefined][] = [
    ['join', join], ['leave', leave], ['dropServer', dropServer], ['dropCopy', (x, s) => dropCopy(x, s, usable)],
    ['commit', (x, s) => commit(x, s, x.replicas[0], 3).next], ['markOk', (x) => markOk(x, 2)],
    ['promote', (x, s) => (x.replicas.includes(s) ? promote(x, s, 'v/0') : undefined)],
  ];
  fc.assert(fc.property(entry, server, fc.constantFrom(...steps), (before, s, [name, step]) => {
    const next = step(before, s);
    if (!next) return;
    assert.ok(next.replicas.length >= 1, `${name}: a replica remains`);
    assert.equal(new Set(next.replicas).size, next.replicas.length, `${name}: no replica twice`);
    assert.ok(!next.joining || (next.joining.length > 0 && next.joining.every((j) => !next.replicas.includes(j))), `${name}: joining is absent or names no replica`);
    assert.equal(next.epoch, before.epoch, `${name}: the writer, not the transition, sets the epoch`);
    if (name !== 'promote') assert.equal(step(next, s), undefined, `${name}: applied again, nothing to do`);
  }), { numRuns: 2000 });
});
