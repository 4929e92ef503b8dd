import * as tf from '@tensorflow/tfjs';
import { GraphBuilder, type NetworkGraph } from '../graph.js';
import { dropout, type ForwardContext, flatten, type MaskedConv2D, type MaskedDense } from '../layers.js';
import type { Network, NetworkOptions } from '../network.js';
import { featureCount, MaskedNetwork, type ModelDefaults, pooledShape, relu } from './common.js';

export const LENET5_DEFAULTS: ModelDefaults = { inputShape: [28, 28, 1], numClasses: 10 };

/**
 * Caffe's LeNet-5 variant: conv 5x5 20 → pool → conv 5x5 50 → pool → fc 500 → fc 10, with dropout
 * (default 0.5, the customary rate on its single hidden fc layer) before the classifier. A neuron gate
 * sits before the pooling, which commutes with a per-channel 0/1 factor.
 */
export class LeNet5 extends MaskedNetwork {
  readonly name = 'lenet5';
  private readonly conv1: MaskedConv2D;
  private readonly conv2: MaskedConv2D;
  private readonly fc1: MaskedDense;
  private readonly fc2: MaskedDense;
  private readonly dropoutRate: number;

  constructor(options: NetworkOptions) {
    super(options, LENET5_DEFAULTS, { kernelInit: 'glorot-uniform', biasInit: 'truncated-normal', useBias: true });
    this.dropoutRate = options.dropout ?? 0.5;
    this.conv1 = this.layers.conv('conv1', { inputShape: this.inputShape, filters: 20, kernelSize: 5, padding: 'valid' });
    const pooled1 = pooledShape(this.conv1.outputShape, 2, 2, 'valid');
    this.conv2 = this.layers.conv('conv2', { inputShape: pooled1, filters: 50, kernelSize: 5, padding: 'valid' });
    const pooled2 = pooledShape(this.conv2.outputShape, 2, 2, 'valid');
    this.fc1 = this.layers.dense('fc1', { inputFeatures: featureCount(pooled2), units: 500 });
    this.fc2 = this.layers.dense('fc2', { inputFeatures: 500, units: this.numClasses });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    let x: tf.Tensor = images;
    for (const conv of [this.conv1, this.conv2]) x = tf.maxPool(conv.apply(x, ctx, relu) as tf.Tensor4D, 2, 2, 'valid');
    x = dropout(this.fc1.apply(flatten(x), ctx, relu), this.dropoutRate, ctx);
    return this.fc2.apply(x, ctx) as tf.Tensor2D;
  }

  graph(): NetworkGraph {
    const g = new GraphBuilder(this.inputShape);
    let x = g.input;
    for (const conv of [this.conv1, this.conv2]) {
      x = g.maxPool(
        g.masked(conv, x, (y) => g.activation('relu', y)),
        2,
        2,
        'valid',
        pooledShape(conv.outputShape, 2, 2, 'valid'),
      );
    }
    x = g.masked(this.fc1, g.flatten(x), (y) => g.activation('relu', y));
    return g.finish(g.masked(this.fc2, x));
  }
}

export function buildLeNet5(options: NetworkOptions): Network {
  return new LeNet5(options);
}
