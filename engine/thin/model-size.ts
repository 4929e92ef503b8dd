import type { ThinModel } from './thin-model.js';

/**
 * Parameters and FLOPs of an exported model, counted on its own tensors: every learned parameter
 * (kernels, biases, batch-norm γ and β, as `modelParams` of the run report), and FLOPs as the
 * multiply-accumulates of its convs and dense layers (the convention of engine/counters.ts).
 */
export interface ModelSize {
  readonly params: number;
  readonly flops: number;
}

export function modelSize(model: ThinModel): ModelSize {
  let params = 0;
  let flops = 0;
  for (const op of model.ops) {
    if (op.kind === 'conv' || op.kind === 'depthwise' || op.kind === 'dense') {
      params += op.kernel.length + (op.bias?.length ?? 0);
      const shape = model.shapes[op.output]!;
      const positions = op.kind === 'dense' ? 1 : shape[0]! * shape[1]!;
      flops += op.kernel.length * positions;
    } else if (op.kind === 'batchNorm') {
      params += op.gamma.length + op.beta.length;
    }
  }
  return { params, flops };
}
