import * as tf from '@tensorflow/tfjs';
import type { Granularity } from '../../engine/gates.js';
import { GraphBuilder } from '../../engine/graph.js';
import { type ForwardContext, MaskedDense } from '../../engine/layers.js';
import { collectParameters, type Network } from '../../engine/network.js';

/** A two-layer perceptron on 2x2x1 "images", small enough to check gradients by hand. */
export function tinyNetwork(options: { seed?: number; hidden?: number; granularity?: Granularity } = {}): Network {
  const granularity = options.granularity ?? 'weight';
  const hidden = options.hidden ?? 3;
  const common = { seed: options.seed ?? 7, granularity, maskInit: { mean: 0.5, std: 0.01 } } as const;
  const fc1 = new MaskedDense({ ...common, name: 'fc1', inputFeatures: 4, units: hidden });
  const fc2 = new MaskedDense({ ...common, name: 'fc2', inputFeatures: hidden, units: 2 });
  const maskedLayers = [fc1, fc2];
  return {
    name: 'tiny',
    inputShape: [2, 2, 1],
    numClasses: 2,
    maskedLayers,
    batchNorms: [],
    parameters: collectParameters(maskedLayers, []),
    apply(images: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D {
      const x = tf.reshape(images, [images.shape[0], 4]);
      const h = fc1.apply(x, ctx, (y) => tf.relu(y));
      return fc2.apply(h, ctx) as tf.Tensor2D;
    },
    graph() {
      const g = new GraphBuilder([2, 2, 1]);
      const h = g.masked(fc1, g.flatten(g.input), (y) => g.activation('relu', y));
      return g.finish(g.masked(fc2, h));
    },
  };
}
