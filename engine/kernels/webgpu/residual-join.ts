import type * as tf from '@tensorflow/tfjs';
import { ADD_RELU, RELU_GRAD } from '../../residual-join.js';
import type { KernelArgs } from '../wasm/kernel-args.js';
import { dispatcherFor } from './dispatcher.js';
import { elementwiseGrid, elementwiseShader } from './elementwise.js';
import type { ShaderProgram } from './program.js';

/** The residual join's kernels on webgpu (contract in engine/residual-join.ts): one pass each way. */
function elementwise(name: string, output: string, inputs: readonly [string, string], expression: string): ShaderProgram {
  return {
    name,
    outputs: [output],
    inputs,
    uniforms: [['size', 'u32']],
    body: elementwiseShader(`  ${output}[i] = ${expression};`),
  };
}

const ADD_RELU_PROGRAM = elementwise(ADD_RELU, 'y', ['a', 'b'], 'max(a[i] + b[i], 0.0)');
const RELU_GRAD_PROGRAM = elementwise(RELU_GRAD, 'dx', ['dy', 'y'], 'dy[i] * select(0.0, 1.0, y[i] > 0.0)');

function run(program: ShaderProgram, first: tf.TensorInfo, second: tf.TensorInfo, args: KernelArgs): tf.TensorInfo {
  if (first.shape.join(',') !== second.shape.join(',')) {
    throw new Error(`${program.name}: ${program.inputs[0]} [${first.shape}] and ${program.inputs[1]} [${second.shape}] must have one shape`);
  }
  const dispatcher = dispatcherFor(args.backend);
  const size = first.shape.reduce((a, b) => a * b, 1);
  const out = dispatcher.allocate([...first.shape]);
  if (size > 0) dispatcher.dispatch(program, elementwiseGrid(size), [out], [first, second], [size]);
  return out;
}

export const addReluConfig: tf.KernelConfig = {
  kernelName: ADD_RELU,
  backendName: 'webgpu',
  kernelFunc: (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    return run(ADD_RELU_PROGRAM, a, b, args as KernelArgs);
  },
};

export const reluGradConfig: tf.KernelConfig = {
  kernelName: RELU_GRAD,
  backendName: 'webgpu',
  kernelFunc: (args) => {
    const { dy, y } = args.inputs as { dy: tf.TensorInfo; y: tf.TensorInfo };
    return run(RELU_GRAD_PROGRAM, dy, y, args as KernelArgs);
  },
};
