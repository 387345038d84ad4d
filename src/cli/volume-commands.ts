import fs from 'node:fs';
import type { Command } from 'commander';
import { PresageClient, type Volume } from '../client/presage-client.ts';
import { formatBytes } from '../common/size.ts';
import { CRITICALITY, type Criticality } from '../metadata/model.ts';
import { action, intArg, isTty, orchestratorOption, printJson, sizeArg, metaOption, apiFor, connectTarget } from './common.ts';
import { ByteProgress } from './progress.ts';
import { table } from './table.ts';

const CHUNK = 4 * 1024 * 1024;
const IN_FLIGHT = 8;

type Common = { orchestrator: string; json?: boolean };

export function registerVolumeCommands(program: Command): void {
  const volume = program.command('volume').description('create, list, delete, import and export volumes');

  volume
    .command('create <name>')
    .description('create a volume')
    .requiredOption('-s, --size <size>', 'volume size, e.g. 256MiB, 10GiB', sizeArg)
    .option('--segment-size <size>', 'segment size: a power of two from 1MiB', sizeArg, 1024 ** 3)
    .option('-r, --replicas <n>', 'replication factor (1-5)', intArg('replicas', 1, 5), 2)
    .option('-c, --criticality <class>', `criticality class (${CRITICALITY.join(', ')})`, 'normal')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON')
    .action(action(async (name: string, opts: Common & { size: number; segmentSize: number; replicas: number; criticality: string }) => {
      if (!CRITICALITY.includes(opts.criticality as Criticality)) throw new Error(`criticality must be one of ${CRITICALITY.join(', ')}`);
      const v = await apiFor(opts).createVolume({
        name, size: opts.size, segmentSize: opts.segmentSize, replicas: opts.replicas, criticality: opts.criticality as Criticality,
      });
      if (opts.json) return printJson(v);
      process.stdout.write(`created volume ${v.name}: ${formatBytes(v.size)} in ${v.segmentCount} segments of ${formatBytes(v.segmentSize)}, ${v.replicas} replica(s)\n`);
    }));

  volume
    .command('list')
    .description('list volumes')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON')
    .action(action(async (opts: Common) => {
      const vols = await apiFor(opts).listVolumes();
      if (opts.json) return printJson(vols);
      if (vols.length === 0) return void process.stdout.write('no volumes\n');
      process.stdout.write(table(
        ['NAME', 'SIZE', 'SEGMENT', 'SEGMENTS', 'REPLICAS', 'CRITICALITY', 'CREATED'],
        vols.map((v) => [v.name, formatBytes(v.size), formatBytes(v.segmentSize), v.segmentCount, v.replicas, v.criticality, v.createdAt]),
      ) + '\n');
    }));

  volume
    .command('delete <name>')
    .description('delete a volume and its data')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON')
    .action(action(async (name: string, opts: Common) => {
      const r = await apiFor(opts).deleteVolume(name);
      if (opts.json) return printJson(r);
      process.stdout.write(`deleted volume ${name}\n`);
    }));

  volume
    .command('import <name> <file>')
    .description('copy a local file (or - for stdin) into a volume, from offset 0')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print a JSON summary')
    .action(action(async (name: string, file: string, opts: Common) => {
      await withVolume(opts, name, async (vol) => {
        const size = file === '-' ? undefined : fs.statSync(file).size;
        if (size !== undefined && size > vol.size) throw new Error(`${file} is ${formatBytes(size)}, larger than volume ${name} (${formatBytes(vol.size)})`);
        const stream = file === '-' ? process.stdin : fs.createReadStream(file, { highWaterMark: CHUNK });
        const bar = new ByteProgress(size ?? vol.size, `import ${name}`);
        const t0 = Date.now();
        let offset = 0;
        const pending = new Set<Promise<void>>();
        let buffered: Buffer[] = [];
        let bufferedLen = 0;
        const submit = async (data: Buffer) => {
          if (offset + data.length > vol.size) throw new Error(`input is larger than volume ${name} (${formatBytes(vol.size)})`);
          const p = vol.write(offset, data).then(() => bar.add(data.length));
          offset += data.length;
          pending.add(p);
          p.finally(() => pending.delete(p)).catch(() => {});
          if (pending.size >= IN_FLIGHT) await Promise.race(pending);
        };
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          buffered.push(chunk);
          bufferedLen += chunk.length;
          while (bufferedLen >= CHUNK) {
            const all = Buffer.concat(buffered);
            await submit(all.subarray(0, CHUNK));
            buffered = [all.subarray(CHUNK)];
            bufferedLen -= CHUNK;
          }
        }
        if (bufferedLen > 0) await submit(Buffer.concat(buffered));
        await Promise.all(pending);
        await vol.flush();
        bar.stop();
        report(opts, { volume: name, file, bytes: offset, seconds: (Date.now() - t0) / 1000 }, `imported ${formatBytes(offset)} from ${file} into ${name}`);
      });
    }));

  volume
    .command('export <name> <file>')
    .description('copy a volume into a local file (or - for stdout)')
    .option('--length <size>', 'bytes to export from offset 0 (default: the whole volume)', sizeArg)
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print a JSON summary')
    .action(action(async (name: string, file: string, opts: Common & { length?: number }) => {
      await withVolume(opts, name, async (vol) => {
        const length = opts.length ?? vol.size;
        if (length > vol.size) throw new Error(`--length ${length} is past the end of volume ${name} (${vol.size} bytes)`);
        const out = file === '-' ? process.stdout : fs.createWriteStream(file);
        const bar = file === '-' ? undefined : new ByteProgress(length, `export ${name}`);
        const t0 = Date.now();
        // Read ahead IN_FLIGHT chunks while writing them out in order.
        const reads: Promise<Buffer>[] = [];
        let next = 0;
        const issue = () => {
          if (next >= length) return;
          const len = Math.min(CHUNK, length - next);
          reads.push(vol.read(next, len));
          next += len;
        };
        for (let i = 0; i < IN_FLIGHT; i++) issue();
        while (reads.length) {
          const data = await reads.shift()!;
          issue();
          if (!out.write(data)) await new Promise<void>((r) => out.once('drain', () => r()));
          bar?.add(data.length);
        }
        if (out !== process.stdout) {
          await new Promise<void>((resolve, reject) => (out as fs.WriteStream).end((err?: Error | null) => (err ? reject(err) : resolve())));
        }
        bar?.stop();
        if (file !== '-') report(opts, { volume: name, file, bytes: length, seconds: (Date.now() - t0) / 1000 }, `exported ${formatBytes(length)} of ${name} to ${file}`);
      });
    }));
}

async function withVolume(opts: Common, name: string, fn: (v: Volume) => Promise<void>): Promise<void> {
  const client = await PresageClient.connect(connectTarget(opts));
  try {
    await fn(await client.openVolume(name));
  } finally {
    await client.close();
  }
}

function report(opts: Common, data: { bytes: number; seconds: number } & Record<string, unknown>, text: string): void {
  if (opts.json) return printJson(data);
  const rate = data.seconds > 0 ? ` (${formatBytes(data.bytes / data.seconds)}/s)` : '';
  process.stdout.write(`${text} in ${data.seconds.toFixed(1)} s${rate}\n`);
}
