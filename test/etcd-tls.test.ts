// The metadata store in distributed mode behind etcd's own security (issue #16): etcd serves only
// TLS, requires client certificates (--client-cert-auth) and has RBAC on, with a `presage` user
// that may touch only Presage's keys. A whole cluster (orchestrator, servers, CLI, client) runs on
// it through `--meta etcds://…` and PRESAGE_ETCD_*; a volume written and read through it is checked
// byte for byte; and every way of coming without the right credentials is refused with an error
// that says what is wrong and never shows the password.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EtcdKvStore } from '../src/metadata/etcd-kv.ts';
import { loadEtcdSecurity } from '../src/metadata/etcd-security.ts';
import { runPresage, TestCluster } from './helpers/cluster.ts';

const MiB = 1024 * 1024;

describe('etcd with client TLS, client certificates and RBAC (--meta etcds://)', { timeout: 180000 }, () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await TestCluster.start({ meta: 'etcd', etcdSecure: true, servers: 2 });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('a whole cluster runs on it: volume create, import and export through etcds://, byte for byte', async () => {
    assert.match(cluster.etcd!.url, /^etcds:\/\//);
    const env = cluster.env;
    assert.equal(env.PRESAGE_META, cluster.etcd!.url);
    const run = async (args: string[]) => {
      const r = await runPresage(args, env);
      assert.equal(r.code, 0, `presage ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    await run(['volume', 'create', 'secure', '--size', '8MiB', '--segment-size', '4MiB', '--replicas', '2']);
    const src = path.join(cluster.root, 'in.bin');
    const dst = path.join(cluster.root, 'out.bin');
    const data = crypto.randomBytes(8 * MiB);
    fs.writeFileSync(src, data);
    await run(['volume', 'import', 'secure', src]);
    await run(['volume', 'export', 'secure', dst]);
    assert.ok(fs.readFileSync(dst).equals(data), 'the exported volume is the imported file, byte for byte');
    // The metadata really lives in that etcd, readable with the presage user's credentials.
    const store = EtcdKvStore.connect(cluster.etcd!.url);
    try {
      const keys = (await store.range('/presage/')).entries.map((e) => e.key);
      assert.ok(keys.some((k) => k.includes('secure')), `the volume's keys are in etcd (${keys.length} keys)`);
    } finally {
      await store.close();
    }
  });

  it('refuses a wrong password, a missing user, a missing CA and plain etcd://, with clear errors and no secret shown', async () => {
    const certs = cluster.certs!;
    const realPassword = fs.readFileSync(cluster.tlsEnv.PRESAGE_ETCD_PASSWORD_FILE!, 'utf8').trim();
    const wrongFile = path.join(cluster.root, 'wrong-password');
    fs.writeFileSync(wrongFile, 'not-the-password-xyz\n', { mode: 0o600 });
    const status = (env: NodeJS.ProcessEnv) => runPresage(['status'], { ...cluster.env, PRESAGE_ORCHESTRATOR: '', ...env }, 60000);
    const noSecret = (text: string) => {
      assert.ok(!text.includes(realPassword), 'the real password is never printed');
      assert.ok(!text.includes('not-the-password-xyz'), 'nor the wrong one');
    };

    // The CLI with the wrong password: etcd's verdict, in one line.
    let r = await status({ PRESAGE_ETCD_PASSWORD_FILE: wrongFile });
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /etcd refused the user "presage": authentication failed/);
    noSecret(r.stdout + r.stderr);

    // A user without its password file, and etcds:// without a CA: refused before connecting.
    r = await status({ PRESAGE_ETCD_PASSWORD_FILE: '' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /an etcd user needs a password file/);
    r = await status({ PRESAGE_ETCD_CA: '' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /etcds:\/\/ needs the CA/);

    // Plain etcd:// to a TLS-only etcd: no silent fallback, a clear "cannot reach" within the deadline.
    r = await status({ PRESAGE_META: cluster.etcd!.url.replace('etcds://', 'etcd://'), PRESAGE_ETCD_CA: '', PRESAGE_ETCD_CERT: '', PRESAGE_ETCD_KEY: '' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach etcd at etcd:\/\/127\.0\.0\.1:\d+/);

    // A client certificate alone (no user): RBAC gives it nothing.
    const certOnly = EtcdKvStore.connect(cluster.etcd!.url, {}, {}, loadEtcdSecurity({ ca: certs.ca, cert: certs.cert, key: certs.key }));
    try {
      await assert.rejects(certOnly.range('/presage/'), (err: Error) => {
        assert.match(err.message, /etcd at etcds:\/\/127\.0\.0\.1:\d+ denied a client without an etcd user \(--etcd-user\) access to Presage's keys/);
        assert.equal((err as { code?: string }).code, 'ERR_ETCD_ACCESS');
        return true;
      });
    } finally {
      await certOnly.close();
    }
  });
});
