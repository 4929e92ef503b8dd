import { linearGrid } from './program.js';

/** Threads per workgroup of the one-thread-per-element kernels. */
export const ELEMENTWISE_WORKGROUP = 256;

/** The grid of a one-thread-per-element kernel over `size` elements. */
export function elementwiseGrid(size: number): [number, number, number] {
  return linearGrid(Math.ceil(size / ELEMENTWISE_WORKGROUP));
}
