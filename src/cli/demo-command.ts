import type { Command } from 'commander';
import { runDemo } from '../demo/demo.ts';
import { action, intArg } from './common.ts';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('start a whole cluster on loopback with a workload and a server that degrades and gets drained')
    .option('--dir <dir>', 'where data and logs go (default: a new temporary directory)')
    .option('--servers <n>', 'storage servers', intArg('servers', 3, 20), 5)
    .option('--port <port>', 'orchestrator and dashboard port', intArg('port', 1, 65535), 7400)
    .option('--nbd-port <port>', 'NBD export port', intArg('nbd port', 1, 65535), 10809)
    .option('--fault-after <seconds>', 'when the degradation starts', intArg('fault after', 0, 86400), 60)
    .option('--headless', 'run unattended; exit non-zero if anything went wrong (needs --duration)')
    .option('--duration <seconds>', 'stop after this long (0 = until Ctrl-C)', intArg('duration', 0, 86400), 0)
    .option('--time-scale <n>', 'scoring clock compression, so a degradation plays out in minutes', intArg('time scale', 1, 3600), 60)
    .action(action(async (opts: { dir?: string; servers: number; port: number; nbdPort: number; faultAfter: number; headless?: boolean; duration: number; timeScale: number }) => {
      if (opts.headless && opts.duration === 0) throw new Error('--headless needs --duration SECONDS');
      const ac = new AbortController();
      let interrupted = false;
      process.once('SIGINT', () => {
        interrupted = true;
        ac.abort();
      });
      const result = await runDemo({ ...opts, headless: opts.headless === true }, undefined, ac.signal);
      if (!interrupted && !result.ok) process.exitCode = 1;
      process.exit(process.exitCode ?? 0);
    }));
}
