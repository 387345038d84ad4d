// A strict parser for the Prometheus text exposition format (version 0.0.4), used by tests
// to check that /metrics output is valid, and usable by tools that scrape a server. Any
// line that is not a valid comment, HELP, TYPE or sample throws with its line number.

export type PromType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
  timestampMs?: number;
}

export interface PromFamily {
  name: string;
  type: PromType;
  help?: string;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|inf|NaN)$/;
const TYPES = new Set<PromType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export class PromParseError extends Error {
  constructor(readonly line: number, msg: string) {
    super(`line ${line}: ${msg}`);
  }
}

export function parseFloatStrict(s: string): number | undefined {
  if (!FLOAT.test(s)) return undefined;
  if (/^[+-]?[Ii]nf$/.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (s === 'NaN') return NaN;
  return Number(s);
}

/** Unescapes a HELP docstring (`\\` and `\n`). */
function unescapeHelp(s: string, ln: number): string {
  return s.replace(/\\(.?)/g, (_, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    throw new PromParseError(ln, `invalid escape \\${c} in HELP`);
  });
}

function parseLabels(s: string, ln: number): { labels: Record<string, string>; rest: string } {
  // s starts just after '{'
  const labels: Record<string, string> = {};
  let i = 0;
  for (;;) {
    while (s[i] === ' ') i++;
    if (s[i] === '}') return { labels, rest: s.slice(i + 1) };
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(i));
    if (!m) throw new PromParseError(ln, `invalid label name at ${JSON.stringify(s.slice(i, i + 20))}`);
    const name = m[0];
    i += name.length;
    while (s[i] === ' ') i++;
    if (s[i] !== '=') throw new PromParseError(ln, `expected '=' after label ${name}`);
    i++;
    while (s[i] === ' ') i++;
    if (s[i] !== '"') throw new PromParseError(ln, `expected '"' to open the value of label ${name}`);
    i++;
    let v = '';
    for (;;) {
      const c = s[i];
      if (c === undefined) throw new PromParseError(ln, `unterminated value of label ${name}`);
      if (c === '"') break;
      if (c === '\\') {
        const e = s[i + 1];
        if (e === '\\') v += '\\';
        else if (e === '"') v += '"';
        else if (e === 'n') v += '\n';
        else throw new PromParseError(ln, `invalid escape \\${e ?? ''} in label ${name}`);
        i += 2;
        continue;
      }
      v += c;
      i++;
    }
    i++;
    if (name in labels) throw new PromParseError(ln, `duplicate label ${name}`);
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new PromParseError(ln, `reserved or invalid label name ${name}`);
    labels[name] = v;
    while (s[i] === ' ') i++;
    if (s[i] === ',') {
      i++;
      continue;
    }
    if (s[i] === '}') return { labels, rest: s.slice(i + 1) };
    throw new PromParseError(ln, `expected ',' or '}' after label ${name}`);
  }
}

/** The family a sample name belongs to, given the declared types. */
function familyOf(name: string, families: Map<string, PromFamily>): PromFamily | undefined {
  const f = families.get(name);
  if (f) return f;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = families.get(name.slice(0, -suffix.length));
    if (base && (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket'))) return base;
  }
  return undefined;
}

/**
 * Parses exposition text. Strict: every sample must belong to a family declared by a
 * preceding `# TYPE` (our exporters always declare), a family's samples must be
 * contiguous, TYPE and HELP at most once per family, histograms must have cumulative
 * buckets ending in le="+Inf" equal to _count.
 */
export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const closed = new Set<string>();
  let current: PromFamily | undefined;
  const helps = new Map<string, string>();
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, idx) => {
    const ln = idx + 1;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kw, name, rest = ''] = m;
      if (!METRIC_NAME.test(name!)) throw new PromParseError(ln, `invalid metric name ${JSON.stringify(name)} in ${kw}`);
      if (kw === 'HELP') {
        if (helps.has(name!)) throw new PromParseError(ln, `second HELP for ${name}`);
        helps.set(name!, unescapeHelp(rest, ln));
        const f = families.get(name!);
        if (f) f.help = helps.get(name!);
        return;
      }
      const type = rest.trim() as PromType;
      if (!TYPES.has(type)) throw new PromParseError(ln, `invalid TYPE ${JSON.stringify(rest)} for ${name}`);
      if (families.has(name!)) throw new PromParseError(ln, `second TYPE for ${name}`);
      const f: PromFamily = { name: name!, type, samples: [] };
      if (helps.has(name!)) f.help = helps.get(name!);
      families.set(name!, f);
      if (current) closed.add(current.name);
      current = f;
      return;
    }
    const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nm) throw new PromParseError(ln, `invalid sample line ${JSON.stringify(line.slice(0, 60))}`);
    const name = nm[0];
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest.slice(1), ln));
    if (!/^ +\S/.test(rest)) throw new PromParseError(ln, `expected a space and a value after ${name}`);
    const parts = rest.trim().split(/ +/);
    if (parts.length > 2) throw new PromParseError(ln, `trailing text after the value of ${name}`);
    const value = parseFloatStrict(parts[0]!);
    if (value === undefined) throw new PromParseError(ln, `invalid value ${JSON.stringify(parts[0])} for ${name}`);
    const sample: PromSample = { name, labels, value };
    if (parts[1] !== undefined) {
      if (!/^-?\d+$/.test(parts[1])) throw new PromParseError(ln, `invalid timestamp ${JSON.stringify(parts[1])}`);
      sample.timestampMs = Number(parts[1]);
    }
    const fam = familyOf(name, families);
    if (!fam) throw new PromParseError(ln, `sample ${name} has no preceding TYPE`);
    if (fam !== current || closed.has(fam.name)) throw new PromParseError(ln, `samples of ${fam.name} are not contiguous`);
    if (fam.type === 'histogram' && name.endsWith('_bucket')) {
      if (labels.le === undefined || parseFloatStrict(labels.le) === undefined) throw new PromParseError(ln, `bucket of ${fam.name} without a valid le label`);
    }
    fam.samples.push(sample);
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function checkHistogram(f: PromFamily): void {
  // Group by the labels other than le.
  const groups = new Map<string, { buckets: [number, number][]; count?: number }>();
  const key = (l: Record<string, string>) => JSON.stringify(Object.entries(l).filter(([k]) => k !== 'le').sort());
  for (const s of f.samples) {
    const g = groups.get(key(s.labels)) ?? { buckets: [] };
    groups.set(key(s.labels), g);
    if (s.name === `${f.name}_bucket`) g.buckets.push([parseFloatStrict(s.labels.le!)!, s.value]);
    else if (s.name === `${f.name}_count`) g.count = s.value;
  }
  for (const [k, g] of groups) {
    const b = g.buckets;
    for (let i = 1; i < b.length; i++) {
      if (!(b[i]![0] > b[i - 1]![0])) throw new Error(`histogram ${f.name}${k}: le values not increasing`);
      if (b[i]![1] < b[i - 1]![1]) throw new Error(`histogram ${f.name}${k}: buckets not cumulative`);
    }
    const inf = b[b.length - 1];
    if (!inf || inf[0] !== Infinity) throw new Error(`histogram ${f.name}${k}: no le="+Inf" bucket`);
    if (g.count === undefined || g.count !== inf[1]) throw new Error(`histogram ${f.name}${k}: _count ${g.count} != +Inf bucket ${inf[1]}`);
  }
}
