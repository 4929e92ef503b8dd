/**
 * A compute shader as autoprune's webgpu kernels describe it: named storage bindings (outputs
 * first, then inputs) and a uniform struct of 4-byte scalars, with the WGSL that declares them
 * generated here so that every kernel binds the same way.
 */

export type ScalarType = 'u32' | 'i32' | 'f32';

export interface ShaderProgram {
  /** Names the program in errors and statistics. */
  readonly name: string;
  /** Written storage arrays, bound first (element type f32 unless given as `name: type`). */
  readonly outputs: readonly string[];
  /** Read storage arrays, bound after the outputs. */
  readonly inputs: readonly string[];
  /** The fields of `params`, the uniform struct, in order. */
  readonly uniforms: readonly (readonly [name: string, type: ScalarType])[];
  /** WGSL after the declarations: helper functions and the `main` entry point. */
  readonly body: string;
  /** `enable` directives the body needs (f16, subgroups); the device must have the features. */
  readonly enables?: readonly string[];
}

function binding(spec: string): { name: string; type: string } {
  const [name, type] = spec.split(':').map((part) => part.trim());
  return { name: name!, type: type ?? 'f32' };
}

/** The element type of each input, in order. */
export function inputTypes(program: ShaderProgram): string[] {
  return program.inputs.map((spec) => binding(spec).type);
}

/** The program's complete WGSL: enables, the uniform struct, its bindings, then the body. */
export function shaderSource(program: ShaderProgram): string {
  const lines: string[] = (program.enables ?? []).map((feature) => `enable ${feature};`);
  let index = 0;
  for (const spec of program.outputs) {
    const { name, type } = binding(spec);
    lines.push(`@group(0) @binding(${index++}) var<storage, read_write> ${name}: array<${type}>;`);
  }
  for (const spec of program.inputs) {
    const { name, type } = binding(spec);
    lines.push(`@group(0) @binding(${index++}) var<storage, read> ${name}: array<${type}>;`);
  }
  if (program.uniforms.length > 0) {
    lines.push(`struct Params { ${program.uniforms.map(([name, type]) => `${name}: ${type},`).join(' ')} }`);
    lines.push(`@group(0) @binding(${index}) var<uniform> params: Params;`);
  }
  return `${lines.join('\n')}\n${program.body}`;
}

/** The uniform values in the struct's layout (every field 4 bytes), padded to 16 bytes. */
export function packUniforms(program: ShaderProgram, values: readonly number[]): ArrayBuffer {
  if (values.length !== program.uniforms.length) {
    throw new Error(`${program.name}: ${values.length} uniform values for ${program.uniforms.length} fields`);
  }
  const bytes = new ArrayBuffer(Math.max(16, Math.ceil((values.length * 4) / 16) * 16));
  const view = new DataView(bytes);
  program.uniforms.forEach(([name, type], i) => {
    const value = values[i]!;
    if (type === 'f32') view.setFloat32(i * 4, value, true);
    else if (Number.isInteger(value) && (type === 'i32' ? value >= -(2 ** 31) && value < 2 ** 31 : value >= 0 && value < 2 ** 32)) {
      if (type === 'i32') view.setInt32(i * 4, value, true);
      else view.setUint32(i * 4, value, true);
    } else throw new Error(`${program.name}: uniform ${name} = ${value} is not a ${type}`);
  });
  return bytes;
}

/** Most workgroups along one dispatch dimension (WebGPU's guaranteed limit). */
export const MAX_WORKGROUPS_PER_DIMENSION = 65_535;

/**
 * A grid of at least `count` workgroups that respects the per-dimension limit. Shaders read their
 * linear workgroup index as `wid.y * nwg.x + wid.x` (see `LINEAR_WORKGROUP`) and skip any beyond.
 */
export function linearGrid(count: number): [number, number, number] {
  if (count <= MAX_WORKGROUPS_PER_DIMENSION) return [Math.max(1, count), 1, 1];
  const rows = Math.ceil(count / MAX_WORKGROUPS_PER_DIMENSION);
  return [Math.ceil(count / rows), rows, 1];
}

/** The builtins a `linearGrid` shader's main takes; `workgroup_index(wid, nwg)` is its linear index. */
export const LINEAR_WORKGROUP = `
fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.y * nwg.x + wid.x; }`;
