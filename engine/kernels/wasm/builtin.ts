import * as tf from '@tensorflow/tfjs';
// Registers the built-in wasm kernels, which this module reads when it is loaded.
import '@tensorflow/tfjs-backend-wasm';

/**
 * The built-in wasm kernel `kernelName`, as tfjs-backend-wasm registered it: a replacement that
 * still calls it in some cases wraps its kernelFunc and keeps its setupFunc (which prepares the
 * wasm functions that the kernelFunc calls).
 */
export function builtinWasmKernel(kernelName: string): tf.KernelConfig {
  const builtin = tf.getKernel(kernelName, 'wasm');
  if (builtin === undefined) throw new Error(`wasm backend has no '${kernelName}' kernel to replace`);
  return builtin;
}
