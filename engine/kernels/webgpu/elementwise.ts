import { LINEAR_WORKGROUP, linearGrid } from './program.js';

/** Threads per workgroup of the one-thread-per-element kernels. */
export const ELEMENTWISE_WORKGROUP = 256;

/** The grid of a one-thread-per-element kernel over `size` elements. */
export function elementwiseGrid(size: number): [number, number, number] {
  return linearGrid(Math.ceil(size / ELEMENTWISE_WORKGROUP));
}

/**
 * The WGSL of a one-thread-per-element kernel: `helpers` (functions, constants), then a `main` that runs
 * `statements` for each element index `i` below the uniform `params.size`.
 */
export function elementwiseShader(statements: string, helpers = ''): string {
  return `${LINEAR_WORKGROUP}${helpers}
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = workgroup_index(wid, nwg) * ${ELEMENTWISE_WORKGROUP}u + lid;
  if (i >= params.size) { return; }
${statements}
}`;
}
