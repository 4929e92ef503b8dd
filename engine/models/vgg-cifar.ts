import * as tf from '@tensorflow/tfjs';
import { GraphBuilder, type NetworkGraph } from '../graph.js';
import { type BatchNorm, dropout, type FeatureShape, type ForwardContext, flatten, type MaskedDense } from '../layers.js';
import type { Network, NetworkOptions } from '../network.js';
import { featureCount, MaskedNetwork, type ModelDefaults, type NormalizedConv, pooledShape, relu } from './common.js';

export const VGG_CIFAR_DEFAULTS: ModelDefaults = { inputShape: [32, 32, 3], numClasses: 10 };

/** Filters of each 3x3 conv; 'pool' is a 2x2 max pool. */
const FEATURES: ReadonlyArray<number | 'pool'> = [64, 64, 'pool', 128, 128, 'pool', 256, 256, 256, 'pool', 512, 512, 512, 'pool', 512, 512, 512, 'pool'];

/**
 * The VGG-16 of the CIFAR-10 pruning literature (Zagoruyko's cifar.torch as adapted by Li et al.,
 * "Pruning Filters for Efficient ConvNets"): 13 conv 3x3 → BN → ReLU, then fc 512 → BN → ReLU →
 * dropout → fc 10. Conv biases are left out since BN follows; the fc layers keep theirs (as in the
 * common PyTorch port). Dropout (default 0.5, cifar.torch's rate) stays only on the hidden fc layer.
 * Layers: conv1…conv13 (BN conv1.bn…), fc1 (BN fc1.bn), fc2.
 */
export class VggCifar extends MaskedNetwork {
  readonly name = 'vgg-cifar';
  /** A conv stage, or null for a max pool. */
  private readonly features: Array<NormalizedConv | null> = [];
  private readonly fc1: MaskedDense;
  private readonly fc1Bn: BatchNorm;
  private readonly fc2: MaskedDense;
  private readonly dropoutRate: number;

  constructor(options: NetworkOptions) {
    super(options, VGG_CIFAR_DEFAULTS, { kernelInit: 'he-normal', biasInit: 'zeros', useBias: true });
    this.dropoutRate = options.dropout ?? 0.5;
    let shape: FeatureShape = this.inputShape;
    let convIndex = 0;
    for (const stage of FEATURES) {
      if (stage === 'pool') {
        this.features.push(null);
        shape = pooledShape(shape, 2, 2, 'valid');
        continue;
      }
      const name = `conv${++convIndex}`;
      const conv = this.layers.convBn(name, `${name}.bn`, { inputShape: shape, filters: stage, kernelSize: 3, useBias: false }, relu);
      this.features.push(conv);
      shape = conv.outputShape;
    }
    this.fc1 = this.layers.dense('fc1', { inputFeatures: featureCount(shape), units: 512 });
    this.fc1Bn = this.layers.batchNorm('fc1.bn', 512);
    this.fc2 = this.layers.dense('fc2', { inputFeatures: 512, units: this.numClasses });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    let x: tf.Tensor = images;
    for (const stage of this.features) x = stage ? stage.apply(x, ctx) : tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid');
    x = this.fc1.apply(flatten(x), ctx, (y) => relu(this.fc1Bn.apply(y, ctx)));
    return this.fc2.apply(dropout(x, this.dropoutRate, ctx), ctx) as tf.Tensor2D;
  }

  graph(): NetworkGraph {
    const g = new GraphBuilder(this.inputShape);
    let x = g.input;
    for (const stage of this.features) x = stage ? stage.trace(g, x) : g.maxPool(x, 2, 2, 'valid', pooledShape(g.shapeOf(x), 2, 2, 'valid'));
    x = g.masked(this.fc1, g.flatten(x), (y) => g.activation('relu', g.batchNorm(this.fc1Bn, y)));
    return g.finish(g.masked(this.fc2, x));
  }
}

export function buildVggCifar(options: NetworkOptions): Network {
  return new VggCifar(options);
}
