import type { Command } from 'commander';
import { formatBytes } from '../common/size.ts';
import { action, isTty, orchestratorOption, printJson, metaOption, apiFor } from './common.ts';
import { colour, table } from './table.ts';

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('show servers, volumes and segments per server')
    .addOption(orchestratorOption())
    .addOption(metaOption())
    .option('--json', 'print JSON')
    .action(action(async (opts: { orchestrator: string; json?: boolean }) => {
      const st = await apiFor(opts).status();
      if (opts.json) return printJson(st);
      const c = colour(isTty());
      const out: string[] = [];
      out.push(c.bold(`Servers (${st.servers.length})`));
      out.push(table(
        ['ID', 'STATE', 'DATA', 'ZONE/RACK', 'SEGMENTS', 'PRIMARIES', 'ASSIGNED', 'HEARTBEAT'],
        st.servers.map((s) => [
          s.id,
          s.state === 'up' ? c.green('up') : c.red(s.state),
          s.dataAddr,
          [s.zone, s.rack].filter(Boolean).join('/') || '-',
          s.segments,
          s.primaries,
          formatBytes(s.assignedBytes),
          s.lastHeartbeatAgoMs === undefined ? '-' : `${(s.lastHeartbeatAgoMs / 1000).toFixed(1)}s ago`,
        ]),
      ));
      for (const s of st.servers.filter((x) => (x.quarantined ?? 0) > 0)) {
        out.push(c.yellow(`${s.id} holds ${s.quarantined} cop${s.quarantined === 1 ? 'y' : 'ies'} in quarantine that the metadata does not know (presage quarantine list)`));
      }
      out.push('');
      out.push(c.bold(`Volumes (${st.volumes.length})`));
      out.push(table(
        ['NAME', 'SIZE', 'SEGMENT', 'SEGMENTS', 'REPLICAS', 'CRITICALITY', 'DEGRADED'],
        st.volumes.map((v) => [v.name, formatBytes(v.size), formatBytes(v.segmentSize), v.segmentCount, v.replicas, v.criticality, v.degradedSegments ? c.yellow(String(v.degradedSegments)) : '0']),
      ));
      out.push('');
      out.push(`Segments: ${st.segments.total} total, ${st.segments.degraded ? c.yellow(`${st.segments.degraded} degraded`) : '0 degraded'}; metadata revision ${st.revision}`);
      if (st.flags?.noout) out.push(c.yellow(`noout is set (by ${st.flags.setBy ?? '?'} at ${st.flags.setAt ?? '?'}): servers marked down are not re-replicated (presage cluster unset noout)`));
      if (st.waitingOut) out.push(c.yellow(`${st.waitingOut} segment(s) lost a replica to a mark-down and wait for the down → out delay${st.flags?.noout ? ' (held by noout)' : ''} before re-replication`));
      if (st.operators.length) {
        out.push('');
        out.push(c.bold(`Data movement (${st.operators.length})`));
        out.push(table(
          ['SEGMENT', 'KIND', 'STATE', 'FROM', 'TO', 'PROGRESS', 'RATE', 'ETA', 'REASON'],
          st.operators.map((o) => {
            const p = o.progress;
            const pct = p && p.totalBytes ? `${Math.floor((100 * p.bytesCopied) / p.totalBytes)}%` : '-';
            return [o.segmentId, o.kind, o.state, o.remove ?? '-', o.target, pct, p ? `${formatBytes(p.rateBytesPerSec)}/s` : '-', p?.etaSeconds !== undefined ? `${p.etaSeconds.toFixed(0)}s` : '-', o.reason];
          }),
        ));
      }
      process.stdout.write(out.join('\n') + '\n');
    }));
}
