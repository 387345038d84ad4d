// Failpoints: named places in the code where a test can make a process pause, so that a real
// SIGKILL lands at an exact step of a protocol (TiKV's fail-rs is the model). They are inert
// unless the process was started with PRESAGE_FAILPOINTS, e.g.
//   PRESAGE_FAILPOINTS="operator.before-commit=sleep(3000);copy.paused=sleep(2000)"
// Each failpoint announces itself on stderr ("failpoint NAME reached") so a test can wait for it.

const spec = parse(process.env.PRESAGE_FAILPOINTS ?? '');

function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of text.split(';').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([\w.-]+)=sleep\((\d+)\)$/.exec(part);
    if (!m) throw new Error(`bad PRESAGE_FAILPOINTS entry "${part}" (expected name=sleep(ms))`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

export async function failpoint(name: string): Promise<void> {
  const ms = spec.get(name);
  if (ms === undefined) return;
  process.stderr.write(`failpoint ${name} reached\n`);
  await new Promise((r) => setTimeout(r, ms));
}
