// Which data-protocol requests an identity may send. A client touches only the volumes it is
// granted (read-only grants: READ and STAT); FORWARDED and COPY writes, copy reads, CHECKSUMS
// and PAUSE/RESUME are server business: a client forging a FORWARDED write could make replicas
// disagree, and a PAUSE stalls everyone's writes. Checked on every request of a client
// connection, so it stays a few comparisons and one slice; servers and admins skip it at once.

import { granted, type Identity } from '../auth/policy.ts';
import { Flag, Op } from './messages.ts';

/** The volume a segment id belongs to (`<volume>/<index>`). */
function volumeOf(segmentId: string): string {
  const i = segmentId.lastIndexOf('/');
  return i < 0 ? segmentId : segmentId.slice(0, i);
}

const CLIENT_READ_OPS = new Set<Op>([Op.READ, Op.STAT]);
const CLIENT_WRITE_OPS = new Set<Op>([Op.WRITE, Op.TRIM, Op.FLUSH]);

/** A data-protocol request by `id`: undefined when allowed, else why not. */
export function dataRequestRefusal(id: Identity, op: Op, flags: number, segmentId: string): string | undefined {
  if (id.role === 'admin' || id.role === 'server') return undefined;
  if (id.role !== 'client') return `${id.name} (role ${id.role}) has no data access`;
  if ((flags & ~Flag.FUA) !== 0) return `only servers send FORWARDED, COPY or RECORDED requests`;
  const reads = CLIENT_READ_OPS.has(op);
  if (!reads && !CLIENT_WRITE_OPS.has(op)) return `only servers send this request`;
  const volume = volumeOf(segmentId);
  if (!granted(id, volume)) return `${id.name} is not granted volume ${volume}`;
  if (!reads && id.readOnly) return `${id.name} has read-only access to volume ${volume}`;
  return undefined;
}

