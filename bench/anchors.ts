import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * The reference scripts benchmarks compare against (../shared/anchors beside the checkout, or
 * AUTOPRUNE_ANCHORS), run in the same benchmark run so that both figures come from the same machine state.
 */
export function anchorsDir(): string | undefined {
  const candidates = [process.env.AUTOPRUNE_ANCHORS, resolve('..', 'shared', 'anchors'), resolve('shared', 'anchors')];
  return candidates.find((dir): dir is string => dir !== undefined && existsSync(dir));
}

/** AUTOPRUNE_PYTHON if set (a GPU host's PyTorch), else Debian's python3.11 (where python3-torch installs), else python3 on PATH. */
export function python(): string {
  return process.env.AUTOPRUNE_PYTHON ?? (existsSync('/usr/bin/python3.11') ? '/usr/bin/python3.11' : 'python3');
}

/** Runs an anchor script; returns its stdout, or why it could not run. */
export function runAnchor(script: string, args: string[], timeoutMs: number): { ok: true; stdout: string } | { ok: false; reason: string } {
  const dir = anchorsDir();
  if (!dir) return { ok: false, reason: 'anchors directory not found (set AUTOPRUNE_ANCHORS)' };
  const result = spawnSync(python(), [resolve(dir, script), ...args], { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, PYTHONUNBUFFERED: '1' } });
  if (result.status !== 0) return { ok: false, reason: (result.stderr || result.error?.message || `exit ${result.status}`).trim().split('\n').slice(-1)[0]! };
  return { ok: true, stdout: result.stdout };
}
