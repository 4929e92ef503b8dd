import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * A Python virtual environment with the packages a test needs (`python3 -m venv`, then pip), made once in
 * a cache directory keyed by the interpreter and the requirements, and reused after. What this machine
 * lacks for it (python3, its venv module, the packages) comes back as a reason to skip, found before
 * the code under test runs.
 */

export type PythonVenv = { readonly python: string } | { readonly missing: string };

/** The TensorBoard venv's requirements: one list, so that every test reading TensorBoard shares one venv. */
export const TENSORBOARD_REQUIREMENTS: readonly string[] = ['tensorboard'];

/** Written last into a complete venv. */
const READY_FILE = 'autoprune-ready';
/** Long enough for pip to fetch and unpack grpcio-tools on a slow line. */
const INSTALL_TIMEOUT_MS = 10 * 60_000;

/** $XDG_CACHE_HOME/autoprune when set, else node_modules/.cache/autoprune (where npm tools keep theirs). */
function cacheRoot(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return xdg ? join(xdg, 'autoprune') : resolve('node_modules', '.cache', 'autoprune');
}

/** The venv's interpreter, made first if need be; or what is missing to make it. */
export async function pythonVenv(requirements: readonly string[]): Promise<PythonVenv> {
  const interpreter = await run('python3', ['-c', 'import sys; print(sys.executable, sys.version)']);
  if (!interpreter.ok) return { missing: `python3 does not run here (${interpreter.output})` };
  const key = createHash('sha256')
    .update(`${interpreter.output}\n${requirements.join('\n')}`)
    .digest('hex')
    .slice(0, 16);
  const home = join(cacheRoot(), `python-venv-${key}`);
  const python = join(home, 'bin', 'python');
  if (existsSync(join(home, READY_FILE))) return { python };
  // Made aside and renamed into place: one that stopped halfway is never taken for a venv.
  const staging = `${home}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(cacheRoot(), { recursive: true });
  try {
    const venv = await run('python3', ['-m', 'venv', staging]);
    if (!venv.ok)
      return { missing: `python3 -m venv fails, so its venv module or ensurepip is missing (Debian: apt-get install python3-venv): ${venv.output}` };
    const pip = await run(join(staging, 'bin', 'python'), [
      '-m',
      'pip',
      'install',
      '--quiet',
      '--disable-pip-version-check',
      '--retries',
      '1',
      ...requirements,
    ]);
    if (!pip.ok) return { missing: `pip cannot install ${requirements.join(', ')} (no package index or wheels reachable from here): ${pip.output}` };
    writeFileSync(join(staging, READY_FILE), `${requirements.join('\n')}\n`);
    try {
      renameSync(staging, home);
    } catch (error) {
      // Another test process made the same venv first.
      if (!existsSync(join(home, READY_FILE))) throw error;
    }
    return { python };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Runs a program to its end: whether it succeeded, and its output (the end of it, on one line, when it failed). */
function run(program: string, args: readonly string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolveRun) => {
    execFile(program, args, { timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (!error) return resolveRun({ ok: true, output: stdout.trim() });
      const said = `${stderr}\n${stdout}`.replace(/\s+/g, ' ').trim().slice(-600);
      resolveRun({ ok: false, output: said || error.message });
    });
  });
}
