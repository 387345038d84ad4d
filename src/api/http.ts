// Small JSON-over-HTTP helper with typed errors and timeouts (Node 20's fetch). Every request
// carries the process's credential (auth/credentials.ts) as a bearer token.

import { Agent, fetch as undiciFetch } from 'undici';
import { authHeader } from '../auth/credentials.ts';
import { clientCa } from '../common/cluster-tls.ts';

let tlsAgent: { ca: string; agent: Agent } | undefined;

/**
 * Node's fetch, or for https:// with the cluster's CA, undici's with an agent that trusts that
 * CA (Node's own fetch takes no CA but from NODE_EXTRA_CA_CERTS at start).
 */
function fetchFor(base: string): typeof fetch {
  const ca = clientCa();
  if (!ca || !base.startsWith('https:')) return fetch;
  if (tlsAgent?.ca !== ca) tlsAgent = { ca, agent: new Agent({ connect: { ca } }) };
  const agent = tlsAgent.agent;
  return ((url: string, init: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher: agent } as Parameters<typeof undiciFetch>[1])) as unknown as typeof fetch;
}

export class ApiError extends Error {
  /** `code`: the server's stable error code when it sent one (e.g. ERR_PRESAGE_FORBIDDEN). */
  constructor(message: string, readonly status: number, readonly code?: string) {
    super(message);
    this.name = 'ApiError';
  }
}

export async function httpJson<T>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 10000,
  cancel?: AbortSignal,
): Promise<T> {
  let res: Response;
  try {
    res = await fetchFor(base)(base + path, {
      method,
      headers: body === undefined ? authHeader() : { 'content-type': 'application/json', ...authHeader() },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: cancel ? AbortSignal.any([AbortSignal.timeout(timeoutMs), cancel]) : AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new ApiError(`cannot reach ${base} (${why})`, 0);
  }
  const text = await res.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    throw new ApiError(`${method} ${path}: HTTP ${res.status} with a body that is not JSON`, res.status);
  }
  if (!res.ok) {
    const d = data as { error?: string; code?: string } | undefined;
    throw new ApiError(d?.error ?? `HTTP ${res.status}`, res.status, d?.code);
  }
  return data as T;
}
