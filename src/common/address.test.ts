// Announced server addresses (issue #22): only exactly HOST:PORT of a usable machine passes, and
// with a source the address must be the sender's own; every refusal is an AddressError with the
// stable code, 400 for a bad address, 403 for someone else's, 503 for DNS trouble worth a retry.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AddressError, canonicalIp, checkServerAddress, parseServerAddress } from './address.ts';

const refused = (status: number, re: RegExp) => (err: unknown) => {
  assert.ok(err instanceof AddressError, String(err));
  assert.equal(err.code, 'ERR_PRESAGE_BAD_ADDRESS');
  assert.equal(err.status, status);
  assert.match(err.message, re);
  return true;
};

test('parseServerAddress: exactly HOST:PORT of an IP or host name, nothing a URL parser would read otherwise', () => {
  assert.deepEqual(parseServerAddress('127.0.0.1:7500'), { host: '127.0.0.1', port: 7500, kind: 'ipv4', ip: '127.0.0.1' });
  assert.deepEqual(parseServerAddress('[::1]:80'), { host: '::1', port: 80, kind: 'ipv6', ip: '::1' });
  assert.deepEqual(parseServerAddress('store-1.example:7600'), { host: 'store-1.example', port: 7600, kind: 'name' });
  for (const [text, re] of [
    ['http://x/', /is not HOST:PORT/], ['x:1/path', /is not HOST:PORT/], ['user@x:1', /is not HOST:PORT/], [' x:1', /is not HOST:PORT/],
    ['x:1?q', /is not HOST:PORT/], ['[fe80::1%eth0]:1', /is not HOST:PORT/], ['x', /is not HOST:PORT/],
    ['127.0.0.1:0', /port must be/], ['x:65536', /port must be/], ['x:080', /port must be/],
    ['2130706433:80', /not a valid IPv4/], ['0x7f.1:80', /not a valid IPv4/], ['127.1:80', /not a valid IPv4/], ['a.0x10:80', /not a valid IPv4/],
    ['-a:1', /not a valid host name/], ['a..b:1', /not a valid host name/],
    ['0.0.0.0:9000', /wildcard/], ['[::]:9000', /wildcard/], ['[::ffff:0.0.0.0]:1', /wildcard/],
    ['169.254.169.254:80', /link-local/], ['[fe80::1]:80', /link-local/], ['224.0.0.1:1', /multicast/], ['[ff02::1]:1', /multicast/],
  ] as const) {
    assert.throws(() => parseServerAddress(text, 'adminAddr'), refused(400, re), text);
  }
  assert.throws(() => parseServerAddress(undefined, 'dataAddr'), refused(400, /dataAddr must be a string/));
  assert.throws(() => parseServerAddress(7500, 'dataAddr'), refused(400, /got number/));
});

test('canonicalIp: the forms of one address compare equal', () => {
  assert.equal(canonicalIp('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(canonicalIp('::FFFF:7f00:1'), '127.0.0.1');
  assert.equal(canonicalIp('[0:0::1]'), '::1');
  assert.equal(canonicalIp('fe80::1%eth0'), 'fe80::1');
  assert.equal(canonicalIp('not an ip'), undefined);
});

test('checkServerAddress: bound to the sender\'s address unless the binding is off', async () => {
  await checkServerAddress('127.0.0.1:7500', 'dataAddr', { source: '::ffff:127.0.0.1' });
  await checkServerAddress('10.1.2.3:7500', 'dataAddr', { source: '10.1.2.3' });
  await assert.rejects(checkServerAddress('10.9.8.7:7500', 'dataAddr', { source: '10.1.2.3' }), refused(403, /not the address this registration came from \(10\.1\.2\.3\).*--allow-any-server-address/));
  // Loopback never names a remote sender's machine.
  await assert.rejects(checkServerAddress('127.0.0.1:7500', 'dataAddr', { source: '10.1.2.3' }), refused(403, /came from/));
  // A host name: any of its addresses must be the sender's.
  const lookup = async (h: string) => (h === 'me.example' ? ['10.1.2.3', '2001:db8::1'] : h === 'meta.example' ? ['169.254.169.254'] : []);
  await checkServerAddress('me.example:7500', 'dataAddr', { source: '10.1.2.3', lookup });
  await assert.rejects(checkServerAddress('me.example:7500', 'dataAddr', { source: '10.4.4.4', lookup }), refused(403, /resolves to 10\.1\.2\.3, 2001:db8::1/));
  await assert.rejects(checkServerAddress('meta.example:80', 'adminAddr', { lookup }), refused(400, /resolves to 169\.254\.169\.254, link-local/));
  await assert.rejects(checkServerAddress('none.example:80', 'adminAddr', { lookup }), refused(400, /resolves to no address/));
  const flaky = async () => {
    throw Object.assign(new Error('temporary failure'), { code: 'EAI_AGAIN' });
  };
  await assert.rejects(checkServerAddress('x.example:80', 'adminAddr', { lookup: flaky }), refused(503, /EAI_AGAIN.*retry/));
  // No binding (--allow-any-server-address): the syntax and usability checks still hold.
  await checkServerAddress('10.9.8.7:7500', 'dataAddr', {});
  await assert.rejects(checkServerAddress('0.0.0.0:7500', 'dataAddr', {}), refused(400, /wildcard/));
});
