// How this process authenticates to etcd and protects the connection: client TLS (the CA that
// signed etcd's certificate, and optionally a client certificate and key for etcd's
// --client-cert-auth) and an etcd user with its password (etcd RBAC). One setting per process,
// like the cluster TLS and the credential: every EtcdKvStore.connect of the process uses it.
//
// Invariants: the password is read from a file (never a command-line argument, which `ps` shows,
// nor an environment value), is never logged or put in an error message; `etcds://` means TLS
// and is refused without a CA to verify etcd against (no silent "trust anything"); a certificate without its key (or the reverse) is
// refused; plain `etcd://` with a password is allowed (etcd accepts it) but the password then
// crosses the network in clear, which the operator is told once.
//
// Set by the CLI's --etcd-ca/--etcd-cert/--etcd-key/--etcd-user/--etcd-password-file, or from
// PRESAGE_ETCD_CA/_CERT/_KEY/_USER/_PASSWORD_FILE at first use.

import fs from 'node:fs';
import {
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  type IOptions,
} from 'etcd3';

export interface EtcdSecurityFiles {
  ca?: string;
  cert?: string;
  key?: string;
  user?: string;
  passwordFile?: string;
}

export interface EtcdSecurity {
  /** PEM of the CA etcd's server certificate is verified against. */
  ca?: Buffer;
  /** PEM client certificate (chain) and key, for etcd with --client-cert-auth. */
  cert?: Buffer;
  key?: Buffer;
  /** etcd user name and password (etcd RBAC, `auth enable`). */
  user?: string;
  password?: string;
}

function read(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new Error(`cannot read the etcd ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Reads the files; undefined when nothing is configured. Errors name the file, never its content. */
export function loadEtcdSecurity(f: EtcdSecurityFiles): EtcdSecurity | undefined {
  if (!f.ca && !f.cert && !f.key && !f.user && !f.passwordFile) return undefined;
  if (!!f.cert !== !!f.key) throw new Error('an etcd client certificate needs its key (--etcd-cert and --etcd-key)');
  if (!!f.user !== !!f.passwordFile) throw new Error('an etcd user needs a password file (--etcd-user and --etcd-password-file)');
  let password: string | undefined;
  if (f.passwordFile) {
    // One line; a trailing newline (echo pw > file) is not part of the password.
    password = read(f.passwordFile, 'password file').toString('utf8').replace(/\r?\n$/, '');
    if (!password) throw new Error(`the etcd password file ${f.passwordFile} is empty`);
  }
  return {
    ca: f.ca ? read(f.ca, 'CA') : undefined,
    cert: f.cert ? read(f.cert, 'client certificate') : undefined,
    key: f.key ? read(f.key, 'client key') : undefined,
    user: f.user,
    password,
  };
}

let current: EtcdSecurity | undefined;
let fromEnvTried = false;

export function setProcessEtcdSecurity(s: EtcdSecurity | undefined): void {
  current = s;
  fromEnvTried = true;
}

export function processEtcdSecurity(): EtcdSecurity | undefined {
  if (!fromEnvTried) {
    fromEnvTried = true;
    const e = process.env;
    current = loadEtcdSecurity({
      ca: e.PRESAGE_ETCD_CA || undefined,
      cert: e.PRESAGE_ETCD_CERT || undefined,
      key: e.PRESAGE_ETCD_KEY || undefined,
      user: e.PRESAGE_ETCD_USER || undefined,
      passwordFile: e.PRESAGE_ETCD_PASSWORD_FILE || undefined,
    });
  }
  return current;
}

let warnedCleartext = false;

/**
 * The etcd3 client options for a connection over `tls` (etcds://) with `sec`. Without TLS, TLS
 * material is refused (it would be silently unused); with TLS, a CA is required.
 */
export function etcdClientOptions(tls: boolean, sec: EtcdSecurity | undefined, warn: (m: string) => void = (m) => process.stderr.write(`presage: ${m}\n`)): Partial<IOptions> {
  const o: Partial<IOptions> = {};
  if (tls) {
    if (!sec?.ca) throw new Error('etcds:// needs the CA that signed etcd\'s certificate (--etcd-ca FILE or PRESAGE_ETCD_CA)');
    o.credentials = { rootCertificate: sec.ca, ...(sec.cert && sec.key ? { certChain: sec.cert, privateKey: sec.key } : {}) };
  } else if (sec?.ca || sec?.cert) {
    throw new Error('--etcd-ca/--etcd-cert are for TLS: use an etcds:// URL');
  }
  if (sec?.user && sec.password !== undefined) {
    if (!tls && !warnedCleartext) {
      warnedCleartext = true;
      warn('the etcd password crosses the network in clear over etcd://; use etcds:// beyond loopback');
    }
    o.auth = { username: sec.user, password: sec.password };
  }
  return o;
}

/** An etcd request refused for want of access: the user, the TLS or the reachability, said plainly. */
export class EtcdAccessError extends Error {
  readonly code = 'ERR_ETCD_ACCESS';
  constructor(message: string, override readonly cause: unknown) {
    super(message);
    this.name = 'EtcdAccessError';
  }
}

/**
 * What an etcd3 error means for the operator, naming the URL and user (never the password);
 * errors that are not about access pass through unchanged.
 */
export function explainEtcdError(err: unknown, url: string, user: string | undefined): unknown {
  if (!(err instanceof Error) || err instanceof EtcdAccessError) return err;
  const who = user ? `the user "${user}"` : 'a client without an etcd user (--etcd-user)';
  if (err instanceof EtcdAuthenticationFailedError) {
    return new EtcdAccessError(`etcd refused ${who}: authentication failed (check --etcd-user and --etcd-password-file)`, err);
  }
  if (err instanceof EtcdPermissionDeniedError || err instanceof GRPCUnauthenticatedError || err instanceof EtcdInvalidAuthTokenError) {
    return new EtcdAccessError(`etcd at ${url} denied ${who} access to Presage's keys (etcd RBAC: grant its role readwrite on the /presage prefix)`, err);
  }
  if (err instanceof GRPCUnavailableError) {
    const tls = /TLS|SSL|certificate|handshake/i.test(err.message);
    return new EtcdAccessError(`cannot reach etcd at ${url}: ${tls ? 'the TLS handshake failed (check --etcd-ca, --etcd-cert, --etcd-key)' : 'no connection (is it running, and does it speak TLS? use etcds:// for TLS)'}`, err);
  }
  return err;
}
