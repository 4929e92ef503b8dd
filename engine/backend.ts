/**
 * Picks and activates the TensorFlow.js backend a run computes on.
 *
 * Backends other than cpu are loaded on demand: the native ones ('tensorflow', 'webgpu') need
 * things that a machine may not have (libtensorflow, a GPU), and under 'auto' their absence is
 * only a notice, while asking for one explicitly makes it an error that says what is missing.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { describeValue, InputError } from '../shared/errors.js';
import { installedPackage, readBuiltAddon, registerBuiltAddon, staleReason, type TensorflowThreads, TFJS_NODE_PACKAGES } from './tensorflow-addon.js';

export type BackendName = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

type ConcreteBackend = Exclude<BackendName, 'auto'>;

/** Settings of the backends that have any. */
/** The order 'auto' tries, fastest first; cpu always works. */
const AUTO_ORDER: readonly ConcreteBackend[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

/** A GPU stack that answers at all answers in milliseconds; this only bounds a hung driver. */
const ADAPTER_TIMEOUT_MS = 10_000;

export interface BackendOptions {
  /**
   * Accept a software WebGPU adapter (lavapipe, SwiftShader). Off by default, since one is slower
   * than wasm; tests turn it on to check the webgpu kernels on machines without a GPU.
   */
  readonly allowSoftwareWebGpu?: boolean;
  /** Let the webgpu kernels with a half-precision variant use it, where the device has 'shader-f16'. */
  readonly webGpuF16?: boolean;
  /** The tensorflow backend's thread pools; they take effect only on its first activation in a process. */
  readonly tensorflowThreads?: TensorflowThreads | undefined;
}

/** The environment variable that turns `allowSoftwareWebGpu` on for a process ('1'). */
export const ALLOW_SOFTWARE_WEBGPU_ENV = 'AUTOPRUNE_WEBGPU_ALLOW_SOFTWARE';

/** The environment variable that turns `webGpuF16` on for a process ('1'). */
export const WEBGPU_F16_ENV = 'AUTOPRUNE_WEBGPU_F16';

/** What of a run config the backend options come from (its operational `webgpu` and `tensorflow` keys). */
export interface BackendSettings {
  readonly webgpu: { readonly allowSoftwareAdapter: boolean };
  readonly tensorflow?: { readonly intraOpThreads?: number | undefined; readonly interOpThreads?: number | undefined };
}

/** The backend options a run asks for: its config's `webgpu` and `tensorflow` settings, or the environment variables. */
export function backendOptions(settings: BackendSettings, env: NodeJS.ProcessEnv): BackendOptions {
  return {
    allowSoftwareWebGpu: settings.webgpu.allowSoftwareAdapter || env[ALLOW_SOFTWARE_WEBGPU_ENV] === '1',
    webGpuF16: env[WEBGPU_F16_ENV] === '1',
    tensorflowThreads: { intraOp: settings.tensorflow?.intraOpThreads, interOp: settings.tensorflow?.interOpThreads },
  };
}

/** Why a backend cannot run on this machine (a fact about the machine, not a bug). */
class BackendUnavailable extends Error {}

/**
 * Activates `requested` ('auto': the first of tensorflow, webgpu, wasm, cpu that works here) and
 * returns the name of the backend now in use. `notify` receives one line per backend that 'auto'
 * skipped.
 */
export async function initBackend(requested: BackendName, notify: (message: string) => void, options: BackendOptions = {}): Promise<string> {
  if (requested === 'auto') {
    for (const name of AUTO_ORDER) {
      try {
        await activate(name, options);
        return tf.getBackend();
      } catch (error) {
        if (!(error instanceof BackendUnavailable)) throw error;
        notify(`backend '${name}' skipped: ${error.message}`);
      }
    }
    throw new Error('no TensorFlow.js backend could be activated, not even cpu');
  }
  if (!(AUTO_ORDER as readonly string[]).includes(requested)) {
    throw new InputError('backend', 'unknown backend', { expected: `one of auto, ${AUTO_ORDER.join(', ')}`, found: describeValue(requested) });
  }
  try {
    await activate(requested, options);
  } catch (error) {
    if (error instanceof BackendUnavailable) throw new InputError('backend', `'${requested}' cannot be used here: ${error.message}`);
    throw error;
  }
  return tf.getBackend();
}

const OPTIONAL_ACTIVATORS: Readonly<Record<Exclude<ConcreteBackend, 'cpu'>, (options: BackendOptions) => Promise<void>>> = {
  tensorflow: activateTensorflow,
  webgpu: activateWebGpu,
  wasm: activateWasm,
};

async function activate(name: ConcreteBackend, options: BackendOptions): Promise<void> {
  if (name === 'cpu') return activateCpu();
  try {
    await OPTIONAL_ACTIVATORS[name](options);
  } catch (error) {
    // Whatever breaks in an optional accelerated backend, the run can still go on with the next one.
    if (error instanceof BackendUnavailable) throw error;
    throw new BackendUnavailable(`failed to start: ${firstLine(error)}`);
  }
}

async function setBackend(name: string): Promise<void> {
  // tfjs logs the cause itself when a backend's initialisation fails.
  if (!(await tf.setBackend(name))) throw new BackendUnavailable(`the ${name} backend failed to initialise`);
}

/**
 * The native TensorFlow binding: the one `autoprune setup tensorflow` built, else a tfjs-node package
 * whose own install script built or downloaded its addon.
 */
async function activateTensorflow(options: BackendOptions): Promise<void> {
  if (tf.findBackendFactory('tensorflow') === null) registerTensorflow(options);
  await setBackend('tensorflow');
}

const SETUP_HINT = 'build it with `autoprune setup tensorflow` (see README, "The tensorflow backend")';

function registerTensorflow(options: BackendOptions): void {
  const built = readBuiltAddon();
  if (built) {
    const stale = staleReason(built);
    if (stale) throw new BackendUnavailable(`the binding set up earlier cannot be used: ${stale}; ${SETUP_HINT}`);
    try {
      registerBuiltAddon(built, options.tensorflowThreads ?? {});
    } catch (error) {
      throw new BackendUnavailable(`the binding built by \`autoprune setup tensorflow\` failed to load: ${firstLine(error)}; ${SETUP_HINT}`);
    }
    return;
  }
  const installed = TFJS_NODE_PACKAGES.find((name) => installedPackage(name) !== undefined);
  if (!installed)
    throw new BackendUnavailable(`@tensorflow/tfjs-node is not installed; to use it: npm install @tensorflow/tfjs-node@${tf.version_core}, then ${SETUP_HINT}`);
  try {
    // The package as published: its index loads the addon its install script put inside it.
    createRequire(import.meta.url)(installed);
  } catch (error) {
    if (/tfjs_binding\.node\) can not be found/.test(String((error as Error)?.message))) {
      throw new BackendUnavailable(`${installed} is installed without its native binding; ${SETUP_HINT}`);
    }
    throw new BackendUnavailable(`${installed} is installed but failed to load: ${firstLine(error)}`);
  }
  if (tf.findBackendFactory('tensorflow') === null) {
    // The binding registered itself with another copy of tfjs, which this program does not use.
    throw new BackendUnavailable(`the installed ${installed} does not match @tensorflow/tfjs ${tf.version_core}`);
  }
}

