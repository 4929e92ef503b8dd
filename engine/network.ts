import type * as tf from '@tensorflow/tfjs';
import type { NetworkGraph } from './graph.js';
import type { BatchNorm, ForwardContext, Gating, MaskedLayer, MaskInit, Parameter } from './layers.js';

/** What a network is built from; every model builder takes the same options. */
export interface NetworkOptions {
  /** Run seed: parameters are initialised from it and their names. */
  readonly seed: number;
  /** Input [height, width, channels]; each model has its default. */
  readonly inputShape?: readonly [number, number, number];
  readonly numClasses?: number;
  /** How a prunable layer is gated, by its name. */
  readonly granularityOf: (layerName: string) => Gating;
  readonly maskInit: MaskInit;
  /** Dropout rate on the hidden fully connected layers; each model has its default. */
  readonly dropout?: number;
}

/** A network of masked layers. Parameters are created when it is built and freed by `dispose`. */
export interface Network {
  readonly name: string;
  readonly inputShape: readonly [number, number, number];
  readonly numClasses: number;
  /** Prunable layers in forward order. */
  readonly maskedLayers: readonly MaskedLayer[];
  readonly batchNorms: readonly BatchNorm[];
  /** Every parameter once, in a stable order, names unique. */
  readonly parameters: readonly Parameter[];
  /** Logits for a batch of NHWC images. */
  apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D;
  /** What `apply` computes in evaluation mode, as data (the thin exporter reads it). */
  graph(): NetworkGraph;
}

/** Collects a network's parameters from its layers and checks that their names are unique. */
export function collectParameters(maskedLayers: readonly MaskedLayer[], batchNorms: readonly BatchNorm[]): Parameter[] {
  const parameters = [...maskedLayers.flatMap((l) => l.parameters()), ...batchNorms.flatMap((b) => b.parameters())];
  const seen = new Set<string>();
  for (const p of parameters) {
    if (seen.has(p.name)) throw new Error(`duplicate parameter name ${p.name}`);
    seen.add(p.name);
  }
  return parameters;
}

export function disposeNetwork(network: Network): void {
  for (const p of network.parameters) p.variable.dispose();
}
