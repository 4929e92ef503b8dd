import type * as tf from '@tensorflow/tfjs';
import { GraphBuilder, type NetworkGraph } from '../graph.js';
import { dropout, type ForwardContext, flatten, type MaskedDense } from '../layers.js';
import type { Network, NetworkOptions } from '../network.js';
import { featureCount, MaskedNetwork, type ModelDefaults, relu } from './common.js';

export const LENET300_DEFAULTS: ModelDefaults = { inputShape: [28, 28, 1], numClasses: 10 };

/**
 * LeNet-300-100: 784-300-100-10 fully connected with ReLU, dropout after both hidden layers and
 * truncated-normal biases, as in the first author's MNIST script.
 */
export class LeNet300 extends MaskedNetwork {
  readonly name = 'lenet300';
  private readonly fc1: MaskedDense;
  private readonly fc2: MaskedDense;
  private readonly fc3: MaskedDense;
  private readonly dropoutRate: number;

  constructor(options: NetworkOptions) {
    super(options, LENET300_DEFAULTS, { kernelInit: 'glorot-uniform', biasInit: 'truncated-normal', useBias: true });
    this.dropoutRate = options.dropout ?? 0.2;
    this.fc1 = this.layers.dense('fc1', { inputFeatures: featureCount(this.inputShape), units: 300 });
    this.fc2 = this.layers.dense('fc2', { inputFeatures: 300, units: 100 });
    this.fc3 = this.layers.dense('fc3', { inputFeatures: 100, units: this.numClasses });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    let x: tf.Tensor = flatten(images);
    for (const hidden of [this.fc1, this.fc2]) x = dropout(hidden.apply(x, ctx, relu), this.dropoutRate, ctx);
    return this.fc3.apply(x, ctx) as tf.Tensor2D;
  }

  graph(): NetworkGraph {
    const g = new GraphBuilder(this.inputShape);
    let x = g.flatten(g.input);
    for (const hidden of [this.fc1, this.fc2]) x = g.masked(hidden, x, (y) => g.activation('relu', y));
    return g.finish(g.masked(this.fc3, x));
  }
}

export function buildLeNet300(options: NetworkOptions): Network {
  return new LeNet300(options);
}
