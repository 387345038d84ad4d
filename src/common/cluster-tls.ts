// TLS for the cluster's own traffic: the data protocol between clients and servers and among
// servers, and the HTTP APIs (orchestrator REST and dashboard, server admin). One setting per
// process, like its credential: with a certificate and key, the process's listeners speak TLS;
// with a CA, its outgoing connections speak TLS and verify the peer against that CA (and the
// peer's address against the certificate's names). A cluster is all TLS or none: every process
// gets the same CA, and each listener its own certificate.
//
// Set from PRESAGE_TLS_CA / PRESAGE_TLS_CERT / PRESAGE_TLS_KEY (PEM files) at first use, or by
// the CLI's --tls-ca/--tls-cert/--tls-key. Off when none is given.

import fs from 'node:fs';

export interface ClusterTls {
  /** PEM of the CA that signed the cluster's certificates: outgoing connections verify against it. */
  ca?: string;
  /** PEM certificate (chain) and key of this process's listeners. */
  cert?: string;
  key?: string;
}

let current: ClusterTls | undefined;
let fromEnvTried = false;

function read(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Reads the PEM files (any may be omitted); a key without a certificate (or the reverse) is refused. */
export function loadClusterTls(files: { ca?: string; cert?: string; key?: string }): ClusterTls | undefined {
  if (!files.ca && !files.cert && !files.key) return undefined;
  if (!!files.cert !== !!files.key) throw new Error('TLS needs both a certificate and its key (--tls-cert and --tls-key)');
  return {
    ca: files.ca ? read(files.ca, 'CA') : undefined,
    cert: files.cert ? read(files.cert, 'certificate') : undefined,
    key: files.key ? read(files.key, 'key') : undefined,
  };
}

export function setProcessTls(t: ClusterTls | undefined): void {
  current = t;
  fromEnvTried = true;
}

export function processTls(): ClusterTls | undefined {
  if (!fromEnvTried) {
    fromEnvTried = true;
    const e = process.env;
    current = loadClusterTls({ ca: e.PRESAGE_TLS_CA || undefined, cert: e.PRESAGE_TLS_CERT || undefined, key: e.PRESAGE_TLS_KEY || undefined });
  }
  return current;
}

/** The listener options (certificate and key), when this process serves TLS. */
export function serverTls(): { cert: string; key: string } | undefined {
  const t = processTls();
  return t?.cert && t.key ? { cert: t.cert, key: t.key } : undefined;
}

/** The CA outgoing connections verify against, when they speak TLS. */
export function clientCa(): string | undefined {
  return processTls()?.ca;
}

/** `https://` when this process talks TLS, else `http://`. */
export function httpScheme(): 'https' | 'http' {
  return clientCa() ? 'https' : 'http';
}

/** The base URL of a server's admin API from its registered host:port. */
export function adminBaseUrl(adminAddr: string): string {
  return `${httpScheme()}://${adminAddr}`;
}
