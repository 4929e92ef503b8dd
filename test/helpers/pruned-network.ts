import * as tf from '@tensorflow/tfjs';
import type { Granularity } from '../../engine/gates.js';
import { ForwardContext } from '../../engine/layers.js';
import { buildNetwork, type ModelName } from '../../engine/models/index.js';
import type { Network } from '../../engine/network.js';
import { seededUniform } from '../../engine/random.js';

/**
 * Networks as a pruning run could leave them, without training: random weights, batch-norm statistics
 * and γ/β away from their initial values (so that a left-out channel's constant is not 0 after the norm),
 * and M drawn so that about a third of the gates are closed. Neuron gates follow the channel rule of
 * issue 12: ResNet-50 on each bottleneck's conv1 and conv2, MobileNetV2 on the expansion convs, the small
 * nets on every layer (their classifier too, whose closed logits must stay, zeroed).
 */

export const NEURON_RULES: Readonly<Partial<Record<ModelName, (layer: string) => boolean>>> = {
  resnet50: (layer) => /\.conv[12]$/.test(layer),
  mobilenetv2: (layer) => layer.endsWith('.expand'),
  lenet5: () => true,
  'vgg-cifar': () => true,
  lenet300: () => true,
  alexnet: (layer) => layer.startsWith('conv'),
};

export interface PrunedNetworkOptions {
  readonly inputShape: readonly [number, number, number];
  readonly numClasses: number;
  readonly seed: number;
  /** Fraction of gates closed (about). */
  readonly closed?: number;
}

export function randomlyPrunedNetwork(name: ModelName, options: PrunedNetworkOptions): Network {
  const rule = NEURON_RULES[name] ?? (() => false);
  const network = buildNetwork(name, {
    seed: options.seed,
    inputShape: options.inputShape,
    numClasses: options.numClasses,
    granularityOf: (layer): Granularity => (rule(layer) ? 'neuron' : 'weight'),
    maskInit: { mean: 0.5, std: 0.1 },
  });
  const uniform = seededUniform(options.seed, 'pruned-network');
  const draw = (size: number, low: number, high: number) => Float32Array.from({ length: size }, () => low + (high - low) * uniform());
  const closed = options.closed ?? 0.35;
  for (const p of network.parameters) {
    const size = p.variable.size;
    let values: Float32Array | undefined;
    if (p.role === 'aux') values = Float32Array.from({ length: size }, () => (uniform() < closed ? -0.5 : 0.5));
    else if (p.name.endsWith('.gamma')) values = draw(size, 0.5, 1.5);
    else if (p.name.endsWith('.beta') || p.name.endsWith('.moving_mean')) values = draw(size, -0.3, 0.3);
    else if (p.name.endsWith('.moving_variance')) values = draw(size, 0.5, 1.5);
    else if (p.name.endsWith('.bias')) values = draw(size, -0.1, 0.1);
    if (values) p.variable.assign(tf.tensor(values, p.variable.shape));
  }
  return network;
}

/** The masked network's logits in evaluation mode (frozen gates, moving statistics). */
export function maskedLogits(network: Network, images: tf.Tensor4D): Float32Array {
  const ctx = new ForwardContext(false, 'frozen', 'linear', 'sign', 0);
  return tf.tidy(() => network.apply(images, ctx).dataSync() as Float32Array);
}

/** Deterministic NHWC images in [-1, 1). */
export function randomImages(batch: number, shape: readonly [number, number, number], seed: number): tf.Tensor4D {
  const uniform = seededUniform(seed, 'images');
  const size = batch * shape[0] * shape[1] * shape[2];
  return tf.tensor4d(
    Float32Array.from({ length: size }, () => 2 * uniform() - 1),
    [batch, ...shape],
  );
}

/** Largest |a - b| relative to the largest |b| (at least 1). */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let error = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    error = Math.max(error, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return error / scale;
}
