// Signed JSON documents (model bundles): the signer's Ed25519 signature over the document's JSON
// text without its `signature` member, carried in that member as { signer, alg, value }.
//
// Invariants: what is signed is exactly JSON.stringify of the document minus `signature`, so a
// verifier recomputes it from the parsed body (JSON.parse then JSON.stringify reproduces what
// JSON.stringify wrote, member order included) with no canonicalisation library; a document
// verifies only against the signer's public key as the keyring holds it, and only for a signer
// the caller's policy accepts (model bundles: a live admin); an unsigned document, a foreign or
// revoked signer, and any change to a signed byte are refused with a stable code.

import crypto from 'node:crypto';
import { ED25519_SPKI_PREFIX, signingKeyOf, type Credential } from './credentials.ts';

export interface JsonSignature {
  /** Entity name of the signer (looked up in the keyring). */
  signer: string;
  alg: 'ed25519';
  /** base64 signature. */
  value: string;
}

export type SignatureErrorCode = 'ERR_PRESAGE_UNSIGNED' | 'ERR_PRESAGE_BAD_SIGNATURE' | 'ERR_PRESAGE_UNTRUSTED_SIGNER';

export class SignatureError extends Error {
  constructor(message: string, readonly code: SignatureErrorCode) {
    super(message);
    this.name = 'SignatureError';
  }
}

function signedBytes(doc: Record<string, unknown>): Buffer {
  const { signature: _sig, ...rest } = doc;
  return Buffer.from(JSON.stringify(rest), 'utf8');
}

/** `doc` with a `signature` member (last) by `cred`. Any previous signature is replaced. */
export function signJson<T extends object>(doc: T, cred: Credential): T & { signature: JsonSignature } {
  const { signature: _old, ...rest } = doc as Record<string, unknown>;
  const value = crypto.sign(null, Buffer.from(JSON.stringify(rest), 'utf8'), signingKeyOf(cred.secret).privateKey).toString('base64');
  return { ...(rest as T), signature: { signer: cred.name, alg: 'ed25519', value } };
}

/**
 * Checks `doc`'s signature; returns the document without it. `trustedKey(name)` gives the public
 * key (32 bytes) of a signer the caller accepts, or a reason why that signer is not accepted.
 */
export function verifySignedJson(doc: unknown, trustedKey: (signer: string) => Buffer | string): Record<string, unknown> {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new SignatureError('not a JSON object', 'ERR_PRESAGE_BAD_SIGNATURE');
  const d = doc as Record<string, unknown>;
  const sig = d.signature as Partial<JsonSignature> | undefined;
  if (sig === undefined) throw new SignatureError('the document is not signed (an orchestrator signs what it pushes)', 'ERR_PRESAGE_UNSIGNED');
  if (typeof sig !== 'object' || sig === null || typeof sig.signer !== 'string' || sig.alg !== 'ed25519' || typeof sig.value !== 'string') {
    throw new SignatureError('malformed signature (expected { signer, alg: "ed25519", value })', 'ERR_PRESAGE_BAD_SIGNATURE');
  }
  const key = trustedKey(sig.signer);
  if (typeof key === 'string') throw new SignatureError(`signer ${JSON.stringify(sig.signer)} is not trusted: ${key}`, 'ERR_PRESAGE_UNTRUSTED_SIGNER');
  const publicKey = crypto.createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, key]), format: 'der', type: 'spki' });
  const ok = crypto.verify(null, signedBytes(d), publicKey, Buffer.from(sig.value, 'base64'));
  if (!ok) throw new SignatureError(`the signature by ${sig.signer} does not match the document (altered, or signed by another key)`, 'ERR_PRESAGE_BAD_SIGNATURE');
  const { signature: _s, ...rest } = d;
  return rest;
}
