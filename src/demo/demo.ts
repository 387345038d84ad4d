// `presage demo`: a whole cluster in one process on loopback — the orchestrator with its
// dashboard, 5 storage servers, the NBD export — with history loaded, a verifying workload,
// and, after a while, a slowly ramping slow-I/O degradation injected into one server, so you can
// watch its Failure Score climb and its segments drain while the workload keeps running.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PresageClient } from '../client/presage-client.ts';
import { createLogger, type Logger } from '../common/log.ts';
import { PresageBlockDeviceProvider } from '../nbd/presage-provider.ts';
import { NbdServer } from '../nbd/nbd-server.ts';
import { registerDashboard } from '../dashboard/serve.ts';
import { Orchestrator } from '../orchestrator/orchestrator.ts';
import { StorageServer } from '../server/storage-server.ts';
import { backfill } from '../telemetry/history-import.ts';
import { VerifyingWorkload } from './workload.ts';

export interface DemoOptions {
  dir?: string;
  servers: number;
  port: number;
  nbdPort: number;
  /** Seconds before the degradation starts. */
  faultAfter: number;
  /** Stop after this many seconds (0 = until Ctrl-C). */
  duration: number;
  headless: boolean;
  /** Compressed scoring clock, so the degradation plays out in minutes. */
  timeScale: number;
}

