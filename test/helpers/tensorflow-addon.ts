import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readBuiltAddon, staleReason } from '../../engine/tensorflow-addon.js';

/**
 * The tensorflow backend's binding for the tests: built by `autoprune setup tensorflow` (the wheel from pip's
 * index, cached by its sha256) when the cache has none that fits, once per process. What this machine lacks
 * for it (a compiler, Node's headers, the wheel on an index) comes back as a reason to skip, as setup names
 * it; a build or check that fails otherwise fails the test. `node tensorflow-addon.js` does the same from
 * test/run.sh, so that every test that runs with `auto` sees the same backend.
 */

export type TensorflowAddon = { readonly ready: true; readonly built: boolean } | { readonly missing: string };

/** Unpacking, compiling and checking take under a minute; a cold pip on a slow line, longer. */
const SETUP_TIMEOUT_MS = 20 * 60_000;
const cli = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

let ensured: Promise<TensorflowAddon> | undefined;

export function ensureTensorflowAddon(): Promise<TensorflowAddon> {
  ensured ??= ensure();
  return ensured;
}

async function ensure(): Promise<TensorflowAddon> {
  const built = readBuiltAddon();
  if (built && staleReason(built) === undefined) return { ready: true, built: false };
  return new Promise((resolveSetup, rejectSetup) => {
    execFile(process.execPath, [cli, 'setup', 'tensorflow'], { timeout: SETUP_TIMEOUT_MS, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (!error) return resolveSetup({ ready: true, built: true });
      // Exit status 2 with "missing" or pip's refusal is setup naming what the machine lacks.
      const said = stderr.trim().split('\n').pop() ?? '';
      if (error.code === 2 && /cannot build the binding; missing|pip could not fetch/.test(said)) return resolveSetup({ missing: said });
      rejectSetup(new Error(`autoprune setup tensorflow failed (${error.message.split('\n')[0]}):\n${stderr}${stdout}`));
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const addon = await ensureTensorflowAddon();
  console.log('missing' in addon ? `tensorflow backend not set up: ${addon.missing}` : `tensorflow backend ready${addon.built ? ' (built now)' : ''}`);
}
