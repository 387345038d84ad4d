// Long-running processes: `presage orchestrator` and `presage server`. Both stop cleanly on
// SIGINT/SIGTERM; everything acknowledged is already durable, so SIGKILL loses nothing acknowledged.

import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { loadKeyFile, setProcessCredential } from '../auth/credentials.ts';
import { keyFileGiven } from './auth-commands.ts';
import { parseHostPort } from '../common/address.ts';
import { createLogger } from '../common/log.ts';
import { registerDashboard } from '../dashboard/serve.ts';
import { Orchestrator } from '../orchestrator/orchestrator.ts';
import { DEFAULT_PREDICTIVE } from '../orchestrator/predictive-drain.ts';
import { PresageClient } from '../client/presage-client.ts';
import { DEFAULT_IN_FLIGHT_BUDGET, DEFAULT_PARTIAL_FRAME_BUDGET } from '../server/data-server.ts';
import { DEFAULT_ORCHESTRATOR_GRACE_MS, StorageServer } from '../server/storage-server.ts';
import { parseDuration } from '../server/telemetry.ts';
import { action, connectTarget, intArg, metaOption, orchestratorOption, sizeArg } from './common.ts';
import { DEFAULT_NBD_MAX_IN_FLIGHT, addNbdTlsOptions, nbdTlsFrom, startNbdExports, type NbdExports } from './nbd-command.ts';
import type { NbdTlsMode } from '../nbd/tls.ts';

function stopOn(signals: NodeJS.Signals[], stop: () => Promise<void>): void {
  let stopping = false;
  for (const sig of signals) {
    process.on(sig, () => {
      if (stopping) process.exit(1);
      stopping = true;
      stop().then(() => process.exit(0), () => process.exit(1));
    });
  }
}

/** --retrain-interval: a duration (7d, 12h, 90m) or 0 to retrain only on request. */
function retrainInterval(text: string): number {
  if (text.trim() === '0') return 0;
  let ms = NaN;
  try {
    ms = parseDuration(text);
  } catch {
    // reported below
  }
  if (!(ms >= 3_600_000)) throw new InvalidArgumentError('must be 0 or a duration of at least 1h (e.g. 7d, 12h)');
  return ms;
}

function overcommitArg(v: string): number {
  const n = Number(v);
  if (!(n > 0 && n <= 1000)) throw new InvalidArgumentError('over-commit ratio must be a number above 0, at most 1000');
  return n;
}

function ratioArg(v: string): number {
  const n = Number(v);
  if (!(n >= 0 && n < 1)) throw new InvalidArgumentError('must be a share from 0 (no limit) up to, but not including, 1, e.g. 0.3');
  return n;
}

