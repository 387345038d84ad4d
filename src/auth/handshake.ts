// The data protocol's mutual challenge-response (SCRAM, RFC 5802, with random 256-bit secrets
// so no password stretching): no secret crosses the wire, a recorded exchange is useless
// against a fresh server nonce, and the verifier stores only one-way keys.
//
//   client → AUTH step 0: entity name, client nonce
//   server → server nonce
//   client → AUTH step 1: proof = ClientKey XOR HMAC(StoredKey, AuthMessage)
//   server → signature = HMAC(ServerKey, AuthMessage)   (the client checks it: mutual)
//
// AuthMessage binds the entity and both nonces. The server recovers ClientKey from the proof and
// checks SHA-256(ClientKey) against StoredKey. These are pure functions; the framing is in
// protocol/connection.ts (client) and server/data-server.ts (server).

import crypto from 'node:crypto';
import { clientKeyOf, serverKeyOf, type Credential, type Verifier } from './credentials.ts';

export const NONCE_BYTES = 32;

export function newNonce(): Buffer {
  return crypto.randomBytes(NONCE_BYTES);
}

function authMessage(name: string, clientNonce: Buffer, serverNonce: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`presage-auth-v1\0${name}\0`), clientNonce, serverNonce]);
}

const hmac = (key: Buffer, msg: Buffer) => crypto.createHmac('sha256', key).update(msg).digest();

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** Client: the proof for this exchange. */
export function clientProof(cred: Credential, clientNonce: Buffer, serverNonce: Buffer): Buffer {
  const clientKey = clientKeyOf(cred.secret);
  const storedKey = crypto.createHash('sha256').update(clientKey).digest();
  return xor(clientKey, hmac(storedKey, authMessage(cred.name, clientNonce, serverNonce)));
}

/** Client: true when the server's signature shows it holds this entity's verifier. */
export function checkServerSignature(cred: Credential, clientNonce: Buffer, serverNonce: Buffer, signature: Buffer): boolean {
  const want = hmac(serverKeyOf(cred.secret), authMessage(cred.name, clientNonce, serverNonce));
  return signature.length === want.length && crypto.timingSafeEqual(signature, want);
}

/** Server: the signature to send back when the proof holds, else undefined. */
export function verifyProof(name: string, v: Verifier, clientNonce: Buffer, serverNonce: Buffer, proof: Buffer): Buffer | undefined {
  if (proof.length !== 32 || clientNonce.length !== NONCE_BYTES || serverNonce.length !== NONCE_BYTES) return undefined;
  const msg = authMessage(name, clientNonce, serverNonce);
  const clientKey = xor(proof, hmac(v.storedKey, msg));
  const stored = crypto.createHash('sha256').update(clientKey).digest();
  if (!crypto.timingSafeEqual(stored, v.storedKey)) return undefined;
  return hmac(v.serverKey, msg);
}
