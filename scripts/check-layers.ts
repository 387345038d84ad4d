// The layer rule over the import graph: a module under src/<part>/ may import only from its own
// part or from parts in lower layers (LAYERS below, lowest first; parts in one layer do not import
// each other). The lists are the architecture: moving a part, or letting one part use another,
// is a change of this table, made on purpose and reviewed, never a side effect of an import.
// Tests (*.test.ts) are outside the rule: an integration test may start the whole system.
//
// Run as a script (`npx tsx scripts/check-layers.ts`: lists each violation, exit 1) or through
// checkLayers() (test/layers.test.ts, which also shows that a violation is caught).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Lowest first. A part may import the parts of earlier layers, never of its own or later ones. */
export const LAYERS: readonly (readonly string[])[] = [
  ['common'],
  ['metadata'],
  ['auth'],
  ['protocol', 'segment-store', 'telemetry'],
  ['prediction'],
  ['api'],
  ['client'],
  ['nbd'],
  ['server'],
  ['orchestrator'],
  ['dashboard', 'replay'],
  ['demo'],
  ['cli'],
];

export interface LayerViolation {
  file: string;
  line: number;
  from: string;
  to: string;
  specifier: string;
}

const IMPORT_RE = /(?:^|[^\w.])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** The relative import specifiers of a module's text, with their line numbers. */
export function importsOf(text: string): { specifier: string; line: number }[] {
  const out: { specifier: string; line: number }[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const specifier = m[1] ?? m[2]!;
    const at = m.index + (m[0].length - m[0].trimStart().length); // past the character before `import`
    out.push({ specifier, line: text.slice(0, at).split('\n').length });
  }
  return out;
}

/** Violations of the layer rule among `files` (paths relative to `root`; only src/** are checked). */
export function checkLayers(root: string, files: { path: string; text: string }[], layers = LAYERS): LayerViolation[] {
  const rank = new Map<string, number>();
  layers.forEach((parts, i) => parts.forEach((p) => rank.set(p, i)));
  const partOf = (rel: string) => {
    const parts = rel.split(path.sep);
    return parts[0] === 'src' && parts.length > 2 ? parts[1] : undefined;
  };
  const out: LayerViolation[] = [];
  for (const f of files) {
    if (f.path.endsWith('.test.ts')) continue;
    const from = partOf(f.path);
    if (!from) continue;
    const fromRank = rank.get(from);
    for (const { specifier, line } of importsOf(f.text)) {
      const target = path.relative(root, path.resolve(root, path.dirname(f.path), specifier));
      const to = partOf(target);
      if (!to || to === from) continue;
      const toRank = rank.get(to);
      // A part missing from the table is a violation too: every part has a place.
      if (fromRank === undefined || toRank === undefined || toRank >= fromRank) out.push({ file: f.path, line, from, to, specifier });
    }
  }
  return out;
}

/** Every .ts file under src/, relative to root. */
export function sourceFiles(root: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts')) out.push({ path: rel, text: fs.readFileSync(path.join(root, rel), 'utf8') });
    }
  };
  walk('src');
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const bad = checkLayers(root, sourceFiles(root));
  for (const v of bad) console.error(`${v.file}:${v.line}: ${v.from} imports ${v.to} (${v.specifier}): ${v.to} is not in a lower layer than ${v.from}`);
  if (bad.length > 0) {
    console.error(`check-layers: ${bad.length} import(s) against the layer order in scripts/check-layers.ts`);
    process.exit(1);
  }
  console.error(`check-layers: ok (${LAYERS.map((l) => l.join('/')).join(' < ')})`);
}
