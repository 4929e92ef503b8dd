import * as tf from '@tensorflow/tfjs';

/** Registers the kernels not yet registered for their backend (safe to call again). */
export function registerMissing(configs: readonly tf.KernelConfig[]): void {
  for (const config of configs) if (tf.getKernel(config.kernelName, config.backendName) === undefined) tf.registerKernel(config);
}
