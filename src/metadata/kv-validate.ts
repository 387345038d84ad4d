// Argument checks shared by the KvStore backends: the same bad input gets the same clear error
// whichever store is behind the interface.

import type { KvTxn } from './kv.ts';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function checkString(what: string, s: unknown, allowEmpty: boolean): asserts s is string {
  if (typeof s !== 'string') throw new TypeError(`${what} must be a string, got ${typeof s}`);
  if (!allowEmpty && s.length === 0) throw new TypeError(`${what} must not be empty`);
  // Both stores keep UTF-8 bytes: a lone surrogate would silently come back as U+FFFD.
  if (LONE_SURROGATE.test(s)) throw new TypeError(`${what} contains a lone UTF-16 surrogate`);
}

export function checkTxn(txn: KvTxn): void {
  if (txn === null || typeof txn !== 'object') throw new TypeError('txn must be an object');
  for (const field of ['compare', 'put', 'delete'] as const) {
    if (txn[field] !== undefined && !Array.isArray(txn[field])) throw new TypeError(`txn.${field} must be an array`);
  }
  for (const c of txn.compare ?? []) {
    if (c === null || typeof c !== 'object') throw new TypeError('a compare must be an object');
    checkString('compare key', c.key, false);
    if (!Number.isSafeInteger(c.modRevision) || c.modRevision < 0) {
      throw new TypeError(`compare modRevision must be a non-negative integer, got ${String(c.modRevision)}`);
    }
  }
  // Like etcd, one key may be changed only once per transaction: otherwise the outcome would
  // depend on an order the interface does not promise.
  const seen = new Set<string>();
  for (const p of txn.put ?? []) {
    if (p === null || typeof p !== 'object') throw new TypeError('a put must be an object');
    checkString('put key', p.key, false);
    checkString(`value of ${p.key}`, p.value, true);
    if (seen.has(p.key)) throw new TypeError(`key ${JSON.stringify(p.key)} is changed twice in one txn`);
    seen.add(p.key);
  }
  for (const k of txn.delete ?? []) {
    checkString('delete key', k, false);
    if (seen.has(k)) throw new TypeError(`key ${JSON.stringify(k)} is changed twice in one txn`);
    seen.add(k);
  }
}

export function checkAfter(afterRevision: unknown): asserts afterRevision is number {
  if (!Number.isSafeInteger(afterRevision) || (afterRevision as number) < 0) {
    throw new TypeError(`afterRevision must be a non-negative integer, got ${String(afterRevision)}`);
  }
}
