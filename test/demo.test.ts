// The README's first command, unattended: `presage demo --headless` must drain the degrading
// server while its workload runs with no client error and every byte verifies, and must say so
// with its exit code.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { freePort, runPresage } from './helpers/cluster.ts';

it('presage demo --headless drains the degrading server with no client error and exits 0', { timeout: 300000 }, async () => {
  const [port, nbdPort] = [await freePort(), await freePort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-demo-test-'));
  let r;
  try {
    r = await runPresage(['demo', '--headless', '--duration', '90', '--fault-after', '20', '--dir', dir, '--port', String(port), '--nbd-port', String(nbdPort)], {}, 240000);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const out = r.stdout;
  assert.equal(r.code, 0, `demo exited ${r.code}\n${out}\n${r.stderr}`);
  const victim = /slow-I\/O degradation starts ramping on (\S+):/.exec(out)?.[1];
  assert.ok(victim, `the demo names the server it degrades\n${out}`);
  assert.match(out, new RegExp(`injected: slow-io on ${victim}`));
  assert.match(out, new RegExp(`${victim} is drained`), 'the degrading server was drained');
  assert.match(out, /demo finished: no I\/O error, every byte verified, the degrading server was drained/);
  // Its status lines show the score and the workload making progress with zero errors throughout.
  const lines = out.split('\n').filter((l) => / scores /.test(l));
  assert.ok(lines.length >= 10, 'status lines were printed');
  assert.ok(lines.every((l) => / 0 errors$/.test(l)), 'no status line reports a client error');
  const ops = lines.map((l) => Number(/workload (\d+) ops/.exec(l)?.[1]));
  assert.ok(ops.at(-1)! > ops[0], 'the workload kept running');
  const victimScores = lines.map((l) => Number(new RegExp(`${victim}\\*=(\\d+)`).exec(l)?.[1]));
  assert.ok(Math.max(...victimScores.filter(Number.isFinite)) > 70, `the degrading server's score passed 70: ${victimScores.join(' ')}`);
});
