import type * as tf from '@tensorflow/tfjs';
import { GraphBuilder, type NetworkGraph, type ValueId } from '../graph.js';
import { type FeatureShape, type ForwardContext, globalAveragePool, type MaskedDense, maxPool } from '../layers.js';
import type { Network, NetworkOptions } from '../network.js';
import { addRelu } from '../residual-join.js';
import { identity, type LayerFactory, MaskedNetwork, type ModelDefaults, type NormalizedConv, pooledShape, relu } from './common.js';

export const RESNET50_DEFAULTS: ModelDefaults = { inputShape: [224, 224, 3], numClasses: 1000 };

/** [width, blocks] of each stage; a block outputs 4 × width channels. */
const STAGES: ReadonlyArray<readonly [number, number]> = [
  [64, 3],
  [128, 4],
  [256, 6],
  [512, 3],
];
const EXPANSION = 4;
const STEM_CHANNELS = 64;

/** One bottleneck as torchvision builds it: its name prefix (`layer2.0`), width, stride and whether it has a projection shortcut. */
export interface BottleneckSpec {
  readonly name: string;
  readonly width: number;
  readonly strides: number;
  readonly projection: boolean;
}

/** ResNet-50's 16 bottlenecks in forward order; the model and the channel rule both read it. */
export function bottlenecks(): BottleneckSpec[] {
  const specs: BottleneckSpec[] = [];
  let channels = STEM_CHANNELS;
  STAGES.forEach(([width, blocks], stage) => {
    for (let block = 0; block < blocks; block++) {
      const strides = stage > 0 && block === 0 ? 2 : 1;
      specs.push({ name: `layer${stage + 1}.${block}`, width, strides, projection: strides !== 1 || channels !== width * EXPANSION });
      channels = width * EXPANSION;
    }
  });
  return specs;
}

/**
 * ResNet v1.5 bottleneck: 1x1 reduce → 3x3 (carrying the stride) → 1x1 expand, each with BN, plus a
 * projection shortcut (1x1 conv + BN) where the shape changes. The expand conv's neuron gate acts after
 * its BN, before the residual sum.
 */
export class Bottleneck {
  private readonly reduce: NormalizedConv;
  private readonly spatial: NormalizedConv;
  private readonly expand: NormalizedConv;
  private readonly projection: NormalizedConv | undefined;
  readonly outputShape: FeatureShape;

  constructor(layers: LayerFactory, spec: BottleneckSpec, inputShape: FeatureShape) {
    const { name, width, strides } = spec;
    const conv = (index: number, input: FeatureShape, filters: number, kernelSize: number, stride: number, activation = relu) =>
      layers.convBn(
        `${name}.conv${index}`,
        `${name}.bn${index}`,
        { inputShape: input, filters, kernelSize, strides: stride, padding: (kernelSize - 1) / 2 },
        activation,
      );
    this.reduce = conv(1, inputShape, width, 1, 1);
    this.spatial = conv(2, this.reduce.outputShape, width, 3, strides);
    this.expand = conv(3, this.spatial.outputShape, width * EXPANSION, 1, 1, identity);
    this.outputShape = this.expand.outputShape;
    this.projection = spec.projection
      ? layers.convBn(`${name}.downsample.0`, `${name}.downsample.1`, { inputShape, filters: width * EXPANSION, kernelSize: 1, strides, padding: 0 }, identity)
      : undefined;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const residual = this.expand.apply(this.spatial.apply(this.reduce.apply(x, ctx), ctx), ctx);
    const shortcut = this.projection ? this.projection.apply(x, ctx) : x;
    return addRelu(residual, shortcut);
  }

  trace(g: GraphBuilder, x: ValueId): ValueId {
    const residual = this.expand.trace(g, this.spatial.trace(g, this.reduce.trace(g, x)));
    const shortcut = this.projection ? this.projection.trace(g, x) : x;
    return g.activation('relu', g.add(residual, shortcut));
  }
}

/**
 * torchvision's ResNet-50 (v1.5: stride on the 3x3 conv) with torchvision's symmetric padding (3 on the
 * 7x7 stem, 1 on the 3x3 convs and the max pool), so that imported torchvision weights give torchvision's
 * logits. No conv biases. Layer names follow torchvision: conv1/bn1, layer{1-4}.{block}.conv{1-3}/bn{1-3},
 * layer{n}.0.downsample.0 (conv) and .1 (BN), fc.
 */
export class ResNet50 extends MaskedNetwork {
  readonly name = 'resnet50';
  private readonly stem: NormalizedConv;
  private readonly blocks: Bottleneck[] = [];
  private readonly fc: MaskedDense;

  constructor(options: NetworkOptions) {
    super(options, RESNET50_DEFAULTS, { kernelInit: 'he-normal', biasInit: 'zeros', useBias: false });
    this.stem = this.layers.convBn('conv1', 'bn1', { inputShape: this.inputShape, filters: STEM_CHANNELS, kernelSize: 7, strides: 2, padding: 3 }, relu);
    let shape = pooledShape(this.stem.outputShape, 3, 2, 1);
    for (const spec of bottlenecks()) {
      const bottleneck = new Bottleneck(this.layers, spec, shape);
      this.blocks.push(bottleneck);
      shape = bottleneck.outputShape;
    }
    this.fc = this.layers.dense('fc', { inputFeatures: shape[2]!, units: this.numClasses, useBias: true });
  }

  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
    let x: tf.Tensor = maxPool(this.stem.apply(images, ctx) as tf.Tensor4D, 3, 2, 1);
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

export function buildResNet50(options: NetworkOptions): Network {
  return new ResNet50(options);
}
