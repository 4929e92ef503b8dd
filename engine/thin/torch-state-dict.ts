import type { NamedTensor } from '../../shared/safetensors.js';
import { isTorchvisionModel, torchvisionModule } from '../models/torchvision.js';
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
  const moduleName = (name: string) => (isTorchvisionModel(model.model) ? torchvisionModule(model.model, name) : name);
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
