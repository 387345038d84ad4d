// `presage meta migrate`: moves a cluster's metadata from the orchestrator's embedded store
// into etcd, so the cluster can run with several orchestrators (`--meta etcd://…`).
// `presage meta backup` / `restore`: a consistent snapshot of every Presage key (one range at one
// revision, taken from the running cluster), and its restore into an empty store, refused when
// the servers have seen a newer state of any segment than the backup holds (what would be lost
// is listed), unless forced.

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
import { action, apiFor, metaOption, orchestratorOption, printJson } from './common.ts';
import { httpJson } from '../api/http.ts';
import { adminBaseUrl } from '../common/cluster-tls.ts';
import { parseMetaOption } from '../metadata/backend.ts';
import { CLUSTER_KEY, SERVERS, SMT, type ServerRecord, type SmtEntry } from '../metadata/model.ts';
import { DirLock } from '../orchestrator/dir-lock.ts';
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

/** Every Presage key lives under this prefix (/presage/, /presage-auth/, /presage-ops/): one range, one revision. */
const ALL = '/presage';
export const BACKUP_FORMAT = 'presage-meta-backup/1';

interface Backup {
  format: typeof BACKUP_FORMAT;
  takenAt: string;
  revision: number;
  clusterId?: string;
  entries: { key: string; value: string }[];
}

function readBackup(file: string): Backup {
  let b: Backup;
  try {
    b = JSON.parse(fs.readFileSync(file, 'utf8')) as Backup;
  } catch (err) {
    throw new Error(`cannot read the backup ${file}: ${(err as NodeJS.ErrnoException).code ?? 'not valid JSON'}`);
  }
  if (b?.format !== BACKUP_FORMAT || !Array.isArray(b.entries) || !b.entries.every((e) => typeof e?.key === 'string' && typeof e.value === 'string' && e.key.startsWith(ALL))) {
    throw new Error(`${file} is not a Presage metadata backup (format ${BACKUP_FORMAT})`);
  }
  return b;
}

/**
 * Segments some server has seen at a newer epoch than the backup holds: what restoring it would
 * lose. Servers that cannot be asked are listed apart (their state is unknown).
 */
async function newerOnServers(b: Backup): Promise<{ newer: string[]; unreachable: string[] }> {
  const smt = new Map<string, SmtEntry>();
  const servers: ServerRecord[] = [];
  for (const e of b.entries) {
    if (e.key.startsWith(SMT)) smt.set(e.key.slice(SMT.length), JSON.parse(e.value) as SmtEntry);
    else if (e.key.startsWith(SERVERS)) servers.push(JSON.parse(e.value) as ServerRecord);
  }
  const newer: string[] = [];
  const unreachable: string[] = [];
  for (const s of servers) {
    let held: Record<string, number>;
    try {
      held = await httpJson<Record<string, number>>(adminBaseUrl(s.adminAddr), 'GET', '/v1/held', undefined, 5000);
    } catch (err) {
      unreachable.push(`${s.id} (${s.adminAddr}): ${(err as Error).message}`);
      continue;
    }
    for (const [segId, epoch] of Object.entries(held)) {
      const e = smt.get(segId);
      if (!e) newer.push(`${segId}: ${s.id} holds it (epoch ${epoch}), the backup does not know it`);
      else if (epoch > e.epoch) newer.push(`${segId}: ${s.id} saw epoch ${epoch}, the backup has ${e.epoch}`);
    }
  }
  return { newer: newer.sort(), unreachable };
}

/**
 * Writes `entries` into `dst` in batches, then removes the Presage keys it held that they do not
 * have (an overwritten older copy). A target holding keys is refused unless `force`.
 */
async function writeAll(dst: KvStore, entries: { key: string; value: string }[], force: boolean, target = 'the target', label = 'restoring keys'): Promise<{ removed: number }> {
  const existing = (await dst.range(ALL)).entries;
  if (existing.length > 0 && !force) throw new Error(`${target} already holds ${existing.length} Presage keys; write into an empty store, or use --force to replace them`);
  const bar = new ByteProgress(entries.length, label, 'items');
  for (let i = 0; i < entries.length; i += BATCH) {
    const batch = entries.slice(i, i + BATCH);
    const r = await dst.txn({ put: batch });
    if (!r.succeeded) throw new Error('the target refused a batch');
    bar.add(batch.length);
  }
  bar.stop();
  const keep = new Set(entries.map((e) => e.key));
  const stale = existing.filter((e) => !keep.has(e.key)).map((e) => e.key);
  for (let i = 0; i < stale.length; i += BATCH) await dst.txn({ delete: stale.slice(i, i + BATCH) });
  return { removed: stale.length };
}

