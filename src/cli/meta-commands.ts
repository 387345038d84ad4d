// `presage meta migrate`: moves a cluster's metadata from the orchestrator's embedded store
// into etcd, so the cluster can run with several orchestrators (`--meta etcd://…`).

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Command } from 'commander';
import { EmbeddedKvStore } from '../metadata/embedded-kv.ts';
import { EtcdKvStore } from '../metadata/etcd-kv.ts';
import type { KvEntry, KvStore } from '../metadata/kv.ts';
import { ROOT } from '../metadata/model.ts';
import { AUTH_ROOT } from '../auth/keyring.ts';
import { OPERATORS } from '../orchestrator/operators.ts';
import { action, printJson } from './common.ts';
import { ByteProgress } from './progress.ts';

/** etcd refuses transactions with more operations than its --max-txn-ops (128 by default). */
const BATCH = 100;
// The keyring goes too: the cluster's entities keep their keys across the move.
const PREFIXES = [ROOT, OPERATORS, AUTH_ROOT];

async function snapshot(kv: KvStore): Promise<KvEntry[]> {
  const out: KvEntry[] = [];
  for (const p of PREFIXES) out.push(...(await kv.range(p)).entries);
  return out;
}

function digest(entries: KvEntry[]): string {
  const h = crypto.createHash('sha256');
  for (const e of [...entries].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) h.update(`${e.key}\0${e.value}\0`);
  return h.digest('hex');
}

export function registerMetaCommands(program: Command): void {
  const meta = program.command('meta').description('metadata store maintenance');
  meta
    .command('migrate')
    .description('copy the embedded metadata store (stop the orchestrator first) into etcd, and verify the copy')
    .requiredOption('--from <dir>', "the orchestrator's --dir (holding metadata.sqlite)")
    .requiredOption('--to <url>', 'etcd://HOST:PORT[,HOST:PORT…] or etcds://… (TLS: --etcd-ca; user: --etcd-user)')
    .option('--force', 'overwrite Presage keys already in etcd')
    .option('--json', 'print a JSON summary')
    .action(action(async (opts: { from: string; to: string; force?: boolean; json?: boolean }) => {
      const file = path.join(opts.from, 'metadata.sqlite');
      if (!fs.existsSync(file)) throw new Error(`${file} does not exist (is --from the orchestrator's --dir?)`);
      const src = EmbeddedKvStore.open(file);
      const dst = EtcdKvStore.connect(opts.to);
      try {
        const entries = await snapshot(src);
        const existing = await snapshot(dst);
        if (existing.length > 0 && !opts.force) throw new Error(`etcd already holds ${existing.length} Presage keys; use --force to overwrite`);
        const bar = new ByteProgress(entries.length, 'copying keys', 'items');
        for (let i = 0; i < entries.length; i += BATCH) {
          const batch = entries.slice(i, i + BATCH);
          const r = await dst.txn({ put: batch.map((e) => ({ key: e.key, value: e.value })) });
          if (!r.succeeded) throw new Error('etcd refused a batch');
          bar.add(batch.length);
        }
        bar.stop();
        // Keys of the target that the source does not have (an overwritten older copy) are removed.
        const keep = new Set(entries.map((e) => e.key));
        const stale = existing.filter((e) => !keep.has(e.key)).map((e) => e.key);
        for (let i = 0; i < stale.length; i += BATCH) await dst.txn({ delete: stale.slice(i, i + BATCH) });
        const copied = await snapshot(dst);
        const ok = copied.length === entries.length && digest(copied) === digest(entries);
        if (!ok) throw new Error(`verification failed: ${copied.length} keys in etcd, ${entries.length} in the source`);
        const summary = { keys: entries.length, removed: stale.length, digest: digest(entries), verified: true };
        if (opts.json) return printJson(summary);
        process.stdout.write(`copied ${entries.length} keys into ${opts.to} and verified them (sha256 ${summary.digest.slice(0, 16)}…)\n`);
        process.stdout.write(`now start the orchestrator(s) and servers with --meta ${opts.to}\n`);
      } finally {
        await src.close();
        await dst.close();
      }
    }));
}
