import { countNetwork } from './counters.js';
import type { Gating, LayerGroup } from './layers.js';
import type { Network } from './network.js';

/**
 * Each prunable layer's gates as people watch them: weights and MACs kept, gates open (channels, for neuron
 * gates), and a histogram of M, whose values crossing zero are weights pruned or regrown.
 */

/** TensorBoard's HistogramProto: bucket i counts the values in (limits[i-1], limits[i]]. */
export interface Histogram {
  readonly min: number;
  readonly max: number;
  readonly num: number;
  readonly sum: number;
  readonly sumSquares: number;
  readonly bucketLimit: readonly number[];
  readonly bucket: readonly number[];
}

export interface LayerGateSummary {
  readonly name: string;
  readonly group: LayerGroup;
  readonly granularity: Gating;
  readonly params: number;
  readonly kept: number;
  readonly flops: number;
  readonly flopsKept: number;
  readonly gates: number;
  readonly gatesOpen: number;
  readonly histogram: Histogram;
}

/** Buckets per histogram: enough to see M's shape around zero, few enough to keep reports small. */
export const HISTOGRAM_BUCKETS = 30;

/**
 * The gates of every prunable layer of `network`; `gated` false counts a dense phase's network as whole.
 * A layer the channel rule leaves ungated (no M) has no gates and an empty histogram.
 */
export async function gateSummary(network: Network, gated: boolean): Promise<LayerGateSummary[]> {
  const [counts, masks] = await Promise.all([
    countNetwork(network, gated),
    Promise.all(network.maskedLayers.map((layer) => (layer.mask === undefined ? new Float32Array(0) : (layer.mask.variable.data() as Promise<Float32Array>)))),
  ]);
  return network.maskedLayers.map((layer, i) => {
    const count = counts.layers[i]!;
    const values = masks[i]!;
    const open = gated ? values.reduce((sum, m) => sum + (m >= 0 ? 1 : 0), 0) : values.length;
    return {
      name: layer.name,
      group: layer.group,
      granularity: layer.granularity,
      params: count.params,
      kept: count.remaining,
      flops: count.flops,
      flopsKept: count.flopsEffective,
      gates: values.length,
      gatesOpen: open,
      histogram: histogram(values, HISTOGRAM_BUCKETS),
    };
  });
}

/** Equal-width buckets from the smallest value to the largest (one bucket when they are all equal). */
export function histogram(values: ArrayLike<number>, buckets: number): Histogram {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let sum = 0;
  let sumSquares = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
    sumSquares += v * v;
  }
  if (values.length === 0) return { min: 0, max: 0, num: 0, sum: 0, sumSquares: 0, bucketLimit: [], bucket: [] };
  const n = max > min ? buckets : 1;
  const width = (max - min) / n;
  const bucketLimit = Array.from({ length: n }, (_, i) => (i === n - 1 ? max : min + width * (i + 1)));
  const bucket = new Array<number>(n).fill(0);
  for (let i = 0; i < values.length; i++) {
    const index = width === 0 ? 0 : Math.min(n - 1, Math.max(0, Math.ceil((values[i]! - min) / width) - 1));
    bucket[index]! += 1;
  }
  return { min, max, num: values.length, sum, sumSquares, bucketLimit, bucket };
}