const MiB = 1024 * 1024;
const DATA = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../shared/data');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runDemo(o: DemoOptions, out: (line: string) => void = (l) => process.stdout.write(l + '\n'), signal?: AbortSignal): Promise<{ ok: boolean; problems: string[] }> {
  const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'presage-demo-'));
  fs.mkdirSync(dir, { recursive: true });
  const log: Logger = createLogger('demo', process.env.PRESAGE_LOG_LEVEL ?? 'warn');
  out(`Presage demo: data and logs in ${dir}`);
  const orch = await Orchestrator.start({
    routes: [registerDashboard], dir: path.join(dir, 'orchestrator'), host: '127.0.0.1', port: o.port, logger: log, heartbeatTimeoutMs: 5000,
    scorePollMs: 1000, predictive: { sustainMs: 5000, recoverMs: 120000 },
  });
  const servers: StorageServer[] = [];
  let client: PresageClient | undefined;
  let nbd: NbdServer | undefined;
  let stop = false;
  const problems: string[] = [];
  const shutdown = async () => {
    stop = true;
    await nbd?.close().catch(() => {});
    await client?.close().catch(() => {});
    for (const s of servers) await s.stop().catch(() => {});
    await orch.stop().catch(() => {});
  };
  try {
    for (let i = 0; i < o.servers; i++) {
      servers.push(await StorageServer.start({
        dir: path.join(dir, `server-${i}`), orchestratorUrl: orch.url, host: '127.0.0.1', port: 0, adminHost: '127.0.0.1', adminPort: 0,
        zone: `zone-${i % 3}`, allowFaults: true, telemetryIntervalMs: 500, scoreIntervalMs: 1000, scoreTimeScale: o.timeScale, logger: log,
      }));
    }
    out(`${o.servers} storage servers up: ${servers.map((s) => s.id).join(', ')}`);
    if (fs.existsSync(path.join(DATA, 'perseus_A_dev_1min.csv.gz'))) {
      for (let i = 0; i < servers.length; i++) {
        const r = await backfill(servers[i].telemetry.store, { format: 'perseus', file: path.join(DATA, 'perseus_A_dev_1min.csv.gz'), host: i + 1 }, 30, Date.now());
        if (i === 0) out(`history: ${r.message}`);
      }
    } else {
      out(`history: ${DATA} not found; servers start with empty history`);
    }
    out(`models: ${servers[0].scoring.modelVersion} (bundled default; see docs/prediction.md)`);

    client = await PresageClient.connect({ orchestratorUrl: orch.url, logger: log });
    const vols = [
      { name: 'demo-db', criticality: 'critical' as const },
      { name: 'demo-app', criticality: 'normal' as const },
      { name: 'demo-scratch', criticality: 'low' as const },
    ];
    for (const v of vols) await client.api.createVolume({ name: v.name, size: 64 * MiB, segmentSize: 4 * MiB, replicas: 2, criticality: v.criticality });
    nbd = new NbdServer(new PresageBlockDeviceProvider(client), { logger: log });
    const nbdAddr = await nbd.listen({ host: '127.0.0.1', port: o.nbdPort });
    const loads = await Promise.all(vols.map(async (v, i) => new VerifyingWorkload(await client!.openVolume(v.name), i + 1, 64 * 1024)));
    const running = Promise.all(loads.map((w) => w.run({ workers: 2, until: () => stop, readRatio: 0.4, stripe: 256 * 1024, hotFraction: 0.2, hotShare: 0.8 })));

    out('');
    const keyFile = path.join(dir, 'orchestrator', 'admin.key');
    out(`dashboard:  ${orch.url}/   (it asks once for a token: PRESAGE_KEY_FILE=${keyFile} bin/presage auth token)`);
    out(`NBD export: ${nbdAddr.uri}   (try: nbdinfo --list ${nbdAddr.uri})`);
    out(`CLI:        PRESAGE_ORCHESTRATOR=${orch.url} PRESAGE_KEY_FILE=${keyFile} bin/presage status | events -f | migrations -w | score`);
    const victim = servers[Math.min(2, servers.length - 1)];
    out(`in ${o.faultAfter} s a slow-I/O degradation starts ramping on ${victim.id}: watch its score climb past 70 and its segments drain`);
    out('');

    const t0 = Date.now();
    let faulted = false;
    let drainedAt: number | undefined;
    signal?.addEventListener('abort', () => {
      stop = true;
      out('stopping…');
    });
    while (!stop && (o.duration === 0 || Date.now() - t0 < o.duration * 1000)) {
      await sleep(5000);
      const secs = Math.round((Date.now() - t0) / 1000);
      if (!faulted && secs >= o.faultAfter) {
        victim.faults!.set({ profile: 'slow-io', rampSeconds: 60, intensity: 40 });
        faulted = true;
        out(`[${secs}s] injected: slow-io on ${victim.id}, ramping to +40 ms per disk operation over 60 s`);
      }
      const st = orch.status();
      const scores = servers.map((s) => `${s.id}${s === victim ? '*' : ''}=${orch.fleet.scores.get(s.id)?.score.toFixed(0) ?? '-'}`).join(' ');
      const onVictim = st.servers.find((s) => s.id === victim.id)?.segments ?? 0;
      const ops = loads.reduce((n, w) => n + w.stats.writes + w.stats.reads, 0);
      const errors = loads.reduce((n, w) => n + w.stats.errors.length, 0);
      out(`[${secs}s] scores ${scores} | ${victim.id}: ${onVictim} segments${st.servers.find((s) => s.id === victim.id)?.draining ? ' (draining)' : ''} | moving ${st.operators.length} | workload ${ops} ops, ${errors} errors`);
      if (faulted && onVictim === 0 && drainedAt === undefined) {
        drainedAt = secs;
        out(`[${secs}s] ${victim.id} is drained: nothing of value is left on it`);
      }
    }
    stop = true;
    await running;
    for (const w of loads) {
      problems.push(...w.stats.errors.slice(0, 5));
      const bad = await w.verifyAll();
      if (bad !== undefined) problems.push(`verification failed at byte ${bad} of ${w.dev.name}`);
    }
    if (o.duration > 0 && drainedAt === undefined) problems.push(`${victim.id} was not drained within ${o.duration} s`);
    out(problems.length ? `PROBLEMS:\n  ${problems.join('\n  ')}` : 'demo finished: no I/O error, every byte verified, the degrading server was drained');
    return { ok: problems.length === 0, problems };
  } finally {
    await shutdown();
  }
}
