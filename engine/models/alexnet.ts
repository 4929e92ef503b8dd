import * as tf from '@tensorflow/tfjs';
import { InputError } from '../../shared/errors.js';
import { GraphBuilder, type NetworkGraph } from '../graph.js';
import { adaptiveAveragePool, dropout, type FeatureShape, type ForwardContext, flatten, type MaskedConv2D, type MaskedDense } from '../layers.js';
import type { Network, NetworkOptions } from '../network.js';
import { MaskedNetwork, type ModelDefaults, pooledShape, relu } from './common.js';

export const ALEXNET_DEFAULTS: ModelDefaults = { inputShape: [224, 224, 3], numClasses: 1000 };

/** [filters, kernel size, stride, padding, max pool after it] of torchvision's single-tower AlexNet. */
const CONVS: ReadonlyArray<readonly [number, number, number, number, boolean]> = [
  [64, 11, 4, 2, true],
  [192, 5, 1, 2, true],
  [384, 3, 1, 1, false],
  [256, 3, 1, 1, false],
  [256, 3, 1, 1, true],
];

/** Side of the map the adaptive average pool gives fc6, whatever the input size (torchvision's). */
export const ALEXNET_POOLED = 6;

/**
 * torchvision's AlexNet: five convs with 3x3/2 max pools after conv1, conv2 and conv5 (6x6x256 at
 * 224), an adaptive average pool to 6x6 (the identity at 224; at smaller inputs it repeats cells, so
 * fc6 always takes 6·6·256 features), then dropout → fc6 4096 → dropout → fc7 4096 → fc8. Layers:
 * conv1…conv5, fc6, fc7, fc8 (Caffe's names, those of the pruning literature's per-layer tables).
 */
export class AlexNet extends MaskedNetwork {
  readonly name = 'alexnet';
  private readonly convs: Array<{ readonly conv: MaskedConv2D; readonly pooled: boolean }> = [];
  private readonly fc6: MaskedDense;
  private readonly fc7: MaskedDense;
  private readonly fc8: MaskedDense;
  private readonly dropoutRate: number;

  constructor(options: NetworkOptions) {
    super(options, ALEXNET_DEFAULTS, { kernelInit: 'he-normal', biasInit: 'zeros', useBias: true });
    this.dropoutRate = options.dropout ?? 0.5;
    let shape: FeatureShape = this.inputShape;
    CONVS.forEach(([filters, kernelSize, strides, padding, pooled], i) => {
      const conv = this.layers.conv(`conv${i + 1}`, { inputShape: shape, filters, kernelSize, strides, padding });
      this.convs.push({ conv, pooled });
      shape = pooled ? pooledShape(conv.outputShape, 3, 2, 'valid') : conv.outputShape;
    });
    this.fc6 = this.layers.dense('fc6', { inputFeatures: ALEXNET_POOLED * ALEXNET_POOLED * shape[2]!, units: 4096 });
    this.fc7 = this.layers.dense('fc7', { inputFeatures: 4096, units: 4096 });
    this.fc8 = this.layers.dense('fc8', { inputFeatures: 4096, units: this.numClasses });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    let x: tf.Tensor = images;
    for (const { conv, pooled } of this.convs) {
      x = conv.apply(x, ctx, relu);
      if (pooled) x = tf.maxPool(x as tf.Tensor4D, 3, 2, 'valid');
    }
    x = flatten(adaptiveAveragePool(x as tf.Tensor4D, ALEXNET_POOLED));
    for (const hidden of [this.fc6, this.fc7]) x = hidden.apply(dropout(x, this.dropoutRate, ctx), ctx, relu);
    return this.fc8.apply(x, ctx) as tf.Tensor2D;
  }

  graph(): NetworkGraph {
    const g = new GraphBuilder(this.inputShape);
    let x = g.input;
    for (const { conv, pooled } of this.convs) {
      x = g.masked(conv, x, (y) => g.activation('relu', y));
      if (pooled) x = g.maxPool(x, 3, 2, 'valid', pooledShape(conv.outputShape, 3, 2, 'valid'));
    }
    // The adaptive pool is the identity only when the map is already 6x6 (a 224x224 input); the graph has no
    // operation for the general case, so a thin export of AlexNet at other sizes is refused here.
    const [height, width] = g.shapeOf(x);
    if (height !== ALEXNET_POOLED || width !== ALEXNET_POOLED)
      throw new InputError('model.inputShape', `AlexNet's graph (for thin export) needs conv5's pooled map to be ${ALEXNET_POOLED}x${ALEXNET_POOLED}`, {
        expected: '224x224 inputs',
        found: `${height}x${width} from ${this.inputShape.join('x')}`,
      });
    x = g.flatten(x);
    for (const hidden of [this.fc6, this.fc7]) x = g.masked(hidden, x, (y) => g.activation('relu', y));
    return g.finish(g.masked(this.fc8, x));
  }
}

export function buildAlexNet(options: NetworkOptions): Network {
  return new AlexNet(options);
}
