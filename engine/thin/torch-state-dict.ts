import type { NamedTensor } from '../../shared/safetensors.js';
import { channelsFirstKernel, rowsInChannelsFirstOrder, transposed } from './layouts.js';
import type { ThinModel } from './thin-model.js';

/**
 * A thin model as a PyTorch state dict for safetensors: OIHW conv kernels, [out, in] linear weights,
 * batch norm as weight / bias / running_mean / running_var / num_batches_tracked. ResNet-50, MobileNetV2
 * and AlexNet take torchvision's module names, so that the file loads into torchvision's architecture
 * once its layers have the thinned channel counts; the other networks keep the engine's names.
 */

export const SAFETENSORS_FILE = 'model.safetensors';

export function torchStateDict(model: ThinModel): Map<string, NamedTensor> {
  const layerNames = new Set(model.ops.flatMap((op) => ('name' in op ? [op.name] : [])));
  const moduleName = (name: string) => torchvisionName(model.model, name, layerNames);
  const producers = new Map(model.ops.map((op) => [op.output, op] as const));
  const tensors = new Map<string, NamedTensor>();
  const float = (name: string, shape: readonly number[], data: Float32Array) => tensors.set(name, { dtype: 'F32', shape: [...shape], data });
  for (const op of model.ops) {
    switch (op.kind) {
      case 'conv':
      case 'depthwise': {
        const [k, , channels, last] = op.kernelShape;
        float(`${moduleName(op.name)}.weight`, op.kind === 'conv' ? [last, channels, k, k] : [channels * last, 1, k, k], channelsFirstKernel(op));
        if (op.bias) float(`${moduleName(op.name)}.bias`, [op.bias.length], op.bias);
        break;
      }
      case 'dense': {
        const [inputs, outputs] = op.kernelShape;
        const flattened = producers.get(op.input);
        const rows = flattened?.kind === 'flatten' ? model.shapes[flattened.input]! : [1, 1, inputs];
        float(`${moduleName(op.name)}.weight`, [outputs, inputs], transposed(rowsInChannelsFirstOrder(op.kernel, rows, outputs), inputs, outputs));
        if (op.bias) float(`${moduleName(op.name)}.bias`, [outputs], op.bias);
        break;
      }
      case 'batchNorm': {
        const name = moduleName(op.name);
        float(`${name}.weight`, [op.gamma.length], op.gamma);
        float(`${name}.bias`, [op.beta.length], op.beta);
        float(`${name}.running_mean`, [op.mean.length], op.mean);
        float(`${name}.running_var`, [op.variance.length], op.variance);
        tensors.set(`${name}.num_batches_tracked`, { dtype: 'I64', shape: [], data: BigInt64Array.of(0n) });
        break;
      }
      default:
        break;
    }
  }
  return tensors;
}

const ALEXNET_MODULES: Readonly<Record<string, string>> = {
  conv1: 'features.0',
  conv2: 'features.3',
  conv3: 'features.6',
  conv4: 'features.8',
  conv5: 'features.10',
  fc6: 'classifier.1',
  fc7: 'classifier.4',
  fc8: 'classifier.6',
};

/** The torchvision module an engine layer or batch norm is (engine names where the model is not torchvision's). */
export function torchvisionName(model: string, name: string, layerNames: ReadonlySet<string>): string {
  if (model === 'alexnet') return ALEXNET_MODULES[name] ?? name;
  if (model !== 'mobilenetv2') return name; // ResNet-50's engine names are torchvision's already.
  if (name === 'classifier') return 'classifier.1';
  const outer = /^features\.(\d+)\.(conv|bn)$/.exec(name);
  if (outer) return `features.${outer[1]}.${outer[2] === 'conv' ? 0 : 1}`;
  const inner = /^features\.(\d+)\.(expand|depthwise|project)(\.bn)?$/.exec(name);
  if (!inner) return name;
  const [, block, part, bn] = inner;
  // torchvision's InvertedResidual.conv: [expand ConvBNReLU6]?, depthwise ConvBNReLU6, project conv, project BN.
  const first = layerNames.has(`features.${block}.expand`) ? 1 : 0;
  if (part === 'expand') return `features.${block}.conv.0.${bn ? 1 : 0}`;
  if (part === 'depthwise') return `features.${block}.conv.${first}.${bn ? 1 : 0}`;
  return `features.${block}.conv.${first + 1 + (bn ? 1 : 0)}`;
}
