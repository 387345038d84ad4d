// Small JSON-over-HTTP helper with typed errors and timeouts (Node 20's fetch).

export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
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
    res = await fetch(base + path, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
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
    const msg = (data as { error?: string } | undefined)?.error ?? `HTTP ${res.status}`;
    throw new ApiError(msg, res.status);
  }
  return data as T;
}
