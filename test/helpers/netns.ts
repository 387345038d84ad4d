// Several hosts on one machine for partition tests: one network namespace per host, each joined
// to a bridge in the root namespace by a veth pair, on a private /24. The test process stays in
// the root namespace (it is a client on the bridge). A partition between a host and a peer drops
// every packet between them in both directions, silently, as a cut link does: a blackhole route
// to the other's address on each side (routes need no kernel module, unlike tc actions or
// netfilter), without touching anyone else's traffic (the bridge forwards the rest at layer 2). Everything is created by the test and removed
// by destroy(); the names carry a random tag so parallel or crashed runs never collide.

import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';

const run = (args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
/** Runs `ip ARGS` in a namespace ('' = the root namespace). */
const ipIn = (ns: string, args: string[], allowFail = false) => {
  const r = spawnSync('ip', ns ? ['netns', 'exec', ns, 'ip', ...args] : args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0 && !allowFail) throw new Error(`ip ${args.join(' ')}${ns ? ` in ${ns}` : ''}: ${r.stderr.toString().trim()}`);
};

export interface Host {
  name: string;
  ns: string;
  ip: string;
  dev: string;
}

/** Why network namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  const probe = `pprobe${crypto.randomBytes(3).toString('hex')}`;
  const r = spawnSync('ip', ['netns', 'add', probe], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) return `ip netns add refused: ${r.error?.message ?? r.stderr.toString().trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

export class NetnsLab {
  readonly hosts = new Map<string, Host>();
  /** The root namespace's address on the bridge (where the test process is reached). */
  readonly rootIp: string;
  private readonly bridge: string;

  private constructor(private readonly tag: string, private readonly subnet: number) {
    this.bridge = `pbr${tag}`;
    this.rootIp = `10.${subnet}.0.1`;
  }

  static create(names: string[]): NetnsLab {
    const tag = crypto.randomBytes(3).toString('hex');
    const lab = new NetnsLab(tag, 100 + (parseInt(tag, 16) % 100));
    try {
      run(['link', 'add', lab.bridge, 'type', 'bridge']);
      run(['addr', 'add', `${lab.rootIp}/24`, 'dev', lab.bridge]);
      run(['link', 'set', lab.bridge, 'up']);
      names.forEach((name, i) => {
        const ns = `p${tag}-${name}`;
        const outer = `pv${tag}${i}a`;
        const inner = `pv${tag}${i}b`;
        const ip = `10.${lab.subnet}.0.${10 + i}`;
        run(['netns', 'add', ns]);
        run(['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
        run(['link', 'set', inner, 'netns', ns]);
        run(['link', 'set', outer, 'master', lab.bridge]);
        run(['link', 'set', outer, 'up']);
        run(['netns', 'exec', ns, 'ip', 'addr', 'add', `${ip}/24`, 'dev', inner]);
        run(['netns', 'exec', ns, 'ip', 'link', 'set', inner, 'up']);
        run(['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
        lab.hosts.set(name, { name, ns, ip, dev: inner });
      });
    } catch (err) {
      lab.destroy();
      throw err;
    }
    return lab;
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /** The command prefix that runs a program inside a host's namespace. */
  prefix(name: string): string[] {
    return ['ip', 'netns', 'exec', this.host(name).ns];
  }

  /** Where a name lives: a host's namespace and address, or the root namespace ('root'). */
  private side(name: string): { ns: string; ip: string } {
    return name === 'root' ? { ns: '', ip: this.rootIp } : { ns: this.host(name).ns, ip: this.host(name).ip };
  }

  private readonly cuts = new Map<string, string[]>();

  /** Drops every packet between host `a` and each of `peers` (host names, or 'root' for the test process). */
  cut(a: string, peers: string[]): void {
    const x = this.side(a);
    for (const p of peers) {
      const y = this.side(p);
      ipIn(x.ns, ['route', 'add', 'blackhole', `${y.ip}/32`]);
      ipIn(y.ns, ['route', 'add', 'blackhole', `${x.ip}/32`]);
    }
    this.cuts.set(a, [...(this.cuts.get(a) ?? []), ...peers]);
  }

  heal(a: string): void {
    const x = this.side(a);
    for (const p of this.cuts.get(a) ?? []) {
      const y = this.side(p);
      ipIn(x.ns, ['route', 'del', 'blackhole', `${y.ip}/32`], true);
      ipIn(y.ns, ['route', 'del', 'blackhole', `${x.ip}/32`], true);
    }
    this.cuts.delete(a);
  }

  destroy(): void {
    for (const a of [...this.cuts.keys()]) this.heal(a); // the root namespace's routes do not die with the lab
    for (const h of this.hosts.values()) {
      // Anything still running in the namespace dies with it.
      spawnSync('ip', ['netns', 'pids', h.ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean).forEach((pid) => {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      });
      spawnSync('ip', ['netns', 'del', h.ns]);
    }
    spawnSync('ip', ['link', 'del', this.bridge]);
  }
}
