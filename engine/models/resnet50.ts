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

/** A bottleneck ResNet's shape: its stem's channels and its bottlenecks in forward order. */
export interface BottleneckArchitecture {
  readonly name: string;
  readonly defaults: ModelDefaults;
  readonly stemChannels: number;
  readonly blocks: readonly BottleneckSpec[];
}

/**
 * A bottleneck ResNet as torchvision builds ResNet-50: a 7x7 stride-2 stem with batch norm and ReLU, a
 * 3x3 stride-2 max pool, the bottlenecks, global average pool and fc. Symmetric padding as torchvision's (3
 * on the stem, 1 on the 3x3 convs and the max pool); no conv biases.
 */
export class BottleneckResNet extends MaskedNetwork {
  readonly name: string;
  private readonly stem: NormalizedConv;
  private readonly blocks: Bottleneck[] = [];
  private readonly fc: MaskedDense;

  constructor(options: NetworkOptions, architecture: BottleneckArchitecture) {
    super(options, architecture.defaults, { kernelInit: 'he-normal', biasInit: 'zeros', useBias: false });
    this.name = architecture.name;
    const stem = { inputShape: this.inputShape, filters: architecture.stemChannels, kernelSize: 7, strides: 2, padding: 3 };
    this.stem = this.layers.convBn('conv1', 'bn1', stem, relu);
    let shape = pooledShape(this.stem.outputShape, 3, 2, 1);
    for (const spec of architecture.blocks) {
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

/**
 * torchvision's ResNet-50 (v1.5: stride on the 3x3 conv). Layer names follow torchvision: conv1/bn1,
 * layer{1-4}.{block}.conv{1-3}/bn{1-3}, layer{n}.0.downsample.0 (conv) and .1 (BN), fc, so that imported
 * torchvision weights give torchvision's logits.
 */
export class ResNet50 extends BottleneckResNet {
  constructor(options: NetworkOptions) {
    super(options, { name: 'resnet50', defaults: RESNET50_DEFAULTS, stemChannels: STEM_CHANNELS, blocks: bottlenecks() });
  }
}

export function buildResNet50(options: NetworkOptions): Network {
  return new ResNet50(options);
}
