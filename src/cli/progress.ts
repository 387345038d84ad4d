// Progress bars for long CLI work (import, export, migrations, training), on stderr and only
// when it is a terminal, so scripted output stays clean.

import cliProgress from 'cli-progress';
import { formatBytes } from '../common/size.ts';
import { isTty } from './common.ts';

export class ByteProgress {
  private readonly bar?: cliProgress.SingleBar;
  private done = 0;
  private readonly t0 = Date.now();

  constructor(private readonly total: number, label: string, private readonly unit: 'bytes' | 'items' = 'bytes') {
    if (!isTty(process.stderr)) return;
    this.bar = new cliProgress.SingleBar({
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {done}/{all} | {rate} | ETA {eta_formatted}`,
      hideCursor: true,
    }, cliProgress.Presets.shades_classic);
    this.bar.start(total, 0, this.payload());
  }

  private payload() {
    const secs = Math.max((Date.now() - this.t0) / 1000, 0.001);
    const fmt = this.unit === 'bytes' ? formatBytes : (n: number) => String(Math.round(n));
    return { done: fmt(this.done), all: fmt(this.total), rate: `${fmt(this.done / secs)}/s` };
  }

  add(bytes: number): void {
    this.done += bytes;
    this.bar?.update(this.done, this.payload());
  }

  stop(): void {
    this.bar?.stop();
  }
}
