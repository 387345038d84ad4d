// The layer rule (scripts/check-layers.ts) holds over the real source tree, and the checker
// catches what it is for: an upward import, a dynamic one, a re-export, and a part with no layer.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkLayers, importsOf, smtWriteViolations, sourceFiles } from '../scripts/check-layers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

test('no module imports from its own or a higher layer', () => {
  const files = sourceFiles(root);
  assert.ok(files.length > 100, `read ${files.length} source files`);
  const bad = checkLayers(root, files);
  assert.deepEqual(bad.map((v) => `${v.file}:${v.line} ${v.from} → ${v.to}`), []);
});

test('the checker finds upward, dynamic and re-exported imports, and parts with no layer', () => {
  const text = [
    "import { a } from '../common/x.ts';", // down: fine
    "import type { Op } from '../orchestrator/operators.ts';", // up
    "export { b } from '../server/y.ts';", // up, as a re-export
    "const m = await import('../cli/main.ts');", // up, dynamic
    "import { c } from './same-part.ts';", // own part: fine
    "import { d } from '../mystery/z.ts';", // a part the table does not know
  ].join('\n');
  const bad = checkLayers(root, [{ path: path.join('src', 'api', 'probe.ts'), text }, { path: path.join('src', 'api', 'probe.test.ts'), text }]);
  assert.deepEqual(bad.map((v) => [v.line, v.to]), [[2, 'orchestrator'], [3, 'server'], [4, 'cli'], [6, 'mystery']]);
  assert.deepEqual(importsOf("import {\n  x,\n} from '../a/b.ts';\nimport '../side/effect.ts';").map((i) => i.specifier), ['../a/b.ts', '../side/effect.ts']);
});

test('only the metadata writer writes SMT keys', () => {
  assert.deepEqual(smtWriteViolations(sourceFiles(root)), []);
  const writer = "import { smtKey, type SmtEntry } from '../metadata/model.ts';\nawait kv.txn({ put: [{ key: smtKey(id), value }] });";
  const reader = "import { smtKey } from '../metadata/model.ts';\nconst key = smtKey(id);";
  const probe = (p: string, text: string) => smtWriteViolations([{ path: path.join(...p.split('/')), text }]);
  assert.deepEqual(probe('src/orchestrator/failover.ts', writer), [path.join('src', 'orchestrator', 'failover.ts')], 'a second writer is caught');
  assert.deepEqual(probe('src/client/presage-client.ts', reader), [], 'naming SMT keys to read or watch them is fine');
  assert.deepEqual(probe('src/orchestrator/metadata-writer.ts', writer), [], 'the writer itself may');
});
