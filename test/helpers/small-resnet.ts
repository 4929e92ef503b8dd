import * as tf from '@tensorflow/tfjs';
import { GraphBuilder, type NetworkGraph } from '../../engine/graph.js';
import { type ForwardContext, globalAveragePool, type MaskedDense } from '../../engine/layers.js';
import { MaskedNetwork, type NormalizedConv, pooledShape, relu } from '../../engine/models/common.js';
import { Bottleneck } from '../../engine/models/resnet50.js';
import type { NetworkOptions } from '../../engine/network.js';

/**
 * ResNet-50's parts at a test's size: its 7x7 stride-2 stem with batch norm, max pool, two of its
 * bottleneck blocks (one with a projection shortcut, one carrying stride 2), global average pool and fc.
 * Every kind of kernel a ResNet-50 step runs (1x1, 3x3, 7x7 convolutions at strides 1 and 2, batch
 * norm, residual sums), on 16x16 images and 4 to 32 channels.
 */
export class SmallResNet extends MaskedNetwork {
  readonly name = 'small-resnet';
  private readonly stem: NormalizedConv;
  private readonly blocks: readonly Bottleneck[];
  private readonly fc: MaskedDense;

  constructor(options: NetworkOptions) {
    super(options, { inputShape: [16, 16, 3], numClasses: 10 }, { kernelInit: 'he-normal', biasInit: 'zeros', useBias: false });
    this.stem = this.layers.convBn('conv1', 'bn1', { inputShape: this.inputShape, filters: 8, kernelSize: 7, strides: 2, padding: 3 }, relu);
    const first = new Bottleneck(this.layers, { name: 'layer1.0', width: 4, strides: 1, projection: true }, pooledShape(this.stem.outputShape, 3, 2, 1));
    const second = new Bottleneck(this.layers, { name: 'layer2.0', width: 8, strides: 2, projection: true }, first.outputShape);
    this.blocks = [first, second];
    this.fc = this.layers.dense('fc', { inputFeatures: second.outputShape[2]!, units: this.numClasses, useBias: true });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    let x = tf.maxPool(this.stem.apply(images, ctx) as tf.Tensor4D, 3, 2, 1) as tf.Tensor;
    for (const block of this.blocks) x = block.apply(x, ctx);
    return this.fc.apply(globalAveragePool(x), ctx) as tf.Tensor2D;
  }

  graph(): NetworkGraph {
    const g = new GraphBuilder(this.inputShape);
    let x = g.maxPool(this.stem.trace(g, g.input), 3, 2, 1, pooledShape(this.stem.outputShape, 3, 2, 1));
    for (const block of this.blocks) x = block.trace(g, x);
    return g.finish(g.masked(this.fc, g.globalAveragePool(x)));
  }
}
