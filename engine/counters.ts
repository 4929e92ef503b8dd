import * as tf from '@tensorflow/tfjs';
import type { Gating, MaskedLayer } from './layers.js';
import { type ChannelGroup, channelRule } from './models/channel-gates.js';
import { isModelName } from './models/index.js';
import type { Network } from './network.js';

/**
 * Parameter and FLOP counts, dense and effective (after masks). FLOPs are counted as multiply-accumulates
 * of the conv and dense kernels, the convention of the pruning literature (ResNet-50 ≈ 4.1 G).
 */
export interface LayerCount {
  readonly name: string;
  readonly shape: readonly number[];
  readonly granularity: Gating;
  /** Weights of the prunable kernel. */
  readonly params: number;
  /** Kernel weights kept by the layer's own gates. */
  readonly remaining: number;
  readonly flops: number;
  /**
   * MACs left once closed gates are removed: the layer's own, and downstream those of every input
   * channel (and depthwise filter) that a closed channel upstream removes (models/channel-gates.ts).
   */
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
  const kept = gated && network.maskedLayers.length > 0 ? await readKept(network) : undefined;
  const layers = network.maskedLayers.map((layer, i): LayerCount => {
    const params = layer.kernel.variable.size;
    const remaining = kept ? kept.own[i]! : params;
    const effective = kept ? kept.withUpstream[i]! : params;
    return {
      name: layer.name,
      shape: layer.kernel.variable.shape,
      granularity: layer.granularity,
      params,
      remaining,
      flops: params * layer.positions,
      flopsEffective: effective * layer.positions,
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

/**
 * Per masked layer, the weights its own gates keep and those that stay once the channels closed upstream
 * are removed too (closedInputs), computed on the device and read in one await.
 */
async function readKept(network: Network): Promise<{ own: ArrayLike<number>; withUpstream: ArrayLike<number> }> {
  const upstream = closedInputs(network);
  const onDevice = tf.tidy(() => {
    const sums = network.maskedLayers.map((layer) => {
      const own = tf.cast(layer.keepMask(), 'int32');
      const withUpstream = (upstream.get(layer.name) ?? []).reduce((keep, open) => tf.mul(keep, tf.cast(inputChannelMask(layer, open), 'int32')), own);
      return [tf.sum(own), tf.sum(withUpstream)];
    });
    return tf.stack([...sums.map(([own]) => own!), ...sums.map(([, withUpstream]) => withUpstream!)]);
  });
  for (const vectors of upstream.values()) for (const v of vectors) v.dispose();
  try {
    const values = await onDevice.data();
    const layers = network.maskedLayers.length;
    return { own: values.subarray(0, layers), withUpstream: values.subarray(layers) };
  } finally {
    onDevice.dispose();
  }
}

/**
 * For each layer, the 0/1 vectors of its input channels that stay (one per channel group feeding it):
 * a neuron-gated layer's closed units remove the matching input channels of its consumer and, in
 * MobileNetV2, the depthwise filters that carry them.
 */
function closedInputs(network: Network): Map<string, tf.Tensor1D[]> {
  const byName = new Map(network.maskedLayers.map((l) => [l.name, l]));
  const inputs = new Map<string, tf.Tensor1D[]>();
  const add = (layer: string, open: tf.Tensor1D) => inputs.set(layer, [...(inputs.get(layer) ?? []), open]);
  const groups: readonly ChannelGroup[] = isModelName(network.name) ? channelRule(network.name).groups : [];
  for (const group of groups) {
    const gated = byName.get(group.layer);
    if (gated?.granularity !== 'neuron') continue;
    const open = gated.openUnits();
    if (group.depthwise) add(group.depthwise.layer, tf.clone(open));
    add(group.consumer, open);
  }
  return inputs;
}

/** `open` (one entry per input channel) broadcast over `layer`'s kernel: dense inputs follow NHWC flatten order. */
function inputChannelMask(layer: MaskedLayer, open: tf.Tensor1D): tf.Tensor {
  const shape = layer.kernel.variable.shape;
  const channels = open.size;
  if (shape.length === 2) {
    const positions = shape[0]! / channels;
    return tf.reshape(tf.tile(open, [positions]), [shape[0]!, 1]);
  }
  // conv [kh, kw, in, out] and depthwise [kh, kw, channels, multiplier]: axis 2 either way.
  return tf.reshape(open, [1, 1, channels, 1]);
}

/** The fraction of prunable kernel weights kept in each regulariser group (conv, fc) and over all of them (`all`). */
export async function keptFractionByGroup(network: Network, gated = true): Promise<Map<string, number>> {
  const { layers } = await countNetwork(network, gated);
  const sums = new Map<string, { params: number; remaining: number }>();
  for (const [index, layer] of layers.entries()) {
    for (const group of [network.maskedLayers[index]!.group, 'all']) {
      const sum = sums.get(group) ?? { params: 0, remaining: 0 };
      sums.set(group, { params: sum.params + layer.params, remaining: sum.remaining + layer.remaining });
    }
  }
  return new Map([...sums].map(([group, { params, remaining }]) => [group, params === 0 ? 1 : remaining / params]));
}
