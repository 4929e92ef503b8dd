import type { CropBox } from './transforms.js';

/**
 * Bilinear resampling of an RGB box to a new size, as Pillow 9's Image.resize(BILINEAR, box) computes it
 * (Resample.c): a separable triangle filter widened by the scale when shrinking (so it averages rather than
 * aliases), 22-bit fixed-point weights, a horizontal pass rounded to bytes, then a vertical one. Matching
 * Pillow makes these pixels those of torchvision's ImageNet recipe on PIL images. The horizontal flip is
 * folded into the writes of the second pass.
 */

const CHANNELS = 3;
const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

/** For each output pixel along one axis: its first input pixel, how many it reads, and their weights. */
interface AxisWeights {
  readonly first: Int32Array;
  readonly count: Int32Array;
  /** `taps` fixed-point weights per output pixel. */
  readonly weights: Int32Array;
  readonly taps: number;
}

/**
 * Weights that take the span [start, start + length) of an axis of `inSize` pixels to `outSize` pixels;
 * the filter is cut at the axis's ends (0 and inSize), as Pillow cuts it at the image's.
 */
function axisWeights(inSize: number, start: number, length: number, outSize: number): AxisWeights {
  const scale = length / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * taps);
  const raw = new Float64Array(taps);
  for (let out = 0; out < outSize; out++) {
    const centre = start + (out + 0.5) * scale;
    const low = Math.max(Math.trunc(centre - support + 0.5), 0);
    const n = Math.min(Math.trunc(centre + support + 0.5), inSize) - low;
    let total = 0;
    for (let t = 0; t < n; t++) {
      const w = Math.max(0, 1 - Math.abs((t + low - centre + 0.5) / filterScale));
      raw[t] = w;
      total += w;
    }
    // Taps whose fixed-point weight is 0 add nothing: leaving them out of the loops saves a third of the work.
    let kept = 0;
    let firstKept = -1;
    for (let t = 0; t < n; t++) {
      const w = total === 0 ? raw[t]! : raw[t]! / total;
      const fixed = Math.trunc(w < 0 ? w * ONE - 0.5 : w * ONE + 0.5);
      if (fixed === 0 && kept === 0) continue;
      if (firstKept < 0) firstKept = t;
      weights[out * taps + kept++] = fixed;
    }
    while (kept > 0 && weights[out * taps + kept - 1] === 0) kept--;
    first[out] = low + Math.max(firstKept, 0);
    count[out] = kept;
  }
  return { first, count, weights, taps };
}

/**
 * Resamples `box` of a width x height RGB image (3 bytes a pixel, rows packed) to outWidth x outHeight,
 * mirrored left to right when `flip`. The box may have fractional edges.
 */
export function resampleBilinear(
  pixels: Uint8Array,
  width: number,
  height: number,
  box: CropBox,
  outWidth: number,
  outHeight: number,
  flip: boolean,
): Uint8Array {
  if (pixels.length !== width * height * CHANNELS) {
    throw new RangeError(`resampleBilinear: ${pixels.length} bytes is not a ${width}x${height} RGB image`);
  }
  const horizontal = axisWeights(width, box.left, box.width, outWidth);
  const vertical = axisWeights(height, box.top, box.height, outHeight);
  // Only the rows the vertical pass reads go through the horizontal one.
  const firstRow = vertical.first[0]!;
  const endRow = vertical.first[outHeight - 1]! + vertical.count[outHeight - 1]!;
  const rowBytes = outWidth * CHANNELS;
  const between = new Uint8Array((endRow - firstRow) * rowBytes);
  for (let y = firstRow; y < endRow; y++) {
    horizontalPass(pixels, y * width * CHANNELS, horizontal, between, (y - firstRow) * rowBytes, flip);
  }
  const out = new Uint8Array(outHeight * rowBytes);
  for (let y = 0; y < outHeight; y++) verticalPass(between, (vertical.first[y]! - firstRow) * rowBytes, rowBytes, vertical, y, out);
  return out;
}

// The weights are non-negative and sum to 1 (to within a rounding per tap), so a sum never exceeds
// 255.5 in fixed point: shifting it down gives a byte without clamping.

/** One row through the horizontal weights, written mirrored when `flip`. */
function horizontalPass(pixels: Uint8Array, inRow: number, axis: AxisWeights, out: Uint8Array, outRow: number, flip: boolean): void {
  const outWidth = axis.first.length;
  for (let x = 0; x < outWidth; x++) {
    const base = x * axis.taps;
    const n = axis.count[x]!;
    let p = inRow + axis.first[x]! * CHANNELS;
    const to = outRow + (flip ? outWidth - 1 - x : x) * CHANNELS;
    if (n === 2) {
      const w0 = axis.weights[base]!;
      const w1 = axis.weights[base + 1]!;
      out[to] = (HALF + pixels[p]! * w0 + pixels[p + 3]! * w1) >> PRECISION_BITS;
      out[to + 1] = (HALF + pixels[p + 1]! * w0 + pixels[p + 4]! * w1) >> PRECISION_BITS;
      out[to + 2] = (HALF + pixels[p + 2]! * w0 + pixels[p + 5]! * w1) >> PRECISION_BITS;
      continue;
    }
    let r = HALF;
    let g = HALF;
    let b = HALF;
    for (let t = 0; t < n; t++, p += CHANNELS) {
      const w = axis.weights[base + t]!;
      r = (r + pixels[p]! * w) | 0;
      g = (g + pixels[p + 1]! * w) | 0;
      b = (b + pixels[p + 2]! * w) | 0;
    }
    out[to] = r >> PRECISION_BITS;
    out[to + 1] = g >> PRECISION_BITS;
    out[to + 2] = b >> PRECISION_BITS;
  }
}

/** Output row y from the rows it weighs, the first at `from`; rows are walked whole, which keeps the loop tight. */
function verticalPass(rows: Uint8Array, from: number, rowBytes: number, axis: AxisWeights, y: number, out: Uint8Array): void {
  const n = axis.count[y]!;
  const base = y * axis.taps;
  const to = y * rowBytes;
  if (n === 2) {
    const w0 = axis.weights[base]!;
    const w1 = axis.weights[base + 1]!;
    const next = from + rowBytes;
    for (let i = 0; i < rowBytes; i++) out[to + i] = (HALF + rows[from + i]! * w0 + rows[next + i]! * w1) >> PRECISION_BITS;
    return;
  }
  for (let i = 0; i < rowBytes; i++) {
    let sum = HALF;
    for (let t = 0, p = from + i; t < n; t++, p += rowBytes) sum = (sum + rows[p]! * axis.weights[base + t]!) | 0;
    out[to + i] = sum >> PRECISION_BITS;
  }
}
