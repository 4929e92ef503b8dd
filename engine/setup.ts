import type { RunConfig } from '../shared/config.js';
import { InputError } from '../shared/errors.js';
import type { Gating } from './layers.js';
import { layerGating } from './models/channel-gates.js';
import { buildNetwork } from './models/index.js';
import { disposeNetwork, type Network } from './network.js';
import { AutoPruneTrainer } from './trainer.js';

/** Builds what a run trains from its config: the network and the AutoPrune trainer around it. */

export interface ImageShape {
  readonly height: number;
  readonly width: number;
  readonly channels: number;
  readonly numClasses: number;
}

/**
 * Builds the configured network for the dataset's image shape, checking per-layer granularity keys;
 * neuron granularity gates the channels that the model's channel rule names (models/channel-gates.ts).
 */
export function createNetwork(config: RunConfig, shape: ImageShape): Network {
  // A key that names no layer at all is the more useful message, so the rule's refusal waits for that check.
  let gating: (layer: string) => Gating;
  let refusal: InputError | undefined;
  try {
    gating = layerGating(config.model.name, config.model.granularity, config.model.layers);
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    refusal = error;
    gating = layerGating(config.model.name, config.model.granularity, {});
  }
  const network = buildNetwork(config.model.name, {
    seed: config.seed,
    inputShape: [shape.height, shape.width, shape.channels],
    numClasses: shape.numClasses,
    granularityOf: gating,
    maskInit: config.prune.maskInit,
    ...(config.model.dropout === undefined ? {} : { dropout: config.model.dropout }),
  });
  const names = new Set(network.maskedLayers.map((l) => l.name));
  for (const key of Object.keys(config.model.layers)) {
    if (!names.has(key)) {
      disposeNetwork(network);
      throw new InputError(`model.layers.${key}`, `is not a prunable layer of ${config.model.name}`, {
        expected: `one of ${[...names].slice(0, 12).join(', ')}${names.size > 12 ? ', ...' : ''}`,
      });
    }
  }
  if (refusal) {
    disposeNetwork(network);
    throw refusal;
  }
  return network;
}

export function createTrainer(network: Network, config: RunConfig): AutoPruneTrainer {
  const { surrogate, auxGradient, mu, nRatio, closedWeights } = config.prune;
  return new AutoPruneTrainer(network, { surrogate, auxGradient, mu, nRatio, closedWeights });
}
