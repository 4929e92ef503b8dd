import type * as tf from '@tensorflow/tfjs';
import { MOVING_MOMENTS, type MovingMomentsAttrs } from '../../moving-moments.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import { elementwiseGrid, elementwiseShader } from './elementwise.js';
import type { ShaderProgram } from './program.js';

/** AutoPruneMovingMoments on webgpu (contract in engine/moving-moments.ts): both averages in one dispatch. */
const PROGRAM: ShaderProgram = {
  name: MOVING_MOMENTS,
  outputs: ['nextMean', 'nextVariance'],
  inputs: ['movingMean', 'movingVariance', 'mean', 'variance'],
  uniforms: [
    ['size', 'u32'],
    ['keep', 'f32'],
    ['take', 'f32'],
  ],
  body: elementwiseShader(`  nextMean[i] = movingMean[i] * params.keep + mean[i] * params.take;
  nextVariance[i] = movingVariance[i] * params.keep + variance[i] * params.take;`),
};

function movingMoments(args: KernelArgs): tf.TensorInfo[] {
  const inputs = args.inputs as Record<'movingMean' | 'movingVariance' | 'mean' | 'variance', tf.TensorInfo>;
  const { momentum } = args.attrs as unknown as MovingMomentsAttrs;
  const size = inputs.movingMean.shape.reduce((a, b) => a * b, 1);
  for (const [name, info] of Object.entries(inputs)) {
    if (info.shape.reduce((a, b) => a * b, 1) !== size)
      throw new Error(`${MOVING_MOMENTS}: ${name} [${info.shape}] does not match movingMean [${inputs.movingMean.shape}]`);
  }
  const dispatcher = dispatcherFor(args.backend);
  const outputs = [dispatcher.allocate([...inputs.movingMean.shape]), dispatcher.allocate([...inputs.movingVariance.shape])];
  if (size > 0) {
    // The composition's scalars: momentum and 1 − momentum, each rounded to float32 by tfjs.
    const uniforms = [size, Math.fround(momentum), Math.fround(1 - momentum)];
    dispatcher.dispatch(PROGRAM, elementwiseGrid(size), outputs, [inputs.movingMean, inputs.movingVariance, inputs.mean, inputs.variance], uniforms);
  }
  return outputs;
}

export const movingMomentsConfig: tf.KernelConfig = { kernelName: MOVING_MOMENTS, backendName: 'webgpu', kernelFunc: movingMoments };
