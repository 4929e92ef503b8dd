import type { StoredShard } from './data/source.js';
import { seededUniform } from './random.js';

/**
 * Sample order and ownership for a set stored in shards (TFRecord files, packs), where reading a file front
 * to back is what streams. The global order of an epoch interleaves all shards in proportion to their sizes:
 * each shard's members, rotated by a seeded offset per epoch, are spread evenly over the epoch (member j of
 * n at (j + jitter) / n). So every step's global batch holds about batch · n_s / total samples of shard s,
 * in file order, and the order depends on the seed, the stream and the epoch only, never on the world size:
 * results stay the same for every world size. A rank then reads whole shards (shardOwners): its share of
 * each step is the batch's samples from its shards, balanced across ranks because the shards are. The 1:1
 * split is drawn over samples, not shards, so each shard holds about half of each half: shards are given
 * to ranks by their total size, and a rank reads the same files for W's batches and for M's.
 *
 * The trade-off against a uniform shuffle (sharding.ts): a batch mixes samples from all shards, and
 * consecutive samples of a shard meet in nearby batches; the per-epoch rotation and jitter change which meet.
 * The builders of ImageNet's TFRecords shuffle images before writing shards, so file order carries no class
 * structure.
 */

/** Most a rank's share of the samples may exceed an even share before whole shards are given up. */
export const SHARD_BALANCE_TOLERANCE = 0.1;

/** The members (sorted) of each shard, in shard order; members outside every shard are an error. */
export function membersByShard(members: Uint32Array, shards: readonly StoredShard[]): Uint32Array[] {
  const byShard = shards.map((shard) => members.subarray(lowerBound(members, shard.first), lowerBound(members, shard.first + shard.count)));
  const placed = byShard.reduce((sum, m) => sum + m.length, 0);
  if (placed !== members.length) throw new RangeError(`${members.length - placed} of ${members.length} samples lie in no shard`);
  return byShard;
}

/** The global order of `epoch` for a stream whose members are grouped by shard (membersByShard). */
export function interleavedOrder(seed: number, stream: string, epoch: number, byShard: readonly Uint32Array[]): Uint32Array {
  const uniform = seededUniform(seed, stream, 'interleave', epoch);
  const total = byShard.reduce((sum, m) => sum + m.length, 0);
  const samples = new Uint32Array(total);
  const keys = new Float64Array(total);
  let k = 0;
  for (const members of byShard) {
    const n = members.length;
    if (n === 0) continue;
    const rotation = Math.min(Math.floor(uniform() * n), n - 1);
    for (let j = 0; j < n; j++, k++) {
      samples[k] = members[(j + rotation) % n]!;
      keys[k] = (j + uniform()) / n;
    }
  }
  const positions = Uint32Array.from({ length: total }, (_, i) => i).sort((a, b) => keys[a]! - keys[b]! || a - b);
  return positions.map((p) => samples[p]!);
}

/**
 * Which rank reads each shard among `world`: the largest shards first, each to the rank with the fewest
 * samples so far. Undefined when the shards cannot be shared so that no rank holds more than
 * (1 + SHARD_BALANCE_TOLERANCE) times an even share (too few shards, or too uneven): the caller falls
 * back to sharing samples one by one.
 */
export function shardOwners(shards: readonly StoredShard[], world: number): Int32Array | undefined {
  if (shards.length < world) return undefined;
  const owners = new Int32Array(shards.length);
  if (world === 1) return owners;
  const loads = new Float64Array(world);
  const largestFirst = shards.map((shard, index) => ({ index, count: shard.count })).sort((a, b) => b.count - a.count || a.index - b.index);
  for (const { index, count } of largestFirst) {
    let least = 0;
    for (let r = 1; r < world; r++) if (loads[r]! < loads[least]!) least = r;
    owners[index] = least;
    loads[least] = loads[least]! + count;
  }
  const total = shards.reduce((sum, shard) => sum + shard.count, 0);
  return Math.max(...loads) <= (total / world) * (1 + SHARD_BALANCE_TOLERANCE) ? owners : undefined;
}

/** A lookup from sample index to the index of the shard holding it (shards in any order, not overlapping). */
export function shardLookup(shards: readonly StoredShard[]): (sample: number) => number {
  const byFirst = shards.map((shard, index) => ({ first: shard.first, end: shard.first + shard.count, index })).sort((a, b) => a.first - b.first);
  const firsts = Float64Array.from(byFirst, (s) => s.first);
  return (sample) => {
    const at = upperBound(firsts, sample) - 1;
    const shard = byFirst[at];
    if (!shard || sample >= shard.end) throw new RangeError(`sample ${sample} lies in no shard`);
    return shard.index;
  };
}

/** First position of `sorted` holding a value ≥ `value`. */
function lowerBound(sorted: ArrayLike<number>, value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First position of `sorted` holding a value > `value`. */
function upperBound(sorted: ArrayLike<number>, value: number): number {
  return lowerBound(sorted, value + 0.5);
}
