import { splitCount } from './split-k-reduce.js';

/**
 * How the per-channel reductions over an activation seen as R rows × C channels (every axis but the
 * last × the last) share out the work: workgroups of CHANNEL_BLOCK channels × ROW_LANES rows, one
 * per block of channels and slice of rows. Adjacent threads read adjacent channels of a row, so
 * the reads coalesce; each slice's partial sums are combined by a second dispatch, or are the
 * result when there is one slice.
 */
export const CHANNEL_BLOCK = 64;
export const ROW_LANES = 4;
/** The fewest rows worth a workgroup of their own. */
const MIN_ROWS = 256;

export interface ChannelSlices {
  readonly rows: number;
  readonly channels: number;
  readonly blocks: number;
  /** Rows per slice. */
  readonly chunk: number;
  readonly slices: number;
}

export function channelSlices(shape: readonly number[]): ChannelSlices {
  const channels = shape[shape.length - 1] ?? 1;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const blocks = Math.ceil(channels / CHANNEL_BLOCK);
  const chunk = Math.max(1, Math.ceil(rows / splitCount(blocks, rows, MIN_ROWS)));
  return { rows, channels, blocks, chunk, slices: Math.max(1, Math.ceil(rows / chunk)) };
}

/**
 * WGSL for a slice's workgroup: `channel`, `lane` and the slice's rows [begin, end), from the
 * `channels`, `rows` and `chunk` uniforms.
 */
export const SLICE_COORDINATES = `
const CHANNEL_BLOCK = ${CHANNEL_BLOCK}u;
const ROW_LANES = ${ROW_LANES}u;
struct Slice { channel: u32, lane: u32, begin: u32, end: u32 }
fn slice_of(wid: vec3<u32>, t: u32) -> Slice {
  let begin = wid.y * params.chunk;
  return Slice(wid.x * CHANNEL_BLOCK + t % CHANNEL_BLOCK, t / CHANNEL_BLOCK, begin, min(params.rows, begin + params.chunk));
}`;
