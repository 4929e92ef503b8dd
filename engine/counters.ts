import * as tf from '@tensorflow/tfjs';
import type { Granularity } from './gates.js';
import type { Network } from './network.js';

/**
 * Parameter and FLOP counts, dense and effective (after masks). FLOPs are counted as multiply-accumulates
 * of the conv and dense kernels, the convention of the pruning literature (ResNet-50 ≈ 4.1 G).
 */
export interface LayerCount {
  readonly name: string;
  readonly shape: readonly number[];
  readonly granularity: Granularity;
  /** Weights of the prunable kernel. */
  readonly params: number;
  /** Kernel weights kept by the gates. */
  readonly remaining: number;
  readonly flops: number;
  readonly flopsEffective: number;
}

export interface NetworkCount {
  readonly layers: LayerCount[];
  /** Over the prunable kernels: compression = params / remaining. */
  readonly totals: {
    readonly params: number;
    readonly remaining: number;
    readonly compression: number;
    readonly flops: number;
    readonly flopsEffective: number;
  };
  /** Every trainable parameter of the model (kernels, biases, batch-norm γ and β). */
  readonly modelParams: number;
}

/**
 * Weights kept by each masked layer's gates, on the device (int32, one entry per layer), so that a caller
 * can read them together with other figures in one await.
 */
export function keptPerLayer(network: Network): tf.Tensor1D {
  return tf.tidy(() => tf.stack(network.maskedLayers.map((layer) => tf.sum(tf.cast(layer.keepMask(), 'int32')))) as tf.Tensor1D);
}

/** Counts `network` under its current masks; `gated` false counts it as dense (dense phase). */
export async function countNetwork(network: Network, gated = true): Promise<NetworkCount> {
  let kept: ArrayLike<number> | undefined;
  if (gated && network.maskedLayers.length > 0) {
    const onDevice = keptPerLayer(network);
    kept = await onDevice.data();
    onDevice.dispose();
  }
  const layers = network.maskedLayers.map((layer, i): LayerCount => {
    const params = layer.kernel.variable.size;
    const remaining = kept ? kept[i]! : params;
    return {
      name: layer.name,
      shape: layer.kernel.variable.shape,
      granularity: layer.granularity,
      params,
      remaining,
      flops: params * layer.positions,
      flopsEffective: remaining * layer.positions,
    };
  });
  const sum = (pick: (l: LayerCount) => number) => layers.reduce((acc, l) => acc + pick(l), 0);
  const params = sum((l) => l.params);
  const remaining = sum((l) => l.remaining);
  return {
    layers,
    totals: {
      params,
      remaining,
      compression: remaining === 0 ? Infinity : params / remaining,
      flops: sum((l) => l.flops),
      flopsEffective: sum((l) => l.flopsEffective),
    },
    modelParams: network.parameters.filter((p) => p.role === 'weight').reduce((acc, p) => acc + p.variable.size, 0),
  };
}
