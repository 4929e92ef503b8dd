import type * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_ACTIVATE, type BatchNormAttrs } from '../../fused-batch-norm.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { ACTIVATIONS, normalization } from './batch-norm-wgsl.js';
import { dispatcherFor } from './dispatcher.js';
import { ELEMENTWISE_WORKGROUP, elementwiseGrid } from './elementwise.js';
import { LINEAR_WORKGROUP, type ShaderProgram } from './program.js';

/**
 * AutoPruneBatchNormActivate on webgpu: y = act(γ·(x − μ)/√(σ² + ε) + β) over the last axis's
 * channels in one pass, the ReLU or ReLU6 folded in (the package's BatchNorm and a separate
 * activation read and write the activation twice).
 */
function program(activation: BatchNormAttrs['activation']): ShaderProgram {
  return {
    name: `${BATCH_NORM_ACTIVATE}(${activation})`,
    outputs: ['y'],
    inputs: ['x', 'mean', 'variance', 'gamma', 'beta'],
    uniforms: [
      ['size', 'u32'],
      ['channels', 'u32'],
      ['epsilon', 'f32'],
    ],
    body: `${LINEAR_WORKGROUP}${normalization(activation)}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroup_index(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (i >= params.size) { return; }
  let c = i % params.channels;
  y[i] = activate(preactivation(normalized(x[i], c), c));
}`,
  };
}

function batchNormActivate(args: KernelArgs): tf.TensorInfo {
  const { x, mean, variance, gamma, beta } = args.inputs as Record<'x' | 'mean' | 'variance' | 'gamma' | 'beta', tf.TensorInfo>;
  const { epsilon, activation } = args.attrs as unknown as BatchNormAttrs;
  if (!ACTIVATIONS.includes(activation)) throw new Error(`${BATCH_NORM_ACTIVATE}: unknown activation '${activation}'`);
  const dispatcher = dispatcherFor(args.backend);
  const size = x.shape.reduce((a, b) => a * b, 1);
  const y = dispatcher.allocate([...x.shape]);
  if (size > 0) {
    dispatcher.dispatch(program(activation), elementwiseGrid(size), [y], [x, mean!, variance!, gamma!, beta!], [size, x.shape[x.shape.length - 1]!, epsilon]);
  }
  return y;
}

export const batchNormActivateConfig: tf.KernelConfig = { kernelName: BATCH_NORM_ACTIVATE, backendName: 'webgpu', kernelFunc: batchNormActivate };
