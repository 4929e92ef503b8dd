import { spawnSync } from 'node:child_process';

/**
 * Network namespaces for tests that cut a host's link: a bridge in this namespace (the "switch", with the
 * coordinator's address) and one namespace per simulated host, each plugged in with a veth pair. Needs
 * root and `ip`; `available()` says why not otherwise, so the test can skip with that message.
 */

export interface Host {
  readonly namespace: string;
  readonly address: string;
  /** Pulls the host's cable: its link goes down, its processes keep running. */
  cut(): void;
}

export class TestNetwork {
  private readonly hosts: Array<{ namespace: string; veth: string }> = [];
  readonly gateway: string;

  constructor(
    private readonly name: string,
    private readonly subnet: string, // e.g. '10.77.0' (a /24)
  ) {
    this.gateway = `${subnet}.1`;
  }

  /** Why namespaces cannot be made here, or undefined when they can. */
  static unavailable(): string | undefined {
    if (process.getuid?.() !== 0) return 'not running as root';
    const probe = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) return `\`ip netns\` does not work here: ${probe.error?.message ?? probe.stderr.trim()}`;
    return undefined;
  }

  setUp(): void {
    run('ip', 'link', 'add', this.bridge, 'type', 'bridge');
    run('ip', 'addr', 'add', `${this.gateway}/24`, 'dev', this.bridge);
    run('ip', 'link', 'set', this.bridge, 'up');
  }

  addHost(index: number): Host {
    const namespace = `${this.name}-h${index}`;
    const veth = `${this.name.slice(0, 6)}v${index}`;
    const address = `${this.subnet}.${10 + index}`;
    run('ip', 'netns', 'add', namespace);
    this.hosts.push({ namespace, veth });
    run('ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`);
    run('ip', 'link', 'set', `${veth}p`, 'netns', namespace);
    run('ip', 'link', 'set', veth, 'master', this.bridge);
    run('ip', 'link', 'set', veth, 'up');
    run('ip', 'netns', 'exec', namespace, 'ip', 'addr', 'add', `${address}/24`, 'dev', `${veth}p`);
    run('ip', 'netns', 'exec', namespace, 'ip', 'link', 'set', `${veth}p`, 'up');
    run('ip', 'netns', 'exec', namespace, 'ip', 'link', 'set', 'lo', 'up');
    return { namespace, address, cut: () => run('ip', 'link', 'set', veth, 'down') };
  }

  tearDown(): void {
    for (const { namespace, veth } of this.hosts) {
      spawnSync('ip', ['link', 'del', veth]);
      spawnSync('ip', ['netns', 'del', namespace]);
    }
    spawnSync('ip', ['link', 'del', this.bridge]);
  }

  private get bridge(): string {
    return `${this.name.slice(0, 8)}br`;
  }
}

function run(...command: string[]): void {
  const result = spawnSync(command[0]!, command.slice(1), { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command.join(' ')} failed: ${result.stderr.trim()}`);
}
