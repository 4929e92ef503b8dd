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

/** Counts `network` under its current masks; `gated` false counts it as dense (dense phase). */
export function countNetwork(network: Network, gated = true): NetworkCount {
  const layers = network.maskedLayers.map((layer): LayerCount => {
    const params = layer.kernel.variable.size;
    const remaining = gated ? tf.tidy(() => tf.sum(layer.keepMask()).dataSync()[0]!) : params;
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

/** The fraction of prunable kernel weights kept in each regulariser group (conv, fc) and over all of them (`all`). */
export function keptFractionByGroup(network: Network, gated = true): Map<string, number> {
  const { layers } = countNetwork(network, gated);
  const sums = new Map<string, { params: number; remaining: number }>();
  for (const [index, layer] of layers.entries()) {
    for (const group of [network.maskedLayers[index]!.group, 'all']) {
      const sum = sums.get(group) ?? { params: 0, remaining: 0 };
      sums.set(group, { params: sum.params + layer.params, remaining: sum.remaining + layer.remaining });
    }
  }
  return new Map([...sums].map(([group, { params, remaining }]) => [group, params === 0 ? 1 : remaining / params]));
}