function firstLine(error: unknown): string {
  return String(error instanceof Error ? error.message : error).split('\n')[0]!;
}

/** WebGPU through Dawn's node binding (the `webgpu` package). */
async function activateWebGpu(options: BackendOptions): Promise<void> {
  const webgpu = await import('webgpu');
  // One Dawn instance per process: a backend made earlier keeps using the device of the instance that
  // navigator.gpu holds, and an instance that loses its last reference is collected under that device.
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu ?? webgpu.create([]);
  const adapter = await withTimeout(gpu.requestAdapter({ powerPreference: 'high-performance' }), ADAPTER_TIMEOUT_MS);
  if (adapter === null) throw new BackendUnavailable('no WebGPU adapter found (no usable GPU or driver)');
  // A software adapter (SwiftShader, lavapipe) would be slower than wasm.
  if (adapter.info?.isFallbackAdapter === true && options.allowSoftwareWebGpu !== true)
    throw new BackendUnavailable(
      `only a software WebGPU adapter was found (${adapter.info.description || adapter.info.vendor}); webgpu.allowSoftwareAdapter: true or ${ALLOW_SOFTWARE_WEBGPU_ENV}=1 accepts it`,
    );

  // tfjs-backend-webgpu reads navigator.gpu and the GPU* constants from the global scope, and
  // registers itself on import only if navigator.gpu is there.
  Object.assign(globalThis, webgpu.globals);
  const scope = globalThis as { navigator?: object };
  if (scope.navigator === undefined) {
    Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  }
  Object.defineProperty(scope.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  try {
    await import('@tensorflow/tfjs-backend-webgpu');
    const { registerWebGpuKernels, WEBGPU_F16_FLAG } = await import('./kernels/webgpu/index.js');
    registerWebGpuKernels();
    tf.env().set(WEBGPU_F16_FLAG, options.webGpuF16 === true);
    await setBackend('webgpu');
  } catch (error) {
    // While navigator.gpu holds it, Dawn keeps node from exiting.
    delete (scope.navigator as { gpu?: unknown }).gpu;
    throw error;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BackendUnavailable(`no answer from the GPU driver within ${ms / 1000} s`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * WebAssembly (XNNPACK), with the training kernels the package lacks. The package's node build
 * finds its .wasm files next to itself (its own __dirname), wherever this program runs from.
 */
async function activateWasm(): Promise<void> {
  const { registerWasmTrainingKernels, registerWasmSimdKernels } = await import('./kernels/wasm/index.js');
  registerWasmTrainingKernels();
  await setBackend('wasm');
  registerWasmSimdKernels(tf.backend() as BackendWasm);
}

/**
 * The pure-JavaScript backend, with autoprune's fused gate and Adam kernels. On its first tensor it prints a banner recommending tfjs-node (it
 * goes through tfjs's warn(), which production mode silences): that first tensor is made here with
 * production mode on, then the mode is restored, so that no other warning is lost.
 */
async function activateCpu(): Promise<void> {
  const { CPU_GATE_KERNELS } = await import('./kernels/host/autoprune-gate.js');
  const { CPU_ADAM_KERNEL } = await import('./kernels/host/adam.js');
  const { registerMissing } = await import('./kernels/host/register.js');
  registerMissing([...CPU_GATE_KERNELS, CPU_ADAM_KERNEL]);
  await setBackend('cpu');
  const production = tf.env().getBool('PROD');
  tf.env().set('PROD', true);
  try {
    tf.dispose(tf.zeros([1]));
  } finally {
    tf.env().set('PROD', production);
  }
}
