/**
 * The layout every rank computes on its own, identically: which arrays (or slices of large arrays) fuse
 * into which bucket, which segment of a bucket each rank reduces, and how a segment splits into chunks.
 * Pure functions of sizes and options, so that ranks agree without talking.
 */

export interface BucketPiece {
  /** Index of the array in the allReduce call. */
  readonly array: number;
  readonly arrayOffset: number;
  readonly bucketOffset: number;
  readonly length: number;
}

export interface Bucket {
  readonly elements: number;
  readonly pieces: readonly BucketPiece[];
}

/**
 * Packs arrays in order into buckets of at most `bucketElements`; an array larger than that is split
 * into near-equal slices, each its own bucket (so the all-reduce can work on it in place). Empty arrays
 * take no room.
 */
export function planBuckets(sizes: readonly number[], bucketElements: number): Bucket[] {
  if (!(bucketElements >= 1)) throw new RangeError(`bucketElements must be at least 1, got ${bucketElements}`);
  const buckets: Bucket[] = [];
  let pieces: BucketPiece[] = [];
  let filled = 0;
  const close = () => {
    if (pieces.length > 0) buckets.push({ elements: filled, pieces });
    pieces = [];
    filled = 0;
  };
  sizes.forEach((size, array) => {
    if (size === 0) return;
    if (size > bucketElements) {
      close();
      const slices = Math.ceil(size / bucketElements);
      for (let slice = 0; slice < slices; slice++) {
        const { start, end } = segmentRange(size, slices, slice);
        buckets.push({ elements: end - start, pieces: [{ array, arrayOffset: start, bucketOffset: 0, length: end - start }] });
      }
      return;
    }
    if (filled + size > bucketElements) close();
    pieces.push({ array, arrayOffset: 0, bucketOffset: filled, length: size });
    filled += size;
  });
  close();
  return buckets;
}

/** Segment `index` of `parts` near-equal segments of `elements` (the first `elements % parts` are one longer). */
export function segmentRange(elements: number, parts: number, index: number): { start: number; end: number } {
  const base = Math.floor(elements / parts);
  const longer = elements % parts;
  const start = index * base + Math.min(index, longer);
  return { start, end: start + base + (index < longer ? 1 : 0) };
}

/** Number of chunks of at most `chunkElements` that cover `length` elements. */
export function chunkCount(length: number, chunkElements: number): number {
  return Math.ceil(length / chunkElements);
}

/**
 * Ring schedule: in round k (0 .. N-2 reduce-scatter, N-1 .. 2N-3 all-gather) rank r sends segment
 * (r - k) mod N to its successor and receives segment (r - k - 1) mod N from its predecessor, so what it
 * receives in round k is what it sends in round k + 1. After the reduce-scatter rank r owns segment r + 1.
 */
export function sentSegment(rank: number, world: number, round: number): number {
  return (((rank - round) % world) + world) % world;
}

export function receivedSegment(rank: number, world: number, round: number): number {
  return sentSegment(rank, world, round + 1);
}

export function roundCount(world: number): number {
  return 2 * (world - 1);
}
