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
