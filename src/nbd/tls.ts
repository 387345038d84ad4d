// TLS for NBD exports, as qemu-nbd and nbdkit offer it: the client asks NBD_OPT_STARTTLS during
// the handshake and the rest of the connection (options and data) runs inside TLS. Two kinds of
// credentials: pre-shared keys in psktool's file format (`identity:hexkey` per line, what qemu's
// tls-creds-psk and libnbd's tls-psk-file read) and x509 certificates. The client's identity
// (its PSK username, or its certificate's subject CN) is what exports are authorised against.
//
//   off      STARTTLS refused (ERR_UNSUP): plain NBD only
//   on       STARTTLS offered, plain NBD still served
//   require  nothing but STARTTLS (and ABORT) before TLS: every other option is answered
//            ERR_TLS_REQD, and NBD_OPT_EXPORT_NAME (which has no error reply) closes
//
// Presage's PSKs are derived from an entity's secret (nbdPskOf), so one entity, with one set of
// volume grants, is the same identity on the data port, the HTTP APIs and NBD.

import crypto from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';

export type NbdTlsMode = 'off' | 'on' | 'require';

export interface NbdTlsOptions {
  mode: NbdTlsMode;
  /** PSK identities and their keys (loadPskFile). */
  psk?: Map<string, Buffer>;
  /** x509: PEM certificate chain and key of the server; `ca` to require and verify client certificates. */
  cert?: string;
  key?: string;
  ca?: string;
  /**
   * Whether the client (its TLS identity; undefined over plain NBD) may use an export. Called for
   * LIST (unlisted when false), INFO/GO (ERR_POLICY) and EXPORT_NAME (closed). Default: all.
   */
  authorize?: (identity: string | undefined, exportName: string) => Promise<boolean> | boolean;
}

/** PSK cipher suites first (TLS 1.2; TLS 1.3 PSK uses the SHA-256 suites), then Node's defaults for x509. */
const CIPHERS = ['PSK-AES256-GCM-SHA384', 'PSK-AES128-GCM-SHA256', 'DHE-PSK-AES256-GCM-SHA384', 'DHE-PSK-AES128-GCM-SHA256', 'ECDHE-PSK-CHACHA20-POLY1305', tls.DEFAULT_CIPHERS].join(':');

export class NbdTlsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NbdTlsConfigError';
  }
}

/** Reads a psktool keys file: `identity:hexkey` lines; blank lines and # comments are skipped. */
export function loadPskFile(file: string): Map<string, Buffer> {
  let text: string;
  try {
    const st = fs.statSync(file);
    if ((st.mode & 0o077) !== 0) throw new NbdTlsConfigError(`PSK file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof NbdTlsConfigError) throw err;
    throw new NbdTlsConfigError(`cannot read PSK file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const out = new Map<string, Buffer>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const m = /^([^:\s]+):([0-9a-fA-F]+)$/.exec(line);
    if (!m || m[2].length % 2 !== 0 || m[2].length < 32) throw new NbdTlsConfigError(`${file}:${i + 1}: expected identity:hexkey (at least 16 bytes of key)`);
    out.set(m[1], Buffer.from(m[2], 'hex'));
  });
  if (out.size === 0) throw new NbdTlsConfigError(`PSK file ${file} holds no key`);
  return out;
}

/** The NBD pre-shared key of an entity: derived from its secret, so it needs no second secret to keep. */
export function nbdPskOf(secret: Buffer): Buffer {
  return crypto.createHmac('sha256', secret).update('presage nbd psk').digest();
}

/** A psktool line for an entity. */
export function pskLine(name: string, secret: Buffer): string {
  return `${name}:${nbdPskOf(secret).toString('hex')}`;
}

/** Checks the options once, at listen time, so a bad file fails the command and not a client. */
export function checkTlsOptions(o: NbdTlsOptions): void {
  if (o.mode === 'off') return;
  if (!o.psk && !(o.cert && o.key)) throw new NbdTlsConfigError('NBD TLS needs a PSK file (--tls-psk-file) or a certificate and key (--tls-cert, --tls-key)');
  if (o.cert || o.key) tls.createSecureContext({ cert: o.cert, key: o.key, ca: o.ca });
}

/**
 * Turns an accepted plain socket into a server-side TLS socket and waits for the handshake.
 * Resolves with the client's identity (PSK username or certificate CN).
 */
export function upgradeToTls(raw: import('node:net').Socket, o: NbdTlsOptions, timeoutMs = 10000): Promise<{ socket: tls.TLSSocket; identity: string | undefined }> {
  let identity: string | undefined;
  const socket = new tls.TLSSocket(raw, {
    isServer: true,
    secureContext: tls.createSecureContext({ cert: o.cert, key: o.key, ca: o.ca, ciphers: CIPHERS }),
    requestCert: o.ca !== undefined,
    rejectUnauthorized: o.ca !== undefined,
    ...(o.psk ? {
      pskCallback: (_sock: tls.TLSSocket, id: string) => {
        const key = o.psk!.get(id);
        if (key) identity = id;
        return key ?? null;
      },
    } : {}),
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`TLS handshake not done in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('secure', () => {
      clearTimeout(timer);
      if (!identity) {
        const cn = socket.getPeerCertificate()?.subject?.CN;
        identity = Array.isArray(cn) ? cn[0] : cn;
      }
      resolve({ socket, identity });
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`TLS handshake failed: ${err.message}`));
    });
  });
}
