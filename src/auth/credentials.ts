// Credentials: who a process is. An entity (the admin, an operator, a client, each storage
// server) holds one 256-bit secret, written once to a key file (mode 0600) and never sent over
// the wire or stored anywhere else. Everything a verifier keeps is derived one-way from it
// (see verifierOf): the metadata store holds no secret in clear, and what it does hold cannot
// be replayed as a credential.
//
// A process acts as one entity (Ceph's --name/--keyring model): its credential is set once at
// start (CLI --key-file, PRESAGE_KEY_FILE, or an orchestrator's bootstrap) and every outgoing
// request, HTTP or data protocol, carries it unless a caller passes another explicitly.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const ROLES = ['admin', 'operator', 'client', 'server', 'reader'] as const;
export type Role = (typeof ROLES)[number];

/** Entity names: what key files, the keyring and logs show. */
export const ENTITY_NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

/** Every authentication failure, with a stable code (the CLI prints the message; code for programs). */
export class AuthError extends Error {
  constructor(
    message: string,
    readonly code: 'ERR_PRESAGE_NO_CREDENTIAL' | 'ERR_PRESAGE_BAD_KEY_FILE' | 'ERR_PRESAGE_UNAUTHENTICATED' | 'ERR_PRESAGE_FORBIDDEN',
  ) {
    super(message);
    this.name = 'AuthError';
  }
}

export interface Credential {
  name: string;
  secret: Buffer;
}

/** What a key file holds (JSON). The role is informational: the keyring is the authority. */
interface KeyFile {
  entity: string;
  role?: Role;
  secret: string;
}

export function newSecret(): Buffer {
  return crypto.randomBytes(32);
}

/** Reads a key file; refuses one that others can read, as ssh does, so a leaked file is noticed. */
export function loadKeyFile(file: string): Credential {
  let st: fs.Stats;
  let text: string;
  try {
    st = fs.statSync(file);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new AuthError(`cannot read key file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'ERR_PRESAGE_BAD_KEY_FILE');
  }
  if ((st.mode & 0o077) !== 0) {
    throw new AuthError(`key file ${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`, 'ERR_PRESAGE_BAD_KEY_FILE');
  }
  let k: Partial<KeyFile>;
  try {
    k = JSON.parse(text) as Partial<KeyFile>;
  } catch {
    throw new AuthError(`key file ${file} is not JSON`, 'ERR_PRESAGE_BAD_KEY_FILE');
  }
  const secret = typeof k.secret === 'string' ? Buffer.from(k.secret, 'base64') : Buffer.alloc(0);
  if (typeof k.entity !== 'string' || !ENTITY_NAME.test(k.entity) || secret.length !== 32) {
    throw new AuthError(`key file ${file} does not hold an entity name and a 32-byte secret`, 'ERR_PRESAGE_BAD_KEY_FILE');
  }
  return { name: k.entity, secret };
}

/** Writes a key file atomically with mode 0600 (never readable by others, not even briefly). */
export function writeKeyFile(file: string, cred: Credential, role: Role): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const body: KeyFile = { entity: cred.name, role, secret: cred.secret.toString('base64') };
  fs.writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** One-way keys derived from a secret; a verifier stores only these (SCRAM's StoredKey/ServerKey). */
export interface Verifier {
  /** SHA-256 of the client key: checks a data-protocol proof without being able to make one. */
  storedKey: Buffer;
  /** Lets a verifier prove to the entity that it holds the entity's verifier (mutual authentication). */
  serverKey: Buffer;
  /** SHA-256 of the HTTP bearer token. */
  tokenHash: Buffer;
  /** The entity's Ed25519 public key (32 bytes): checks what it signs (model bundles); absent on records made before signing existed. */
  signingKey?: Buffer;
}

const hmac = (key: Buffer, label: string) => crypto.createHmac('sha256', key).update(label).digest();
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest();

export function clientKeyOf(secret: Buffer): Buffer {
  return hmac(secret, 'presage client key');
}

export function serverKeyOf(secret: Buffer): Buffer {
  return hmac(secret, 'presage server key');
}

function httpTokenOf(secret: Buffer): Buffer {
  // Separate from the client key: a bearer token seen on a plain-HTTP network gives no way into
  // the data protocol's challenge-response.
  return hmac(secret, 'presage http token');
}

/** PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** SPKI DER prefix of an Ed25519 public key; the 32 raw bytes follow. */
export const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * The entity's Ed25519 signing key, derived from its secret like its other keys, so every holder
 * of the key file (an orchestrator and its standbys) signs as the entity with nothing more to
 * distribute, and the keyring holds only the public half.
 */
export function signingKeyOf(secret: Buffer): { privateKey: crypto.KeyObject; publicKey: Buffer } {
  const seed = hmac(secret, 'presage signing key');
  const privateKey = crypto.createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const spki = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return { privateKey, publicKey: spki.subarray(ED25519_SPKI_PREFIX.length) };
}

export function verifierOf(secret: Buffer): Verifier {
  return { storedKey: sha256(clientKeyOf(secret)), serverKey: serverKeyOf(secret), tokenHash: sha256(httpTokenOf(secret)), signingKey: signingKeyOf(secret).publicKey };
}

const TOKEN_PREFIX = 'presage1.';

/** The HTTP bearer token of a credential: `presage1.<entity>.<key>`. */
export function bearerToken(cred: Credential): string {
  return `${TOKEN_PREFIX}${cred.name}.${httpTokenOf(cred.secret).toString('base64url')}`;
}

/** Splits a bearer token into the entity it names and the SHA-256 a keyring compares; undefined if malformed. */
export function parseBearerToken(token: string): { name: string; hash: Buffer } | undefined {
  if (!token.startsWith(TOKEN_PREFIX)) return undefined;
  const dot = token.lastIndexOf('.');
  const name = token.slice(TOKEN_PREFIX.length, dot);
  const key = Buffer.from(token.slice(dot + 1), 'base64url');
  if (!ENTITY_NAME.test(name) || key.length !== 32) return undefined;
  return { name, hash: sha256(key) };
}

// --- the process's own identity ---

let current: Credential | undefined;
let fromEnvTried = false;

/** Sets the identity every outgoing request of this process uses by default. */
export function setProcessCredential(cred: Credential | undefined): void {
  current = cred;
  fromEnvTried = true;
}

/** The process's identity: set explicitly, else PRESAGE_KEY_FILE (read once), else none. */
export function processCredential(): Credential | undefined {
  if (!current && !fromEnvTried) {
    fromEnvTried = true;
    const file = process.env.PRESAGE_KEY_FILE;
    if (file) current = loadKeyFile(file);
  }
  return current;
}

/** The Authorization header for the process identity (or `cred`), or nothing without one. */
export function authHeader(cred: Credential | undefined = processCredential()): Record<string, string> {
  return cred ? { authorization: `Bearer ${bearerToken(cred)}` } : {};
}
