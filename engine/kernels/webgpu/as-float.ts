import { elementwiseShader } from './elementwise.js';
import type { ShaderProgram } from './program.js';

/**
 * A float32 copy of data the webgpu backend holds as i32. The backend keeps bool and int32 tensors as i32
 * and casts them to float32 without a copy (the float32 tensor shares the i32 buffer, and the package's
 * programs read it by its stored type), so a 0/1 mask made by tf.cast(tf.greaterEqual(m, 0), 'float32')
 * holds the bits of the integers 0 and 1. The dispatcher passes such data through this first wherever a
 * program reads f32.
 */
export const AS_FLOAT: ShaderProgram = {
  name: 'AsFloat',
  outputs: ['result'],
  inputs: ['x: i32'],
  uniforms: [['size', 'u32']],
  body: elementwiseShader(`  result[i] = f32(x[i]);`),
};

/** Whether the data a tensor's buffer holds is i32 (its stored dtype, not the dtype a cast gave it). */
export function storedAsI32(storedDtype: string): boolean {
  if (storedDtype === 'int32' || storedDtype === 'bool') return true;
  if (storedDtype === 'float32') return false;
  throw new Error(`autoprune's webgpu kernels read float32, int32 or bool data, not ${storedDtype}`);
}
