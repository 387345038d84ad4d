// CoalescingWriter over a recording socket: one cork and one uncork per event-loop turn that
// wrote anything, every buffer passed through in order and uncopied, nothing after destroy.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CoalescingWriter, type CorkableSocket } from './coalescing-writer.ts';

class RecordingSocket implements CorkableSocket {
  destroyed = false;
  events: (string | Uint8Array)[] = [];
  cork(): void { this.events.push('cork'); }
  uncork(): void { this.events.push('uncork'); }
  write(b: Uint8Array): boolean { this.events.push(b); return true; }
}

const nextTurn = () => new Promise((r) => setImmediate(r));

test('all writes of one turn fall between one cork and one uncork, in order and uncopied', async () => {
  const s = new RecordingSocket();
  const w = new CoalescingWriter(s);
  const a = Buffer.from('a');
  const head = Buffer.from('h');
  const payload = Buffer.from('payload');
  w.write(a);
  w.writeFrame(head, payload);
  await Promise.resolve(); // microtasks of the same turn join the batch
  w.writeFrame(head, Buffer.alloc(0)); // an empty payload is not written
  assert.deepEqual(s.events.filter((e) => typeof e === 'string'), ['cork'], 'still corked within the turn');
  await nextTurn();
  assert.equal(s.events.length, 6);
  assert.equal(s.events[0], 'cork');
  assert.equal(s.events[1], a);
  assert.equal(s.events[2], head);
  assert.equal(s.events[3], payload);
  assert.equal(s.events[4], head);
  assert.equal(s.events[5], 'uncork');
});

test('each turn that writes gets its own batch; a turn that writes nothing corks nothing', async () => {
  const s = new RecordingSocket();
  const w = new CoalescingWriter(s);
  w.write(Buffer.from('1'));
  await nextTurn();
  await nextTurn();
  w.write(Buffer.from('2'));
  await nextTurn();
  assert.deepEqual(s.events.map((e) => (typeof e === 'string' ? e : Buffer.from(e).toString())), ['cork', '1', 'uncork', 'cork', '2', 'uncork']);
});

test('nothing is written to a destroyed socket', async () => {
  const s = new RecordingSocket();
  const w = new CoalescingWriter(s);
  s.destroyed = true;
  w.write(Buffer.from('x'));
  w.writeFrame(Buffer.from('h'), Buffer.from('p'));
  await nextTurn();
  assert.deepEqual(s.events, []);
});
