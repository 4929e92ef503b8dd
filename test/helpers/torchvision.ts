import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * torchvision itself, through Debian's python3-torchvision on /usr/bin/python3 (test/run.sh installs it
 * when missing): the reference files of test/fixtures/torchvision/make_reference.py, made once and cached
 * by the script's hash, and the MAC counts of thinned networks (thin_macs.py).
 */

const PYTHON = '/usr/bin/python3';
const FIXTURES = resolve('test', 'fixtures', 'torchvision');
/** Building three networks and writing ~360 MB takes seconds; a loaded machine gets a wide margin. */
const SCRIPT_TIMEOUT_MS = 5 * 60_000;
const READY_FILE = 'ready';

/** undefined when torchvision imports; otherwise why it cannot be used here (a reason to skip). */
export async function torchvisionMissing(): Promise<string | undefined> {
  const probe = await python(['-c', 'import torch, torchvision']);
  return probe.ok ? undefined : `${PYTHON} cannot import torch and torchvision (Debian: apt-get install python3-torchvision): ${probe.output}`;
}

/** The directory of make_reference.py's files, made first if need be. */
export async function torchvisionReference(): Promise<string> {
  const script = join(FIXTURES, 'make_reference.py');
  const key = createHash('sha256').update(readFileSync(script)).digest('hex').slice(0, 16);
  const root = process.env.XDG_CACHE_HOME ? join(process.env.XDG_CACHE_HOME, 'autoprune') : resolve('node_modules', '.cache', 'autoprune');
  const home = join(root, `torchvision-reference-${key}`);
  if (existsSync(join(home, READY_FILE))) return home;
  const staging = `${home}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(staging, { recursive: true });
  try {
    const made = await python([script, staging]);
    if (!made.ok) throw new Error(`make_reference.py failed: ${made.output}`);
    writeFileSync(join(staging, READY_FILE), `${key}\n`);
    try {
      renameSync(staging, home);
    } catch (error) {
      // Another test process made the same files first.
      if (!existsSync(join(home, READY_FILE))) throw error;
    }
    return home;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

export interface ThinRequest {
  readonly model: 'resnet50' | 'mobilenetv2' | 'alexnet';
  readonly size: number;
  /** Output channels kept, by engine layer name. */
  readonly channels: Readonly<Record<string, number>>;
}

/** MACs of torchvision's network narrowed as `request` says, counted by thin_macs.py. */
export async function thinMacs(request: ThinRequest): Promise<number> {
  const counted = await python([join(FIXTURES, 'thin_macs.py')], JSON.stringify(request));
  if (!counted.ok) throw new Error(`thin_macs.py failed: ${counted.output}`);
  return Number(counted.output);
}

function python(args: readonly string[], input?: string): Promise<{ ok: boolean; output: string }> {
  return new Promise((done) => {
    const child = execFile(PYTHON, args, { timeout: SCRIPT_TIMEOUT_MS, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (!error) return done({ ok: true, output: stdout.trim() });
      done({ ok: false, output: `${stderr}\n${stdout}`.replace(/\s+/g, ' ').trim().slice(-600) || error.message });
    });
    child.stdin?.end(input ?? '');
  });
}
