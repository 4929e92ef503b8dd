/**
 * The tfjs-node native binding that `autoprune setup tensorflow` builds against the libtensorflow of a
 * TensorFlow wheel, kept outside the package (node_modules/.cache/autoprune/tensorflow-addon/<key>/) with
 * a record (`current.json`) of the one in use, and how the tensorflow backend loads it: the addon and
 * tfjs-node's kernels, registered with this program's tfjs, without tfjs-node's index (which insists on
 * an addon inside the package and switches the backend on import).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { InputError } from '../shared/errors.js';

/** The binding packages, GPU first: where both are set up, the GPU one is meant. */
export const TFJS_NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;
export type TfjsNodePackage = (typeof TFJS_NODE_PACKAGES)[number];

const require = createRequire(import.meta.url);

const builtAddonSchema = z.strictObject({
  package: z.enum(TFJS_NODE_PACKAGES),
  packageVersion: z.string().min(1),
  /** Holds lib/napi-v<N>/tfjs_binding.node and deps/lib (the addon's rpath), as a package build would. */
  directory: z.string().min(1),
  napiVersion: z.number().int().positive(),
  tensorflowVersion: z.string().min(1),
  /** The wheel or directory the library came from, and the sha256 the build is keyed by. */
  source: z.string().min(1),
  sourceSha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type BuiltAddon = z.infer<typeof builtAddonSchema>;

/** Thread pools of TensorFlow's eager context; unset means TensorFlow's own choice (the machine's cores). */
export interface TensorflowThreads {
  readonly intraOp?: number | undefined;
  readonly interOp?: number | undefined;
}

/** $XDG_CACHE_HOME/autoprune when set, else node_modules/.cache/autoprune beside the installed packages (not the working directory's). */
export function autopruneCacheRoot(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg) return join(xdg, 'autoprune');
  const nodeModules = dirname(dirname(dirname(require.resolve('@tensorflow/tfjs/package.json'))));
  return join(nodeModules, '.cache', 'autoprune');
}

export function addonCacheRoot(): string {
  return join(autopruneCacheRoot(), 'tensorflow-addon');
}

function recordFile(): string {
  return join(addonCacheRoot(), 'current.json');
}

export function addonFile(addon: Pick<BuiltAddon, 'directory' | 'napiVersion'>): string {
  return join(addon.directory, 'lib', `napi-v${addon.napiVersion}`, 'tfjs_binding.node');
}

/** The installed package's directory and version, or undefined when it is not installed. */
export function installedPackage(name: TfjsNodePackage): { directory: string; version: string; napiVersions: number[] } | undefined {
  let manifest: string;
  try {
    manifest = require.resolve(`${name}/package.json`);
  } catch {
    return undefined;
  }
  const json = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string; binary?: { napi_versions?: number[] } };
  return { directory: dirname(manifest), version: json.version, napiVersions: json.binary?.napi_versions ?? [] };
}

/** The addon the last setup built, or undefined when none was. */
export function readBuiltAddon(): BuiltAddon | undefined {
  const file = recordFile();
  if (!existsSync(file)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new InputError(file, 'cannot be read as JSON; run `autoprune setup tensorflow` again', { found: (error as Error).message });
  }
  const parsed = builtAddonSchema.safeParse(json);
  if (!parsed.success) throw new InputError(file, 'is not a record written by `autoprune setup tensorflow`; run it again', { found: parsed.error.message });
  return parsed.data;
}

/** Why `addon` cannot be loaded by this installation, or undefined when it can be. */
export function staleReason(addon: BuiltAddon): string | undefined {
  const installed = installedPackage(addon.package);
  if (!installed) return `it was built for ${addon.package}, which is no longer installed`;
  if (installed.version !== addon.packageVersion) return `it was built for ${addon.package} ${addon.packageVersion}, but ${installed.version} is installed`;
  if (!existsSync(addonFile(addon))) return `its addon ${addonFile(addon)} is gone`;
  return undefined;
}

/**
 * Loads `addon` into this process and registers the 'tensorflow' backend with it (not activated).
 * The thread counts reach TensorFlow through the environment, which it reads when the addon creates its
 * context: set before the first load, fixed for the life of the process after. The TF_NUM_*_THREADS
 * variables, where set, win over `threads` (a machine's setting over the run's). TensorFlow's INFO logging is
 * off unless TF_CPP_MIN_LOG_LEVEL says otherwise (the two lines it writes before absl logging starts cannot be).
 */
export function registerBuiltAddon(addon: BuiltAddon, threads: TensorflowThreads): { tensorflowVersion: string } {
  const environment: Record<string, number | undefined> = {
    TF_NUM_INTRAOP_THREADS: threads.intraOp,
    TF_NUM_INTEROP_THREADS: threads.interOp,
    TF_CPP_MIN_LOG_LEVEL: 1,
  };
  for (const [name, value] of Object.entries(environment)) {
    if (value !== undefined && process.env[name] === undefined) process.env[name] = String(value);
  }
  const bindings = require(addonFile(addon)) as { TF_Version: string };
  // tfjs-node's kernels, registered for 'tensorflow' in tfjs's global kernel registry.
  require(`${addon.package}/dist/register_all_kernels.js`);
  const { NodeJSKernelBackend } = require(`${addon.package}/dist/nodejs_kernel_backend.js`) as {
    NodeJSKernelBackend: new (bindings: unknown, packageName: string) => tf.KernelBackend;
  };
  // Priority 3, as tfjs-node registers it: above wasm and cpu.
  tf.registerBackend('tensorflow', () => new NodeJSKernelBackend(bindings, addon.package), 3);
  return { tensorflowVersion: bindings.TF_Version };
}
