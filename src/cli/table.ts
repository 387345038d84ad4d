// Plain-text tables for the CLI: aligned columns, colour only when writing to a terminal.

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => visibleLength(r[i] ?? ''))));
  const line = (r: string[]) => r.map((c, i) => {
    const pad = widths[i] - visibleLength(c);
    // Numbers right-aligned, text left-aligned.
    return /^-?[\d.,]+( [KMGTP]?i?B)?%?$/.test(stripAnsi(c)) ? ' '.repeat(pad) + c : c + ' '.repeat(pad);
  }).join('  ').trimEnd();
  return [line(cells[0]), ...cells.slice(1).map(line)].join('\n');
}

const ANSI = /\x1b\[[0-9;]*m/g;
const stripAnsi = (s: string) => s.replace(ANSI, '');
const visibleLength = (s: string) => stripAnsi(s).length;

export function colour(enabled: boolean) {
  const wrap = (code: number) => (s: string) => (enabled ? `\x1b[${code}m${s}\x1b[0m` : s);
  return { red: wrap(31), green: wrap(32), yellow: wrap(33), bold: wrap(1), dim: wrap(2) };
}
