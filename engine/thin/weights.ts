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

/**
 * Reads `network`'s weights; `gated` false reads it as a dense phase leaves it (gates ignored). Read with
 * one await (a GPU backend has no synchronous read in Node).
 */
export async function readWeights(network: Network, gated: boolean): Promise<NetworkWeights> {
  const read = (v: tf.Variable | undefined) => (v ? (v.data() as Promise<Float32Array>) : Promise.resolve(undefined));
  const [layerValues, batchNormValues] = await Promise.all([
    Promise.all(
      network.maskedLayers.map((layer) =>
        // A layer the channel rule leaves without gates has no M.
        Promise.all([read(layer.kernel.variable), read(layer.bias?.variable), gated ? read(layer.mask?.variable) : Promise.resolve(undefined)]),
      ),
    ),
    Promise.all(network.batchNorms.map((bn) => Promise.all([bn.gamma, bn.beta, bn.movingMean, bn.movingVariance].map((p) => read(p.variable))))),
  ]);
  const layers = new Map<string, LayerWeights>();
  network.maskedLayers.forEach((layer, i) => {
    const [kernelValues, bias, mask] = layerValues[i]!;
    const kernel = Float32Array.from(kernelValues!);
    // The step gate h(M) = [M ≥ 0] (gates.ts's stepGate), read here in plain loops: tfjs's cpu kernels are slow at this size.
    if (mask && layer.granularity === 'weight') mask.forEach((m, i) => (kernel[i] = m >= 0 ? kernel[i]! : 0));
    layers.set(layer.name, {
      kernel,
      kernelShape: [...layer.kernel.variable.shape],
      bias: bias ? Float32Array.from(bias) : undefined,
      open: mask && layer.granularity === 'neuron' ? Uint8Array.from(mask, (m) => (m >= 0 ? 1 : 0)) : undefined,
    });
  });
  const batchNorms = new Map<string, BatchNormWeights>();
  network.batchNorms.forEach((bn, i) => {
    const [gamma, beta, mean, variance] = batchNormValues[i]!.map((values) => Float32Array.from(values!));
    batchNorms.set(bn.name, { gamma: gamma!, beta: beta!, mean: mean!, variance: variance!, epsilon: bn.epsilon });
  });
  return { layers, batchNorms };
}
