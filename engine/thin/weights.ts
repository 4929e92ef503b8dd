import type * as tf from '@tensorflow/tfjs';
import type { Network } from '../network.js';

/**
 * A network's weights as plain arrays, read once from its variables: what the channel plan and the thin
 * model are computed from, so that both are pure functions of data.
 */

export interface LayerWeights {
  /** The kernel with its weight mask applied (pruned weights are 0), in the engine's layout. */
  readonly kernel: Float32Array;
  readonly kernelShape: readonly number[];
  readonly bias: Float32Array | undefined;
  /** Neuron gates: 1 where the unit is open. Undefined for weight granularity and for an ungated (dense) run. */
  readonly open: Uint8Array | undefined;
}

export interface BatchNormWeights {
  readonly gamma: Float32Array;
  readonly beta: Float32Array;
  readonly mean: Float32Array;
  readonly variance: Float32Array;
  readonly epsilon: number;
}

export interface NetworkWeights {
  /** By masked layer name. */
  readonly layers: ReadonlyMap<string, LayerWeights>;
  /** By batch-norm name. */
  readonly batchNorms: ReadonlyMap<string, BatchNormWeights>;
}

/** Reads `network`'s weights; `gated` false reads it as a dense phase leaves it (gates ignored). */
export function readWeights(network: Network, gated: boolean): NetworkWeights {
  const layers = new Map<string, LayerWeights>();
  for (const layer of network.maskedLayers) {
    const kernel = Float32Array.from(layer.kernel.variable.dataSync() as Float32Array);
    // A layer the channel rule leaves without gates has no M.
    const mask = gated ? (layer.mask?.variable.dataSync() as Float32Array | undefined) : undefined;
    // The step gate h(M) = [M ≥ 0] (gates.ts's stepGate), read here in plain loops: tfjs's cpu kernels are slow at this size.
    if (mask && layer.granularity === 'weight') mask.forEach((m, i) => (kernel[i] = m >= 0 ? kernel[i]! : 0));
    layers.set(layer.name, {
      kernel,
      kernelShape: [...layer.kernel.variable.shape],
      bias: layer.bias ? Float32Array.from(layer.bias.variable.dataSync() as Float32Array) : undefined,
      open: mask && layer.granularity === 'neuron' ? Uint8Array.from(mask, (m) => (m >= 0 ? 1 : 0)) : undefined,
    });
  }
  const batchNorms = new Map<string, BatchNormWeights>();
  for (const bn of network.batchNorms) {
    const read = (v: tf.Variable) => Float32Array.from(v.dataSync() as Float32Array);
    batchNorms.set(bn.name, {
      gamma: read(bn.gamma.variable),
      beta: read(bn.beta.variable),
      mean: read(bn.movingMean.variable),
      variance: read(bn.movingVariance.variable),
      epsilon: bn.epsilon,
    });
  }
  return { layers, batchNorms };
}
