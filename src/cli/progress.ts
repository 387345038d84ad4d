// Progress bars for long CLI work (import, export, migrations, training), on stderr and only
// when it is a terminal, so scripted output stays clean.

import cliProgress from 'cli-progress';
import { formatBytes } from '../common/size.ts';
import { isTty } from './common.ts';
import type { RetrainProgress, RetrainStage } from '../orchestrator/retrain-scheduler.ts';

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

/** A stage-labelled progress bar on stderr, only on a terminal; `fraction` is within the stage. */
export class StageProgress {
  private readonly bar?: cliProgress.SingleBar;
  constructor() {
    if (!isTty(process.stderr)) return;
    this.bar = new cliProgress.SingleBar({ stream: process.stderr, format: '{stage} [{bar}] {percentage}% | {duration_formatted}', hideCursor: true }, cliProgress.Presets.shades_classic);
    this.bar.start(100, 0, { stage: 'starting'.padEnd(32) });
  }
  update(stage: string, fraction: number): void {
    this.bar?.update(Math.round(Math.min(1, Math.max(0, fraction)) * 100), { stage: stage.padEnd(32) });
  }
  stop(): void {
    this.bar?.stop();
  }
}

const RETRAIN_STAGES: readonly RetrainStage[] = ['pulling history', 'training', 'pushing'];

/**
 * The bar's label and fraction for GET /v1/models' `running` (RetrainProgress), or undefined
 * when it is null or not one (an older orchestrator answers a boolean): then the bar stays as is.
 */
export function retrainBarState(running: unknown): { label: string; fraction: number } | undefined {
  if (!running || typeof running !== 'object') return undefined;
  const p = running as Partial<RetrainProgress>;
  if (!RETRAIN_STAGES.includes(p.stage as RetrainStage) || !Number.isFinite(p.done) || !Number.isFinite(p.total)) return undefined;
  const done = p.done!;
  const total = p.total!;
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  if (p.stage === 'training') return { label: total > 0 && typeof p.step === 'string' ? `training: ${p.step}` : 'training (starting)', fraction };
  return { label: `${p.stage} ${done}/${total}`, fraction };
}
