// Helpers shared by the CLI's commands.

import { InvalidArgumentError, Option } from 'commander';
import { parseSize } from '../common/size.ts';
import { normaliseUrl } from '../common/address.ts';

export const DEFAULT_ORCHESTRATOR = 'http://127.0.0.1:7400';

export function orchestratorOption(): Option {
  return new Option('-o, --orchestrator <url>', 'orchestrator URL (or host:port)')
    .env('PRESAGE_ORCHESTRATOR')
    .default(DEFAULT_ORCHESTRATOR);
}

export function intArg(name: string, min: number, max: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}

/** Runs a command body, printing a one-line error and exiting 1 on failure. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void) {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      process.stderr.write(`presage: ${(err as Error).message ?? String(err)}\n`);
      process.exit(1);
    }
  };
}


export function sizeArg(v: string): number {
  try {
    return parseSize(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function orchestratorUrl(opts: { orchestrator?: string }): string {
  return normaliseUrl(opts.orchestrator ?? DEFAULT_ORCHESTRATOR);
}

/** True when the user should see colour and progress bars. */
export const isTty = (stream: NodeJS.WriteStream = process.stdout) => stream.isTTY === true && !process.env.NO_COLOR;

export function printJson(data: unknown): void {
  process.stdout.write(JSON.stringify(data, null, 2) + '\n');
}
