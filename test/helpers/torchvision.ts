import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * torchvision itself, through Debian's python3-torchvision on /usr/bin/python3: installed with apt-get
 * when missing (as test/run.sh installs nats-server); what stops that comes back as a reason to skip,
 * found before the code under test runs.
 */

const PYTHON = '/usr/bin/python3';
/** apt-get fetches torch and its dependencies (hundreds of MB) on a slow line. */
const INSTALL_TIMEOUT_MS = 20 * 60_000;

/** undefined when torchvision imports (after installing it if need be); otherwise why it cannot be used here. */
export async function torchvisionMissing(): Promise<string | undefined> {
  const probe = () => run(PYTHON, ['-c', 'import torch, torchvision']);
  if ((await probe()).ok) return undefined;
  if (!existsSync('/usr/bin/apt-get')) return `${PYTHON} cannot import torch and torchvision, and apt-get is not here to install python3-torchvision`;
  const apt = (args: readonly string[]) => (process.getuid?.() === 0 ? run('apt-get', args) : run('sudo', ['-n', 'apt-get', ...args]));
  let installed = await apt(['install', '-y', '-q', 'python3-torchvision']);
  if (!installed.ok) {
    await apt(['update', '-q']);
    installed = await apt(['install', '-y', '-q', 'python3-torchvision']);
  }
  if (!installed.ok) return `python3-torchvision is not installed and apt-get could not install it: ${installed.output}`;
  const after = await probe();
  return after.ok ? undefined : `${PYTHON} cannot import torch and torchvision after apt-get installed them: ${after.output}`;
}

function run(program: string, args: readonly string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFile(program, args, { timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 << 20, env }, (error, stdout, stderr) => {
      resolve({ ok: !error, output: `${stderr}\n${stdout}`.replace(/\s+/g, ' ').trim().slice(-600) || String(error?.message) });
    });
  });
}