export function registerProcessCommands(program: Command): void {
  program
    .command('orchestrator')
    .description('run the orchestrator: metadata store, REST API, heartbeats')
    .option('-d, --dir <dir>', 'directory for the metadata store', './presage-orchestrator')
    .option('-l, --listen <host:port>', 'REST API address', '127.0.0.1:7400')
    .option('--heartbeat-timeout <ms>', 'mark a server down (and fail over) after this long without a heartbeat', intArg('heartbeat timeout', 100, 3_600_000), 10000)
    .option('--min-up-ratio <share>', 'never mark a server down if fewer than this share of the servers would stay up (many silent at once is a network fault)', ratioArg, 0.3)
    .option('--down-out-delay <ms>', 'a server marked down has this long to come back before its segments are re-replicated (presage cluster set noout holds it indefinitely)', intArg('down-out delay', 0, 86_400_000), 30000)
    .option('--max-copies-per-server <n>', 'concurrent copies one server may take part in', intArg('max copies per server', 1, 64), 2)
    .option('--max-copies-cluster <n>', 'concurrent copies in the whole cluster', intArg('max copies in the cluster', 1, 10000), 16)
    .option('--cluster-bandwidth <size>', 'cap on all re-replication/migration copies together, per second (0 = none)', sizeArg, 0)
    .option('--no-repair', 'do not re-replicate segments that lost a replica')
    .option('--no-predictive', 'disable predictive drain: only reactive failover moves data')
    .option('--drain-threshold <score>', 'drain a server whose Failure Score stays at or above this', intArg('drain threshold', 1, 100), DEFAULT_PREDICTIVE.threshold)
    .option('--warning-threshold <score>', 'warn at this score; a drained server takes data again only below it', intArg('warning threshold', 0, 100), DEFAULT_PREDICTIVE.warning)
    .option('--drain-sustain <ms>', 'the score must stay above the threshold this long before draining', intArg('drain sustain', 0, 86_400_000), 15000)
    .option('--recover-after <ms>', 'a drained server must stay below the warning level this long to take data again', intArg('recover after', 0, 604_800_000), 120000)
    .option('--max-draining <percent>', 'at most this share of the up servers drains at once', intArg('max draining', 1, 100), 25)
    .option('--score-poll <ms>', 'how often servers\' Failure Scores and heat are polled', intArg('score poll', 100, 600_000), 5000)
    .addOption(metaOption())
    .option('--election-ttl <seconds>', 'with etcd: a dead leader is replaced after about this long', intArg('election ttl', 1, 600), 3)
    .option('--overcommit <ratio>', 'volumes may promise (size × replicas) up to this multiple of the up servers\' capacity; above 1 is thin provisioning', overcommitArg, 1)
    .option('--retrain-interval <duration>', 'retrain the failure models from the servers\' history this often (e.g. 7d, 12h; 0 = only on request)', retrainInterval, 7 * 86_400_000)
    .option('--allow-any-server-address', 'accept server addresses other than the one a server registers from (servers behind NAT); by default a server may announce only its own machine\'s address, so that no server can aim the orchestrator\'s requests at another machine')
    .action(action(async (opts: { allowAnyServerAddress?: boolean; retrainInterval: number; dir: string; listen: string; heartbeatTimeout: number; maxCopiesPerServer: number; maxCopiesCluster: number; clusterBandwidth: number; repair: boolean; meta?: string; electionTtl: number; predictive: boolean; drainThreshold: number; warningThreshold: number; drainSustain: number; recoverAfter: number; maxDraining: number; scorePoll: number; overcommit: number; minUpRatio: number; downOutDelay: number }) => {
      if (opts.warningThreshold > opts.drainThreshold) throw new Error('--warning-threshold must not be above --drain-threshold');
      const { host, port } = parseHostPort(opts.listen, '--listen');
      const log = createLogger('orchestrator');
      const o = await Orchestrator.start({
        routes: [registerDashboard], dir: opts.dir, host, port, logger: log, heartbeatTimeoutMs: opts.heartbeatTimeout, repair: opts.repair,
        limits: { maxCopiesPerServer: opts.maxCopiesPerServer, maxCopiesCluster: opts.maxCopiesCluster, clusterBandwidth: opts.clusterBandwidth },
        meta: opts.meta,
        admission: { overcommit: opts.overcommit },
        markDown: { minUpRatio: opts.minUpRatio, downOutDelayMs: opts.downOutDelay },
        electionTtlSeconds: opts.electionTtl,
        scorePollMs: opts.scorePoll,
        retrain: { intervalMs: opts.retrainInterval },
        allowAnyServerAddress: opts.allowAnyServerAddress === true,
        predictive: {
          enabled: opts.predictive, threshold: opts.drainThreshold, warning: opts.warningThreshold,
          sustainMs: opts.drainSustain, recoverMs: opts.recoverAfter, maxDrainingFraction: opts.maxDraining / 100,
        },
        // A deposed leader must stop acting at once; exit so a supervisor restarts it as a standby.
        onLostLeadership: () => process.exit(3),
      });
      process.stdout.write(`orchestrator listening on ${o.url}${o.isLeader ? '' : ' (standby)'}\n`);
      stopOn(['SIGINT', 'SIGTERM'], () => o.stop());
    }));

  const server = program
    .command('server')
    .description('run a storage server: segments, data protocol, replication, admin API')
    .option('-d, --dir <dir>', 'data directory', './presage-server')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('-l, --listen <host:port>', 'data protocol address', '127.0.0.1:7500')
    .option('-a, --admin <host:port>', 'admin HTTP address (/healthz)', '127.0.0.1:7600')
    .option('--zone <zone>', 'failure domain: zone label')
    .option('--rack <rack>', 'failure domain: rack label')
    .option('--capacity <size>', 'bytes offered for segments (default: the filesystem size)', sizeArg)
    .option('--copy-bandwidth <size>', 'cap on re-replication/migration copy bandwidth into this server, per second (0 = none)', sizeArg, 0)
    .option('--max-copies <n>', 'concurrent copies into this server', intArg('max copies', 1, 64), 2)
    .option('--scrub-interval <ms>', 'time between background scrub passes (0 = off)', intArg('scrub interval', 0, 2 ** 31 - 1), 3_600_000)
    .option('--gc-grace <ms>', 'keep a copy no longer assigned here this long before deleting it', intArg('gc grace', 0, 2 ** 31 - 1), 30000)
    .option('--allow-faults', 'enable the fault-injection API (/v1/faults, presage fault): for tests and demos only')
    .option('--import-dir <dir>', 'the folder whose files POST /v1/metrics/import {"path": …} may read (a path relative to it, or absolute inside it; nothing that leads out of it, symlinks included); without it only history sent in the request body is imported')
    .option('--join-new-cluster', "register into the orchestrator's cluster even though <dir>/cluster-id names another (its copies that cluster does not know become garbage); without it such a server refuses to start")
    .option('--telemetry-interval <ms>', 'telemetry sampling interval', intArg('telemetry interval', 100, 3_600_000), 5000)
    .option('--telemetry-retention <days>', 'days of per-minute telemetry kept in <dir>/telemetry.sqlite', intArg('telemetry retention', 1, 3650), 35)
    .option('--score-interval <ms>', 'time between Failure Score computations', intArg('score interval', 100, 3_600_000), 10000)
    .option('--score-time-scale <n>', 'demos/tests only: score on a clock compressed n times (one model minute = 60 s / n)', intArg('score time scale', 1, 3600), 1)
    .option('--model <file>', 'start from this model bundle (default: <dir>/models/current, else the bundled default)')
    .option('--peer-group <name>', 'fail-slow: compare this server with the other servers of this group (default: the whole fleet); servers sharing a host, one per drive, name their host')
    .option('--smart <device>', 'SMART device to read (e.g. /dev/sda), "auto" (the data directory\'s disk) or "off"', 'auto')
    .option('--in-flight-budget <size>', 'data port: bytes all requests being handled may hold; over it, clients wait (backpressure)', sizeArg, DEFAULT_IN_FLIGHT_BUDGET)
    .option('--partial-frame-budget <size>', 'data port: bytes all incomplete frames may hold; over it, the biggest holder is disconnected', sizeArg, DEFAULT_PARTIAL_FRAME_BUDGET)
    .option('--max-connections-per-peer <n>', 'data port: connections one remote address may hold', intArg('max connections per peer', 1, 65536), 512)
    .option('--handshake-timeout <ms>', 'data port: close a connection that has not authenticated within this long', intArg('handshake timeout', 100, 600_000), 5000)
    .option('--idle-timeout <ms>', 'data port: close a connection idle this long (0 = never)', intArg('idle timeout', 0, 2 ** 31 - 1), 600_000)
    .option('--orchestrator-grace <ms>', 'after the lease lapses (orchestrator silent), keep serving segments whose other replicas confirm each request\'s epoch for this long (0 = stop at once)', intArg('orchestrator grace', 0, 86_400_000), DEFAULT_ORCHESTRATOR_GRACE_MS)
    .option('--nbd-listen <host:port>', 'also export every volume over NBD from this process (segments held here are served without a network hop; others go to their servers as with `presage nbd`)');
  addNbdTlsOptions(server, 'nbd-')
    .action(action(async (opts: { importDir?: string; nbdTls?: NbdTlsMode; nbdTlsPskFile?: string; nbdTlsCert?: string; nbdTlsKey?: string; nbdTlsCa?: string; nbdListen?: string; dir: string; orchestrator?: string; meta?: string; listen: string; admin: string; zone?: string; rack?: string; capacity?: number; copyBandwidth: number; maxCopies: number; scrubInterval: number; gcGrace: number; allowFaults?: boolean; telemetryInterval: number; telemetryRetention: number; smart: string; scoreInterval: number; scoreTimeScale: number; model?: string; peerGroup?: string; inFlightBudget: number; partialFrameBudget: number; maxConnectionsPerPeer: number; handshakeTimeout: number; idleTimeout: number; orchestratorGrace: number; joinNewCluster?: boolean }) => {
      const data = parseHostPort(opts.listen, '--listen');
      const admin = parseHostPort(opts.admin, '--admin');
      const nbdTarget = opts.nbdListen === undefined ? undefined : parseHostPort(opts.nbdListen, '--nbd-listen');
      // Its own key by default: <dir>/server.key (presage auth create NAME --role server --out DIR/server.key),
      // before PRESAGE_KEY_FILE (often an admin's, exported in the shell that starts servers).
      const ownKey = path.join(opts.dir, 'server.key');
      if (!keyFileGiven && fs.existsSync(ownKey)) setProcessCredential(loadKeyFile(ownKey));
      const log = createLogger('server');
      const s = await StorageServer.start({
        dir: opts.dir,
        ...connectTarget(opts),
        host: data.host,
        port: data.port,
        adminHost: admin.host,
        adminPort: admin.port,
        zone: opts.zone,
        rack: opts.rack,
        capacityBytes: opts.capacity,
        copyBandwidth: opts.copyBandwidth,
        maxConcurrentCopies: opts.maxCopies,
        scrubIntervalMs: opts.scrubInterval,
        gcGraceMs: opts.gcGrace,
        allowFaults: opts.allowFaults === true,
        importDir: opts.importDir,
        telemetryIntervalMs: opts.telemetryInterval,
        telemetryRetentionDays: opts.telemetryRetention,
        smartDevice: opts.smart === 'off' ? false : opts.smart,
        scoreIntervalMs: opts.scoreInterval,
        scoreTimeScale: opts.scoreTimeScale,
        modelPath: opts.model,
        peerGroup: opts.peerGroup,
        joinNewCluster: opts.joinNewCluster === true,
        orchestratorGraceMs: opts.orchestratorGrace,
        dataLimits: {
          inFlightBudgetBytes: opts.inFlightBudget,
          partialFrameBudgetBytes: opts.partialFrameBudget,
          maxConnectionsPerPeer: opts.maxConnectionsPerPeer,
          handshakeTimeoutMs: opts.handshakeTimeout,
          idleTimeoutMs: opts.idleTimeout,
        },
        logger: log,
      });
      process.stdout.write(`server ${s.id} serving data on ${s.dataAddr}, admin on http://${s.adminAddr}\n`);
      let nbd: { client: PresageClient; exports: NbdExports } | undefined;
      if (nbdTarget) {
        const nlog = createLogger('nbd');
        const client = await PresageClient.connect({ ...connectTarget(opts), local: s.localEndpoint(), logger: nlog });
        try {
          const tls = nbdTlsFrom({ tls: opts.nbdTls, tlsPskFile: opts.nbdTlsPskFile, tlsCert: opts.nbdTlsCert, tlsKey: opts.nbdTlsKey, tlsCa: opts.nbdTlsCa }, client);
          nbd = { client, exports: await startNbdExports(client, [nbdTarget], nlog, DEFAULT_NBD_MAX_IN_FLIGHT, tls) };
        } catch (err) {
          await client.close();
          await s.stop();
          throw err;
        }
        process.stdout.write(`nbd export listening on ${nbd.exports.uris.join(' ')}\n`);
      }
      stopOn(['SIGINT', 'SIGTERM'], async () => {
        if (nbd) {
          await nbd.exports.close();
          await nbd.client.close();
        }
        await s.stop();
      });
    }));
}
