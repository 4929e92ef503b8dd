import * as tf from '@tensorflow/tfjs';
import type { FoldedActivation } from '../fused-batch-norm.js';
import type { ActivationKind, GraphBuilder, NetworkGraph, ValueId } from '../graph.js';
import {
  BatchNorm,
  type BiasInit,
  type ConvOptions,
  type DenseOptions,
  type DepthwiseOptions,
  type FeatureShape,
  type ForwardContext,
  type KernelInit,
  MaskedConv2D,
  MaskedDense,
  MaskedDepthwiseConv2D,
  type MaskedLayer,
  type MaskedLayerOptions,
  type Padding,
  type Parameter,
  windowOutputLength,
} from '../layers.js';
import { collectParameters, type Network, type NetworkOptions } from '../network.js';

/** Building blocks shared by the model definitions. */

export type ImageShape = readonly [number, number, number];

/** What a model is built for when the options do not say. */
export interface ModelDefaults {
  readonly inputShape: ImageShape;
  readonly numClasses: number;
}

/** Initialisers and bias usage of a model's layers unless a layer overrides them. */
export interface LayerDefaults {
  readonly kernelInit: KernelInit;
  readonly biasInit: BiasInit;
  readonly useBias: boolean;
}

type LayerOverrides = Partial<Pick<MaskedLayerOptions, 'kernelInit' | 'biasInit' | 'useBias'>>;
type Config<T extends MaskedLayerOptions> = Omit<T, keyof MaskedLayerOptions> & LayerOverrides;

/**
 * An activation function, with its kind for the network's graph (engine/graph.ts) and, as `folded`, its
 * name to a batch norm that can apply it in the same pass.
 */
export type Activation = ((x: tf.Tensor) => tf.Tensor) & { readonly kind: ActivationKind; readonly folded: FoldedActivation };
export const relu: Activation = Object.assign((x: tf.Tensor) => tf.relu(x), { kind: 'relu' as const, folded: 'relu' as const });
export const relu6: Activation = Object.assign((x: tf.Tensor) => tf.relu6(x), { kind: 'relu6' as const, folded: 'relu6' as const });
export const identity: Activation = Object.assign((x: tf.Tensor) => x, { kind: 'identity' as const, folded: 'linear' as const });

/** Creates a network's layers from its options, recording them in forward order. */
export class LayerFactory {
  readonly maskedLayers: MaskedLayer[] = [];
  readonly batchNorms: BatchNorm[] = [];

  constructor(
    private readonly options: NetworkOptions,
    private readonly defaults: LayerDefaults,
  ) {}

  private common(name: string): MaskedLayerOptions {
    return {
      name,
      seed: this.options.seed,
      granularity: this.options.granularityOf(name),
      maskInit: this.options.maskInit,
      ...this.defaults,
    };
  }

  private masked<T extends MaskedLayer>(layer: T): T {
    this.maskedLayers.push(layer);
    return layer;
  }

  dense(name: string, config: Config<DenseOptions>): MaskedDense {
    return this.masked(new MaskedDense({ ...this.common(name), ...config }));
  }

  conv(name: string, config: Config<ConvOptions>): MaskedConv2D {
    return this.masked(new MaskedConv2D({ ...this.common(name), ...config }));
  }

  depthwise(name: string, config: Config<DepthwiseOptions>): MaskedDepthwiseConv2D {
    return this.masked(new MaskedDepthwiseConv2D({ ...this.common(name), ...config }));
  }

  batchNorm(name: string, channels: number): BatchNorm {
    const layer = new BatchNorm({ name, channels });
    this.batchNorms.push(layer);
    return layer;
  }

  /** A convolution followed by batch norm and an activation, gated as one unit. */
  convBn(convName: string, bnName: string, config: Config<ConvOptions>, activation: Activation): NormalizedConv {
    const conv = this.conv(convName, config);
    return new NormalizedConv(conv, this.batchNorm(bnName, conv.outputShape[2]!), activation);
  }

  depthwiseBn(convName: string, bnName: string, config: Config<DepthwiseOptions>, activation: Activation): NormalizedConv {
    const conv = this.depthwise(convName, config);
    return new NormalizedConv(conv, this.batchNorm(bnName, conv.outputShape[2]!), activation);
  }
}

/** conv → BN → activation; batch norm and activation run before a neuron gate (the layer's `post`). */
export class NormalizedConv {
  constructor(
    readonly conv: MaskedConv2D | MaskedDepthwiseConv2D,
    readonly bn: BatchNorm,
    private readonly activation: Activation,
  ) {}

  get outputShape(): FeatureShape {
    return this.conv.outputShape;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return this.conv.apply(x, ctx, (y) => this.bn.apply(y, ctx, this.activation.folded));
  }

  /** Records `apply` in a network graph. */
  trace(g: GraphBuilder, x: ValueId): ValueId {
    return g.masked(this.conv, x, (y) => g.activation(this.activation.kind, g.batchNorm(this.bn, y)));
  }
}

/**
 * Base of the model classes: resolves the input shape and class count, owns the layer factory, and
 * exposes the layers it created.
 */
export abstract class MaskedNetwork implements Network {
  abstract readonly name: string;
  readonly inputShape: ImageShape;
  readonly numClasses: number;
  protected readonly layers: LayerFactory;
  private collectedParameters: Parameter[] | undefined;

  protected constructor(options: NetworkOptions, defaults: ModelDefaults, layerDefaults: LayerDefaults) {
    this.inputShape = options.inputShape ?? defaults.inputShape;
    this.numClasses = options.numClasses ?? defaults.numClasses;
    this.layers = new LayerFactory(options, layerDefaults);
  }

  get maskedLayers(): readonly MaskedLayer[] {
    return this.layers.maskedLayers;
  }

  get batchNorms(): readonly BatchNorm[] {
    return this.layers.batchNorms;
  }

  /** Collected on first use, once the constructor has created every layer. */
  get parameters(): readonly Parameter[] {
    this.collectedParameters ??= collectParameters(this.maskedLayers, this.batchNorms);
    return this.collectedParameters;
  }

  abstract apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D;

  abstract graph(): NetworkGraph;
}

/** Output shape of a max pool over an [height, width, channels] feature map. */
export function pooledShape(shape: FeatureShape, window: number, stride: number, padding: Padding): FeatureShape {
  const [height, width, channels] = shape as [number, number, number];
  return [windowOutputLength(height, window, stride, padding), windowOutputLength(width, window, stride, padding), channels];
}

export function featureCount(shape: FeatureShape): number {
  return shape.reduce((product, length) => product * length, 1);
}