export function registerMetaCommands(program: Command): void {
  const meta = program.command('meta').description('metadata store maintenance');
  meta
    .command('backup <file>')
    .description('write a consistent snapshot of the whole metadata store (any time; from the running orchestrator, or from etcd with --meta)')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print a JSON summary')
    .action(action(async (file: string, opts: { orchestrator?: string; meta?: string; json?: boolean }) => {
      let range: { entries: KvEntry[]; revision: number };
      const backend = parseMetaOption(opts.meta);
      if (backend.kind === 'etcd') {
        const kv = EtcdKvStore.connect(backend.url);
        try {
          range = await kv.range(ALL);
        } finally {
          await kv.close();
        }
      } else {
        range = await apiFor(opts).kvSource().range(ALL);
      }
      const cluster = range.entries.find((e) => e.key === CLUSTER_KEY);
      const b: Backup = {
        format: BACKUP_FORMAT,
        takenAt: new Date().toISOString(),
        revision: range.revision,
        ...(cluster ? { clusterId: (JSON.parse(cluster.value) as { id: string }).id } : {}),
        entries: range.entries.map((e) => ({ key: e.key, value: e.value })),
      };
      // The keyring's verifiers are in it: owner-only, written whole or not at all.
      const tmp = `${file}.tmp`;
      const fd = fs.openSync(tmp, 'w', 0o600);
      try {
        fs.writeSync(fd, JSON.stringify(b));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
      const summary = { file, keys: b.entries.length, revision: b.revision, clusterId: b.clusterId, digest: digest(range.entries) };
      if (opts.json) return printJson(summary);
      process.stdout.write(`backed up ${b.entries.length} keys at revision ${b.revision} of cluster ${b.clusterId ?? '(no id)'} to ${file}\n`);
    }));
  meta
    .command('restore <file>')
    .description('restore a backup into an empty store (an orchestrator --dir that is not running, or etcd); refused if servers saw newer state than the backup, unless --force')
    .requiredOption('--to <target>', "the orchestrator's --dir (stopped), or etcd://… / etcds://…")
    .option('--force', 'restore even though servers saw newer state (listed), or into a store that holds keys')
    .option('--json', 'print a JSON summary')
    .action(action(async (file: string, opts: { to: string; force?: boolean; json?: boolean }) => {
      const b = readBackup(file);
      const { newer, unreachable } = await newerOnServers(b);
      if ((newer.length > 0 || unreachable.length > 0) && !opts.force) {
        const lines = [
          ...(newer.length ? [`the servers have seen newer state than this backup (taken ${b.takenAt}); restoring it would lose:`, ...newer.slice(0, 50).map((l) => `  ${l}`), ...(newer.length > 50 ? [`  … and ${newer.length - 50} more`] : [])] : []),
          ...(unreachable.length ? ['these servers could not be asked what they have seen:', ...unreachable.map((l) => `  ${l}`)] : []),
          'take a newer backup if there is one; --force restores this one anyway',
        ];
        throw new Error(lines.join('\n'));
      }
      const etcd = /^etcds?:\/\//.test(opts.to);
      const lock = etcd ? undefined : DirLock.acquire(opts.to);
      const dst: KvStore = etcd ? EtcdKvStore.connect(opts.to) : EmbeddedKvStore.open(path.join(opts.to, 'metadata.sqlite'));
      try {
        const { removed } = await writeAll(dst, b.entries, opts.force === true);
        const after = (await dst.range(ALL)).entries;
        const ok = digest(after) === digest(b.entries.map((e) => ({ ...e, createRevision: 0, modRevision: 0 })));
        if (!ok) throw new Error(`verification failed: ${after.length} keys in the target, ${b.entries.length} in the backup`);
        const summary = { keys: b.entries.length, removed, clusterId: b.clusterId, forced: opts.force === true && (newer.length > 0 || unreachable.length > 0), lost: newer };
        if (opts.json) return printJson(summary);
        process.stdout.write(`restored ${b.entries.length} keys of cluster ${b.clusterId ?? '(no id)'} into ${opts.to} and verified them\n`);
        if (newer.length) process.stdout.write(`forced: ${newer.length} segment(s) go back to older state\n`);
      } finally {
        await dst.close();
        lock?.release();
      }
    }));
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
        const { removed } = await writeAll(dst, entries.map((e) => ({ key: e.key, value: e.value })), opts.force === true, 'etcd', 'copying keys');
        const copied = await snapshot(dst);
        const ok = copied.length === entries.length && digest(copied) === digest(entries);
        if (!ok) throw new Error(`verification failed: ${copied.length} keys in etcd, ${entries.length} in the source`);
        const summary = { keys: entries.length, removed, digest: digest(entries), verified: true };
        if (opts.json) return printJson(summary);
        process.stdout.write(`copied ${entries.length} keys into ${opts.to} and verified them (sha256 ${summary.digest.slice(0, 16)}…)\n`);
        process.stdout.write(`now start the orchestrator(s) and servers with --meta ${opts.to}\n`);
      } finally {
        await src.close();
        await dst.close();
      }
    }));
}
