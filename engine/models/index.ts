import { MODEL_NAMES, type ModelName } from '../../shared/config.js';
import type { Network, NetworkOptions } from '../network.js';
import { ALEXNET_DEFAULTS, buildAlexNet } from './alexnet.js';
import type { ModelDefaults } from './common.js';
import { buildLeNet5, LENET5_DEFAULTS } from './lenet5.js';
import { buildLeNet300, LENET300_DEFAULTS } from './lenet300.js';
import { buildMobileNetV2, MOBILENETV2_DEFAULTS } from './mobilenetv2.js';
import { buildResNet50, RESNET50_DEFAULTS } from './resnet50.js';
import { buildVggCifar, VGG_CIFAR_DEFAULTS } from './vgg-cifar.js';

// The run config owns the list of model names (it validates them before anything is built).
export { MODEL_NAMES, type ModelName } from '../../shared/config.js';
export type { ImageShape, ModelDefaults } from './common.js';

/** Input shape and classes each model is built for unless the options say otherwise. */
export const MODEL_DEFAULTS: Readonly<Record<ModelName, ModelDefaults>> = {
  lenet300: LENET300_DEFAULTS,
  lenet5: LENET5_DEFAULTS,
  'vgg-cifar': VGG_CIFAR_DEFAULTS,
  alexnet: ALEXNET_DEFAULTS,
  resnet50: RESNET50_DEFAULTS,
  mobilenetv2: MOBILENETV2_DEFAULTS,
};

const BUILDERS: Readonly<Record<ModelName, (options: NetworkOptions) => Network>> = {
  lenet300: buildLeNet300,
  lenet5: buildLeNet5,
  'vgg-cifar': buildVggCifar,
  alexnet: buildAlexNet,
  resnet50: buildResNet50,
  mobilenetv2: buildMobileNetV2,
};

export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

/** Builds `name`'s network with freshly initialised parameters; free them with `disposeNetwork`. */
export function buildNetwork(name: ModelName, options: NetworkOptions): Network {
  return BUILDERS[name](options);
}
