import { splitCount } from './split-k-reduce.js';

/**
 * How the batch-norm kernels share out an activation seen as R rows × C channels (every axis but
 * the last × the last): workgroups of CHANNEL_BLOCK channels × ROW_LANES rows, adjacent threads on
 * adjacent channels of a row (the reads coalesce). Two passes, each a grid of channel blocks × row
 * ranges:
 * - the sums pass: one workgroup per block and *slice* of rows, writing the slice's partial sums;
 * - the consuming pass (normalise, or input gradient): one workgroup per block and *group* of rows.
 *   Each first combines all the slices' partials of its 64 channels itself, in a fixed order (so
 *   every workgroup of a block gets the same bits), then loops over its rows.
 * Every consuming workgroup thus re-reads slices × 2 values per channel for its rows: the plan
 * keeps that at most 1/2 of its reads of x (ROWS_PER_SLICE) and balances the passes' workgroups.
 */
export const CHANNEL_BLOCK = 64;
export const ROW_LANES = 4;
/** The fewest rows worth a workgroup of their own. */
const MIN_ROWS = 256;
/**
 * Most slices of rows in the sums pass: a consuming workgroup re-reads at most
 * 128 × 2 × 64 × 4 B = 64 KB of partials (from L2: every workgroup of a block reads the same).
 */
export const MAX_SLICES = 128;
/**
 * Rows a consuming workgroup covers per slice, at least: it re-reads 2 partials per slice and
 * channel, so 4 rows per slice keeps that at ≤ 1/2 of its reads of x, served from L2. A larger
 * value re-reads less but leaves fewer workgroups to both passes (ResNet-50 at batch 64, median
 * workgroups of the sums and consuming passes: 224 and 384 at 4, 158 and 196 at 8): a GPU must tell.
 */
export const ROWS_PER_SLICE = 4;

export interface ChannelSlices {
  readonly rows: number;
  readonly channels: number;
  readonly blocks: number;
  /** Rows per slice of the sums pass. */
  readonly chunk: number;
  readonly slices: number;
  /** Rows per workgroup of the consuming pass. */
  readonly groupRows: number;
  readonly groups: number;
}

export function channelSlices(shape: readonly number[]): ChannelSlices {
  const channels = shape[shape.length - 1] ?? 1;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const blocks = Math.ceil(channels / CHANNEL_BLOCK);
  // Both passes aim at about 1,024 workgroups (split row ranges per block), but S slices and G
  // groups cost each consuming workgroup 2S re-reads per channel for R/G rows: S·G ≤ R/4 bounds
  // that, and S = G ≤ √(R/4) shares the bound between the passes.
  const split = splitCount(blocks, rows, MIN_ROWS);
  const balanced = Math.max(1, Math.min(split, MAX_SLICES, Math.floor(Math.sqrt(rows / ROWS_PER_SLICE))));
  const chunk = Math.max(1, Math.ceil(rows / balanced));
  const slices = Math.max(1, Math.ceil(rows / chunk));
  const groupRows = Math.max(1, Math.ceil(rows / split), ROWS_PER_SLICE * slices);
  return {
    rows,
    channels,
    blocks,
    chunk,
    slices,
    groupRows,
    groups: Math.max(1, Math.ceil(rows / groupRows)),
  };
}

/** The uniforms every batch-norm shader starts with (SLICE_COORDINATES reads them), in order. */
export const SLICE_UNIFORMS = [
  ['rows', 'u32'],
  ['channels', 'u32'],
  ['chunk', 'u32'],
  ['slices', 'u32'],
  ['group_rows', 'u32'],
] as const;

/** SLICE_UNIFORMS' values for a plan. */
export function sliceUniforms(plan: ChannelSlices): number[] {
  return [plan.rows, plan.channels, plan.chunk, plan.slices, plan.groupRows];
}

/**
 * WGSL for a workgroup of either pass: `rows_of(wid, t, length)` gives the thread's `channel`,
 * `lane` and the workgroup's rows [begin, end) for ranges of `length` rows (params.chunk for a
 * slice, params.group_rows for a group); `lane_slices(lane)` the slices [x, y) a lane of a
 * consuming workgroup combines: a contiguous quarter, so that merging the lanes in lane order
 * keeps the slices' order.
 */
export const SLICE_COORDINATES = `
const CHANNEL_BLOCK = ${CHANNEL_BLOCK}u;
const ROW_LANES = ${ROW_LANES}u;
struct Rows { channel: u32, lane: u32, begin: u32, end: u32 }
fn rows_of(wid: vec3<u32>, t: u32, length: u32) -> Rows {
  let begin = wid.y * length;
  return Rows(wid.x * CHANNEL_BLOCK + t % CHANNEL_BLOCK, t / CHANNEL_BLOCK, begin, min(params.rows, begin + length));
}
fn lane_slices(lane: u32) -> vec2<u32> {
  let quarter = (params.slices + ROW_LANES - 1u) / ROW_LANES;
  return vec2<u32>(min(params.slices, lane * quarter), min(params.slices, (lane + 1u) * quarter));
}`;
