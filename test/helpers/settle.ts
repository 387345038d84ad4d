// Waiting for a cluster to settle, and checking that every replica of every segment agrees.

import type { OrchestratorClient } from '../../src/api/orchestrator-client.ts';
import type { SegmentView } from '../../src/api/types.ts';
import { decodeChecksums } from '../../src/protocol/codec.ts';
import { ConnectionPool } from '../../src/protocol/connection.ts';
import { Op, Status } from '../../src/protocol/messages.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60000, everyMs = 200): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err; // e.g. the orchestrator restarting
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${lastErr ? ` (last error: ${(lastErr as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

/** Every segment of the volume has `want` replicas on up servers, none joining, nothing moving. */
export async function settled(api: OrchestratorClient, volume: string, want: number): Promise<SegmentView[] | false> {
  const st = await api.status();
  const up = new Set(st.servers.filter((s) => s.state === 'up').map((s) => s.id));
  const segs = await api.segments(volume);
  const moving = st.operators.some((o) => o.segmentId.startsWith(`${volume}/`));
  const ok = !moving && segs.every((s) => s.replicas.length === want && s.replicas.every((r) => up.has(r)) && !s.joining?.length && s.state === 'ok');
  return ok ? segs : false;
}

/**
 * Asks every replica of each segment for its per-block checksums (at the current epoch) and
 * returns the segments whose replicas disagree or report corrupt blocks.
 */
export async function replicaDisagreements(api: OrchestratorClient, segs: SegmentView[], segmentSize: number): Promise<string[]> {
  const servers = new Map((await api.status()).servers.map((s) => [s.id, s.dataAddr]));
  const pool = new ConnectionPool();
  const bad: string[] = [];
  try {
    for (const s of segs) {
      const lists = await Promise.all(s.replicas.map(async (id) => {
        const res = await pool.get(servers.get(id)!).send({ op: Op.CHECKSUMS, flags: 0, epoch: s.epoch, segmentId: s.segmentId, offset: 0, length: segmentSize, payload: Buffer.alloc(0) });
        if (res.status !== Status.OK) return `status ${res.status}: ${res.payload.toString()}`;
        const d = decodeChecksums(res.payload);
        return d.corrupt.length ? `corrupt ${d.corrupt.join(',')}` : Buffer.from(d.sums.buffer).toString('hex');
      }));
      if (new Set(lists).size !== 1 || lists[0].startsWith('status') || lists[0].startsWith('corrupt')) bad.push(`${s.segmentId}: ${lists.map((l) => l.slice(0, 40)).join(' | ')}`);
    }
  } finally {
    pool.closeAll();
  }
  return bad;
}
