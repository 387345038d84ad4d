// The layer rule over the import graph: a module under src/<part>/ may import only from its own
// part or from parts in lower layers (LAYERS below, lowest first; parts in one layer do not import
// each other). The lists are the architecture: moving a part, or letting one part use another,
// is a change of this table, made on purpose and reviewed, never a side effect of an import.
// Tests (*.test.ts) are outside the rule: an integration test may start the whole system.
//
// Second rule: only the metadata writer writes SMT keys (smtWriteViolations).
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

/**
 * Modules that may write SMT keys: the metadata writer (every live change, through the pure
 * transitions of smt-transitions.ts) and `presage meta restore`, which writes a whole backup into
 * a stopped, empty store. The store implementations under src/metadata/ write what they are given.
 */
export const SMT_WRITERS: readonly string[] = ['src/orchestrator/metadata-writer.ts', 'src/cli/meta-commands.ts'];

const SMT_IMPORT_RE = /import\s+(?:type\s+)?\{[^}]*\b(?:smtKey|SMT)\b[^}]*\}\s*from\s*['"][^'"]*metadata\/model\.ts['"]/;

/**
 * Modules outside SMT_WRITERS that both name SMT keys (import smtKey or SMT) and write the store
 * (call .txn, the KvStore's only write): each is a second writer of the SMT, which the design forbids.
 */
export function smtWriteViolations(files: { path: string; text: string }[], writers = SMT_WRITERS): string[] {
  return files
    .filter((f) => !f.path.endsWith('.test.ts') && f.path.startsWith(`src${path.sep}`) && !f.path.startsWith(path.join('src', 'metadata') + path.sep))
    .filter((f) => !writers.includes(f.path.split(path.sep).join('/')))
    .filter((f) => SMT_IMPORT_RE.test(f.text) && /\.txn\(/.test(f.text))
    .map((f) => f.path);
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
  const files = sourceFiles(root);
  const bad = checkLayers(root, files);
  for (const v of bad) console.error(`${v.file}:${v.line}: ${v.from} imports ${v.to} (${v.specifier}): ${v.to} is not in a lower layer than ${v.from}`);
  const writers = smtWriteViolations(files);
  for (const f of writers) console.error(`${f}: writes the metadata store and names SMT keys; only ${SMT_WRITERS.join(', ')} may (use MetadataWriter and smt-transitions.ts)`);
  if (bad.length > 0 || writers.length > 0) {
    console.error(`check-layers: ${bad.length} import(s) against the layer order, ${writers.length} SMT writer(s) outside the metadata writer`);
    process.exit(1);
  }
  console.error(`check-layers: ok (${LAYERS.map((l) => l.join('/')).join(' < ')})`);
}
