import { MODEL_NAMES, type ModelName } from '../../../shared/config.js';
import type { Network, NetworkOptions } from '../network.js';
import { ALEXNET_DEFAULTS, buildAlexNet } from './alexnet.js';
import type { ModelDefaults } from './common.js';
import { LENET300_DEFAULTS, buildLeNet300 } from './lenet300.js';
import { LENET5_DEFAULTS, buildLeNet5 } from './lenet5.js';
import { MOBILENETV2_DEFAULTS, buildMobileNetV2 } from './mobilenetv2.js';
import { RESNET50_DEFAULTS, buildResNet50 } from './resnet50.js';
import { VGG_CIFAR_DEFAULTS, buildVggCifar } from './vgg-cifar.js';

export type { ImageShape, ModelDefaults } from './common.js';

// The run config owns the list of model names (it validates them before anything is built).
export { MODEL_NAMES, type ModelName } from '../../../shared/config.js';

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
