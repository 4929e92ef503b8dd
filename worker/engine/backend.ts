import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../shared/errors.js';
import { registerWasmTrainingKernels } from './wasm-kernels.js';

/**
 * Chooses and activates the TensorFlow.js backend. `auto` takes the first that loads of tensorflow
 * (tfjs-node, GPU build first), webgpu (Dawn), wasm and cpu. The tfjs-node packages download libtensorflow
 * when installed, so they are optional: loaded when the user has installed one, never required.
 */

export type BackendName = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export const BACKEND_ORDER: readonly Exclude<BackendName, 'auto'>[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

class BackendUnavailable extends Error {}

const require = createRequire(import.meta.url);

async function loadTensorflow(): Promise<string> {
  for (const name of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      require.resolve(name);
    } catch {
      continue;
    }
    // The package registers the 'tensorflow' backend with this same tfjs-core when versions match.
    await import(name);
    if (await tf.setBackend('tensorflow')) return 'tensorflow';
    throw new BackendUnavailable(`${name} is installed but its backend did not start (is its tfjs version 4.22.0, like ours?)`);
  }
  throw new BackendUnavailable('neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed (npm install @tensorflow/tfjs-node-gpu where it can download libtensorflow)');
}

async function loadWebgpu(): Promise<string> {
  const dawn = (await import('webgpu')) as { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  const gpu = dawn.create([]);
  // Asking for an adapter first fails fast on machines without a GPU, before tfjs is involved.
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new BackendUnavailable('no WebGPU adapter (no GPU with a Vulkan driver found)');
  Object.assign(globalThis, dawn.globals);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  await import('@tensorflow/tfjs-backend-webgpu');
  if (await tf.setBackend('webgpu')) return 'webgpu';
  throw new BackendUnavailable('the WebGPU backend did not start');
}

async function loadWasm(): Promise<string> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // Point at the package's .wasm files explicitly: the default lookup is relative to the entry script.
  wasm.setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'))}/dist/`);
  registerWasmTrainingKernels();
  if (await tf.setBackend('wasm')) return 'wasm';
  throw new BackendUnavailable('the wasm backend did not start');
}

async function loadCpu(): Promise<string> {
  if (await tf.setBackend('cpu')) return 'cpu';
  throw new BackendUnavailable('the cpu backend did not start');
}

const LOADERS: Record<Exclude<BackendName, 'auto'>, () => Promise<string>> = {
  tensorflow: loadTensorflow,
  webgpu: loadWebgpu,
  wasm: loadWasm,
  cpu: loadCpu,
};

/** Activates `requested` and returns the backend in use; `notify` hears why `auto` skipped a backend. */
export async function initBackend(requested: BackendName, notify: (message: string) => void): Promise<string> {
  // PROD silences tfjs's console banner recommending tfjs-node; this module already says what is missing.
  tf.env().set('PROD', true);
  if (requested !== 'auto' && !(requested in LOADERS)) {
    throw new InputError('backend', 'unknown backend', { expected: ['auto', ...BACKEND_ORDER].join(', '), found: JSON.stringify(requested) });
  }
  const candidates = requested === 'auto' ? BACKEND_ORDER : [requested];
  for (const name of candidates) {
    try {
      const active = await LOADERS[name]();
      await tf.ready();
      return active;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (requested !== 'auto') throw new InputError(`backend ${name}`, `cannot be used: ${reason}`);
      notify(`backend ${name} skipped: ${reason}`);
    }
  }
  throw new InputError('backend', 'no TensorFlow.js backend could be started');
}
