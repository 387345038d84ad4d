// Admission and resource honesty (issue #22) against a real cluster: each request a careless or
// hostile caller might send is refused with a clear error and a stable code, and has no effect.
// A volume too large for the metadata (2^30 segments) or for the disks (4 PiB); a server
// registration announcing an address that is not exactly HOST:PORT of the sender's own machine
// (the orchestrator would fetch from it: SSRF); a body over the control-plane limit; a history
// import by path from a server without an import folder, or leading out of the folder, whose
// answer must not quote the file it was pointed at. A valid import from the folder still works.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bearerToken, loadKeyFile } from '../src/auth/credentials.ts';
import { OrchestratorClient } from '../src/api/orchestrator-client.ts';
import { TestCluster, authedFetch, freePort } from './helpers/cluster.ts';

const MiB = 1024 * 1024;
const PiB = 2 ** 50;

/** The lines of /etc/passwd: no answer below may contain one. */
const PASSWD = fs.readFileSync('/etc/passwd', 'utf8').split('\n').filter((l) => l.trim() !== '');

async function call(url: string, method: string, body: unknown, token?: string, contentType = 'application/json') {
  const init: RequestInit = {
    method,
    headers: { 'content-type': contentType, ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  };
  const res = token ? await fetch(url, init) : await authedFetch(url, init);
  const text = await res.text();
  let json: { error?: string; code?: string; [k: string]: unknown } = {};
  try {
    json = JSON.parse(text);
  } catch {
    // asserted on by the callers
  }
  return { status: res.status, text, json };
}

describe('admission: no single request overcommits the cluster, steers its fetches or reads what it should not', () => {
  let cluster: TestCluster;
  let api: OrchestratorClient;
  let importDir: string;
  /** Server 0 has --import-dir; server 1 has none. */
  let withDir: string;
  let withoutDir: string;

  before(async () => {
    importDir = fs.mkdtempSync(path.join(os.tmpdir(), 'presage-import-'));
    const rows = ['ts,metric,min,max,mean,last,count'];
    const t0 = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
    for (let i = 0; i < 10; i++) rows.push(`${t0 + i * 60_000},adm_imported,${i},${i + 1},${i + 0.5},${i + 0.5},3`);
    fs.writeFileSync(path.join(importDir, 'good.csv'), `${rows.join('\n')}\n`);
    // Inside the folder, but the wrong content: errors must name the line, not quote it.
    fs.copyFileSync('/etc/passwd', path.join(importDir, 'passwd-copy.csv'));
    fs.symlinkSync('/etc/passwd', path.join(importDir, 'link-out'));
    fs.mkdirSync(path.join(importDir, 'sub'));
    fs.symlinkSync('/etc', path.join(importDir, 'sub', 'etc'));
    cluster = await TestCluster.start({ servers: 2, serverArgs: (i) => (i === 0 ? ['--import-dir', importDir] : []) });
    api = new OrchestratorClient(cluster.url);
    withDir = `http://127.0.0.1:${cluster.servers[0]!.adminPort}`;
    withoutDir = `http://127.0.0.1:${cluster.servers[1]!.adminPort}`;
  });

  after(async () => {
    api?.close();
    await cluster?.stop();
    if (importDir) fs.rmSync(importDir, { recursive: true, force: true });
  });

  it('volumes beyond the metadata or the disks are refused at once (422), and nothing is created', async () => {
    const t0 = Date.now();
    const huge = await call(`${cluster.url}/v1/volumes`, 'POST', { name: 'huge', size: 2 ** 30 * MiB, segmentSize: MiB, replicas: 1 });
    assert.equal(huge.status, 422, huge.text);
    assert.equal(huge.json.code, 'ERR_PRESAGE_LIMIT');
    assert.match(huge.json.error!, /would have 1073741824 segments; at most 65536 per volume/);
    assert.ok(Date.now() - t0 < 2000, 'refused before any work');
    // 4 PiB in 1 TiB segments: few enough segments, far more bytes than the test machine's disk.
    const vast = await call(`${cluster.url}/v1/volumes`, 'POST', { name: 'vast', size: 4 * PiB, segmentSize: 2 ** 40, replicas: 2 });
    assert.equal(vast.status, 422, vast.text);
    assert.equal(vast.json.code, 'ERR_PRESAGE_LIMIT');
    assert.match(vast.json.error!, /needs \d+ bytes with its 2 replicas; the cluster has promised 0 of \d+ bytes.*over-commit ratio 1/);
    const long = await call(`${cluster.url}/v1/volumes`, 'POST', { name: 'n'.repeat(200), size: MiB, segmentSize: MiB, replicas: 1 });
    assert.equal(long.status, 400, long.text);
    assert.match(long.json.error!, /invalid volume name .*1-64 characters/);
    assert.deepEqual(await api.listVolumes(), [], 'no volume was created');
    assert.equal((await api.status()).segments.total, 0);
  });

  it('a server registration naming an address that is not its own HOST:PORT is refused (ERR_PRESAGE_BAD_ADDRESS); no record changes', async () => {
    const keyFile = path.join(cluster.root, 'rogue.key');
    const made = await cluster.cli(['auth', 'create', 'rogue', '--role', 'server', '--out', keyFile]);
    assert.equal(made.code, 0, made.stderr);
    const rogue = bearerToken(loadKeyFile(keyFile));
    const before = (await api.status()).servers;
    const own = `127.0.0.1:${await freePort()}`;
    const cases: [string, number, RegExp][] = [
      ['169.254.169.254:80', 400, /link-local .*cloud metadata/],
      ['http://x/', 400, /is not HOST:PORT/],
      ['127.0.0.1:0', 400, /port must be a number from 1 to 65535/],
      ['0.0.0.0:9000', 400, /wildcard/],
      ['2130706433:80', 400, /not a valid IPv4 address/],
      ['10.11.12.13:7600', 403, /not the address this registration came from \(127\.0\.0\.1\).*--allow-any-server-address/],
    ];
    for (const [addr, status, re] of cases) {
      for (const [dataAddr, adminAddr] of [[own, addr], [addr, own]]) {
        const r = await call(`${cluster.url}/v1/servers`, 'POST', { id: 'rogue-1', dataAddr, adminAddr, capacityBytes: 2 ** 40 }, rogue);
        assert.equal(r.status, status, `${dataAddr} / ${adminAddr}: ${r.text}`);
        assert.equal(r.json.code, 'ERR_PRESAGE_BAD_ADDRESS', r.text);
        assert.match(r.json.error!, re);
        assert.ok(r.json.error!.includes(addr === own ? adminAddr : addr), 'the error names the address');
      }
    }
    // A registered server re-registering with its own key cannot repoint itself either.
    const victim = cluster.servers[0]!;
    const self = bearerToken(loadKeyFile(path.join(victim.dir, 'server.key')));
    const moved = await call(`${cluster.url}/v1/servers`, 'POST', { id: victim.id, dataAddr: `127.0.0.1:${victim.port}`, adminAddr: '169.254.169.254:80', capacityBytes: 2 ** 40 }, self);
    assert.equal(moved.json.code, 'ERR_PRESAGE_BAD_ADDRESS', moved.text);
    const now = (await api.status()).servers;
    assert.deepEqual(now.map((s) => [s.id, s.dataAddr, s.adminAddr, s.capacityBytes]), before.map((s) => [s.id, s.dataAddr, s.adminAddr, s.capacityBytes]), 'no server record was added or changed');
  });

  it('a body over the limit is a 413 with a clear error, on the orchestrator and on a server, and has no effect', async () => {
    const big = JSON.stringify({ name: 'big', size: MiB, segmentSize: MiB, replicas: 1, pad: 'x'.repeat(2 * MiB) });
    const r = await call(`${cluster.url}/v1/volumes`, 'POST', big);
    assert.equal(r.status, 413, r.text);
    assert.equal(r.json.code, 'ERR_PRESAGE_BODY_TOO_LARGE');
    assert.match(r.json.error!, /larger than the 1\.00 MiB that POST \/v1\/volumes accepts/);
    assert.deepEqual(await api.listVolumes(), []);
    const s = await call(`${withDir}/v1/faults`, 'POST', JSON.stringify({ profile: 'x', pad: 'x'.repeat(2 * MiB) }));
    assert.equal(s.status, 413, s.text);
    assert.equal(s.json.code, 'ERR_PRESAGE_BODY_TOO_LARGE');
  });

  it('history import by path: only from the import folder, never leading out of it, and no answer quotes a file', async () => {
    const names = async () => (await call(`${withDir}/v1/metrics/names`, 'GET', undefined)).json as unknown as string[];
    const noPasswd = (text: string) => {
      for (const line of PASSWD) assert.ok(!text.includes(line), `the answer quotes /etc/passwd: ${text}`);
    };
    // A server without --import-dir reads no path at all.
    for (const p of ['good.csv', '/etc/passwd', path.join(importDir, 'good.csv')]) {
      const r = await call(`${withoutDir}/v1/metrics/import`, 'POST', { path: p, format: 'backblaze', serial: 'x' });
      assert.equal(r.status, 403, r.text);
      assert.equal(r.json.code, 'ERR_PRESAGE_IMPORT_PATH');
      assert.match(r.json.error!, /--import-dir.*request body/);
      noPasswd(r.text);
    }
    // With one, nothing that leads out of it: `..`, an absolute path elsewhere, symlinks pointing out.
    for (const p of ['../../etc/passwd', '/etc/passwd', 'link-out', 'sub/etc/passwd', `${importDir}/../../etc/passwd`]) {
      for (const format of ['own', 'perseus', 'backblaze']) {
        const r = await call(`${withDir}/v1/metrics/import`, 'POST', { path: p, format, host: 'root', serial: 'root' });
        assert.equal(r.status, 403, `${p} (${format}): ${r.text}`);
        assert.equal(r.json.code, 'ERR_PRESAGE_IMPORT_PATH');
        assert.match(r.json.error!, /outside the import folder/);
        noPasswd(r.text);
      }
    }
    // A wrong file inside the folder: a clear 400 naming the file and line, never its content.
    for (const format of ['own', 'perseus', 'backblaze']) {
      const r = await call(`${withDir}/v1/metrics/import`, 'POST', { path: 'passwd-copy.csv', format, host: 'root', serial: 'root' });
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.error!, /passwd-copy\.csv:1: /);
      noPasswd(r.text);
    }
    assert.ok(!(await names()).includes('adm_imported'), 'nothing was imported');
    // The valid import, by a relative and by an absolute path inside the folder.
    const ok = await call(`${withDir}/v1/metrics/import`, 'POST', { path: 'sub/../good.csv' });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.rowsImported, 10);
    const abs = await call(`${withDir}/v1/metrics/import`, 'POST', { path: path.join(importDir, 'good.csv') });
    assert.equal(abs.status, 200, abs.text);
    assert.ok((await names()).includes('adm_imported'));
    const missing = await call(`${withDir}/v1/metrics/import`, 'POST', { path: 'nope.csv' });
    assert.equal(missing.status, 404, missing.text);
    assert.equal(missing.json.code, 'ERR_PRESAGE_IMPORT_PATH');
  });
});
