import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Debian's python3 with torch and torchvision (package python3-torchvision), the third-party reference
 * for PyTorch layouts. Installed with apt-get when missing, as test/run.sh installs nats-server; what
 * stops that comes back as a reason to skip, found before the code under test runs.
 */

export const DEBIAN_PYTHON = '/usr/bin/python3';
/** apt-get fetches torch and its dependencies (hundreds of MB) on a slow line. */
const INSTALL_TIMEOUT_MS = 20 * 60_000;

export type Torchvision = { readonly python: string } | { readonly missing: string };

export async function debianTorchvision(): Promise<Torchvision> {
  if ((await run(DEBIAN_PYTHON, ['-c', 'import torchvision'])).ok) return { python: DEBIAN_PYTHON };
  if (!existsSync('/usr/bin/apt-get')) return { missing: 'python3-torchvision is not installed, and apt-get is not here to install it' };
  const apt = (args: readonly string[]) => (process.getuid?.() === 0 ? run('apt-get', args) : run('sudo', ['-n', 'apt-get', ...args]));
  let installed = await apt(['install', '-y', '-q', 'python3-torchvision']);
  if (!installed.ok) {
    await apt(['update', '-q']);
    installed = await apt(['install', '-y', '-q', 'python3-torchvision']);
  }
  if (!installed.ok) return { missing: `python3-torchvision is not installed and apt-get could not install it: ${installed.output}` };
  const check = await run(DEBIAN_PYTHON, ['-c', 'import torchvision']);
  return check.ok ? { python: DEBIAN_PYTHON } : { missing: `torchvision does not import after apt-get installed it: ${check.output}` };
}

function run(program: string, args: readonly string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(
      program,
      args,
      { timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 << 20, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
      (error, stdout, stderr) => {
        resolve({ ok: !error, output: `${stderr}\n${stdout}`.replace(/\s+/g, ' ').trim().slice(-600) || String(error?.message) });
      },
    );
  });
}
