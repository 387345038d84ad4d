// Addresses as text: HOST:PORT for what this process listens on and dials, and the strict form
// that addresses a peer announces must take (a storage server's dataAddr and adminAddr, which
// the orchestrator and every client later connect to or fetch from). An announced address is
// input from the network: anything looser than exactly HOST:PORT (a scheme, a path, a user, a
// number the URL parser reads as an IP) would let the announcer steer those fetches at any URL,
// and a host other than the announcer's own machine would let it point them at any machine
// (SSRF). So announced addresses are checked once, at registration, with a stable error code.

import dns from 'node:dns/promises';
import net from 'node:net';
import os from 'node:os';
import { httpScheme } from './cluster-tls.ts';

/** Parses "host:port" (IPv6 as "[::1]:port") with a clear error. */
export function parseHostPort(text: string, what = 'address'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) throw new Error(`invalid ${what} "${text}" (expected HOST:PORT)`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`invalid ${what} "${text}": port out of range`);
  return { host: m[1] ?? m[2], port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Normalises an orchestrator URL: accepts "host:port" (https:// when the cluster speaks TLS) or a URL. */
export function normaliseUrl(text: string): string {
  const t = text.trim().replace(/\/+$/, '');
  if (/^https?:\/\//.test(t)) return t;
  parseHostPort(t, 'orchestrator address');
  return `${httpScheme()}://${t}`;
}

/**
 * A peer-announced address refused. `status`: 400 for one that is malformed or names no usable
 * machine, 403 for one that is not the announcer's own, 503 when a host name could not be
 * resolved just now (worth a retry).
 */
export class AddressError extends Error {
  readonly code = 'ERR_PRESAGE_BAD_ADDRESS';
  constructor(message: string, readonly status: 400 | 403 | 503 = 400) {
    super(message);
    this.name = 'AddressError';
  }
}

export interface ServerAddress {
  host: string;
  port: number;
  kind: 'ipv4' | 'ipv6' | 'name';
  /** The canonical IP (canonicalIp) of an IP literal. */
  ip?: string;
}

const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * The canonical text of an IP address, so that the forms one address takes compare equal: IPv6
 * lower-case and compressed (the URL parser's form), an IPv4-mapped IPv6 address (how a
 * dual-stack socket reports an IPv4 peer: ::ffff:127.0.0.1) as plain IPv4; brackets and a zone
 * (%eth0) dropped. Undefined for text that is not an IP address.
 */
export function canonicalIp(text: string): string | undefined {
  let t = text.trim();
  if (t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
  t = t.replace(/%.*$/, '');
  if (net.isIPv4(t)) return t;
  if (!net.isIPv6(t)) return undefined;
  const h = new URL(`http://[${t}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h);
  if (!mapped) return h;
  const hi = parseInt(mapped[1]!, 16);
  const lo = parseInt(mapped[2]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Why no server can be reached at this (canonical) IP, or undefined when one can. */
function unusableIp(ip: string): string | undefined {
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    if (a === 0) return 'a wildcard address (0.0.0.0/8 names no particular machine: listen on, and announce, a specific address)';
    if (a === 169 && b === 254) return 'link-local (169.254.0.0/16, where cloud metadata services answer)';
    if (a >= 224) return 'multicast, broadcast or reserved (224.0.0.0 and above)';
    return undefined;
  }
  if (ip === '::') return 'a wildcard address (:: names no particular machine: listen on, and announce, a specific address)';
  const first = ip.startsWith('::') ? 0 : parseInt(ip.split(':')[0]!, 16);
  if ((first & 0xffc0) === 0xfe80) return 'IPv6 link-local (fe80::/10)';
  if ((first & 0xff00) === 0xff00) return 'IPv6 multicast (ff00::/8)';
  return undefined;
}

/**
 * Parses an address a peer announces, strictly: exactly HOST:PORT, where HOST is an IPv4
 * address, an IPv6 address in brackets (no zone) or a host name (letters, digits, '-' in dot-
 * separated labels, the last not a number: the URL parser would read "2130706433" or "0x7f.1"
 * as an IP), and PORT is 1-65535 without leading zeros. Nothing else: no scheme, path, query,
 * user or whitespace, so that `${scheme}://${address}/path` is always the URL it looks like.
 * Wildcard, link-local and multicast IPs are refused too. Throws AddressError (400).
 */
export function parseServerAddress(text: unknown, what = 'address'): ServerAddress {
  if (typeof text !== 'string') throw new AddressError(`${what} must be a string HOST:PORT, got ${text === undefined ? 'nothing' : typeof text}`);
  const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
  const m = text.length <= 300 ? /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d+)$/.exec(text) : null;
  if (!m) {
    throw new AddressError(`${what} ${shown} is not HOST:PORT (an IP address or host name, IPv6 in brackets, and a port; no scheme, path, user or spaces)`);
  }
  const port = Number(m[3]);
  if (!/^[1-9]\d{0,4}$/.test(m[3]!) || port > 65535) throw new AddressError(`${what} ${shown}: the port must be a number from 1 to 65535`);
  let host: string;
  let kind: ServerAddress['kind'];
  let ip: string | undefined;
  if (m[1] !== undefined) {
    if (!net.isIPv6(m[1])) throw new AddressError(`${what} ${shown}: ${JSON.stringify(m[1])} in brackets is not an IPv6 address`);
    host = m[1];
    kind = 'ipv6';
    ip = canonicalIp(host);
  } else {
    host = m[2]!;
    if (net.isIPv4(host)) {
      kind = 'ipv4';
      ip = host;
    } else {
      const labels = host.split('.');
      const last = labels[labels.length - 1]!;
      if (/^[0-9.]+$/.test(host) || /^\d+$/.test(last) || /^0x[0-9a-f]*$/i.test(last)) {
        throw new AddressError(`${what} ${shown}: ${JSON.stringify(host)} is not a valid IPv4 address (four decimal numbers 0-255) nor a host name`);
      }
      if (host.length > 253 || !labels.every((l) => HOST_LABEL.test(l))) {
        throw new AddressError(`${what} ${shown}: ${JSON.stringify(host)} is not a valid host name (dot-separated labels of letters, digits and '-', at most 63 characters each)`);
      }
      kind = 'name';
    }
  }
  if (ip !== undefined) {
    const why = unusableIp(ip);
    if (why) throw new AddressError(`${what} ${shown} is ${why}; refused`);
  }
  return { host, port, kind, ...(ip !== undefined ? { ip } : {}) };
}

/** Whether a (canonical) IP is this machine's: loopback, or an address of one of its interfaces. */
export function isLocalIp(ip: string): boolean {
  if (net.isIPv4(ip) && ip.startsWith('127.')) return true;
  if (ip === '::1') return true;
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (canonicalIp(a.address) === ip) return true;
  }
  return false;
}

export interface AddressCheckOptions {
  /**
   * The IP the announcement came from (the registration request's socket). Given, the address
   * must name that machine: its IP, a host name one of whose addresses is that IP, or, when the
   * announcer is on this very machine, any of this machine's addresses. Undefined: no binding
   * (the orchestrator's --allow-any-server-address, for servers behind NAT).
   */
  source?: string;
  /** Resolves a host name to its addresses (default dns.lookup, all of them). */
  lookup?: (host: string) => Promise<string[]>;
}

const defaultLookup = async (host: string) => (await dns.lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/**
 * parseServerAddress, then: a host name must resolve, to no unusable IP, and with `source` the
 * address must be the announcer's own machine (AddressError 403 otherwise). A host name stays
 * its owner's to repoint later; the check binds what it resolves to now, which is what a
 * registration can know.
 */
export async function checkServerAddress(text: unknown, what: string, opts: AddressCheckOptions = {}): Promise<ServerAddress> {
  const a = parseServerAddress(text, what);
  const shown = JSON.stringify(text);
  let ips: string[];
  if (a.ip !== undefined) ips = [a.ip];
  else {
    try {
      ips = [...new Set((await (opts.lookup ?? defaultLookup)(a.host)).map((x) => canonicalIp(x)).filter((x): x is string => x !== undefined))];
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTFOUND' || code === 'ENODATA') throw new AddressError(`${what} ${shown}: host name ${a.host} does not resolve`);
      throw new AddressError(`${what} ${shown}: could not resolve ${a.host} just now (${code ?? (err as Error).message}); retry`, 503);
    }
    if (ips.length === 0) throw new AddressError(`${what} ${shown}: host name ${a.host} resolves to no address`);
    for (const ip of ips) {
      const why = unusableIp(ip);
      if (why) throw new AddressError(`${what} ${shown}: ${a.host} resolves to ${ip}, ${why}; refused`);
    }
  }
  if (opts.source === undefined) return a;
  const src = canonicalIp(opts.source);
  if (src === undefined) throw new AddressError(`${what} ${shown}: cannot tell which address the registration came from, so cannot check that it is the sender's own`, 403);
  if (ips.includes(src)) return a;
  // Sender and address both on the orchestrator's machine (e.g. sent over loopback, announcing the LAN address).
  if (isLocalIp(src) && ips.some(isLocalIp)) return a;
  throw new AddressError(
    `${what} ${shown} ${a.kind === 'name' ? `resolves to ${ips.join(', ')}` : 'is not'} the address this registration came from (${src}): ` +
    'a server may announce only its own machine\'s addresses (behind NAT, start the orchestrator with --allow-any-server-address)',
    403,
  );
}
