import { seededUniform } from '../../random.js';

/**
 * Where each ImageNet sample's pixels come from: torchvision's ImageNet recipe as pure geometry.
 * Training takes RandomResizedCrop(scale 0.08–1, ratio 3/4–4/3) and a horizontal flip with probability 1/2,
 * drawn from a generator seeded by (seed, epoch, sample), so any process, and a resumed run, sees the same
 * pixels. Evaluation resizes the shorter side to 256/224 of the output size and takes the centre crop.
 * The decoder (decode.ts) turns a crop into pixels; nothing here reads an image.
 */

/** The output side of the standard recipe. */
export const IMAGENET_SIZE = 224;
/** Shorter side before the evaluation centre crop, for a 224 output (kept in proportion for other sizes). */
export const EVAL_RESIZE = 256;
export const TRAIN_SCALE: readonly [number, number] = [0.08, 1];
export const TRAIN_RATIO: readonly [number, number] = [3 / 4, 4 / 3];
/** torchvision's number of tries at a random crop before it falls back to the centre. */
const CROP_ATTEMPTS = 10;

/** A rectangle in source pixels; fractional for evaluation crops, whose edges fall between pixels. */
export interface CropBox {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
}

export interface TrainCrop extends CropBox {
  readonly flip: boolean;
}

/** What to make of one encoded image: a training sample's random crop, or the evaluation centre crop. */
export type ImageTransform =
  | { readonly kind: 'train'; readonly size: number; readonly seed: number; readonly epoch: number; readonly sample: number }
  | { readonly kind: 'eval'; readonly size: number };

/**
 * The pixels a transform resamples, for an image of width x height: `box` is scaled to size x size.
 * `clampToBox` says where the resampling filter stops: at the box's edges (training: torchvision crops
 * first, then resizes the crop) or at the image's (evaluation: it resizes the image, then crops).
 */
export interface SampleCrop {
  readonly box: CropBox;
  readonly flip: boolean;
  readonly clampToBox: boolean;
}

/**
 * RandomResizedCrop's parameters for `sample` in `epoch` on a width x height image (torchvision 0.14's
 * get_params): up to ten draws of an area fraction and a log-uniform aspect ratio; the first crop that fits
 * is placed uniformly; otherwise the largest centre crop within the ratio bounds. Integer pixels.
 */
export function trainCrop(seed: number, epoch: number, sample: number, width: number, height: number): TrainCrop {
  requireImageSize(width, height);
  const uniform = seededUniform(seed, 'imagenet-crop', epoch, sample);
  const between = (low: number, high: number) => low + (high - low) * uniform();
  const area = width * height;
  const [logLow, logHigh] = [Math.log(TRAIN_RATIO[0]), Math.log(TRAIN_RATIO[1])];
  for (let attempt = 0; attempt < CROP_ATTEMPTS; attempt++) {
    const targetArea = area * between(TRAIN_SCALE[0], TRAIN_SCALE[1]);
    const ratio = Math.exp(between(logLow, logHigh));
    const w = Math.round(Math.sqrt(targetArea * ratio));
    const h = Math.round(Math.sqrt(targetArea / ratio));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = Math.floor(uniform() * (height - h + 1));
      const left = Math.floor(uniform() * (width - w + 1));
      return { left, top, width: w, height: h, flip: uniform() < 0.5 };
    }
  }
  return { ...centreCropWithinRatio(width, height), flip: uniform() < 0.5 };
}

function centreCropWithinRatio(width: number, height: number): CropBox {
  const ratio = width / height;
  let w = width;
  let h = height;
  if (ratio < TRAIN_RATIO[0]) h = Math.round(w / TRAIN_RATIO[0]);
  else if (ratio > TRAIN_RATIO[1]) w = Math.round(h * TRAIN_RATIO[1]);
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/**
 * The evaluation crop as a box in source pixels: Resize(shorter side to 256·size/224) then CenterCrop(size),
 * with torchvision's rounding (the longer side truncated, the crop offset rounded half to even), so that
 * resampling this box to size x size gives exactly the pixels of resizing the whole image then cropping.
 */
export function evalCrop(width: number, height: number, size: number = IMAGENET_SIZE): CropBox {
  requireImageSize(width, height);
  const resize = evalResizeSide(size);
  const short = Math.min(width, height);
  const long = Math.max(width, height);
  const resizedLong = Math.floor((resize * long) / short);
  const [resizedWidth, resizedHeight] = width <= height ? [resize, resizedLong] : [resizedLong, resize];
  const scaleX = width / resizedWidth;
  const scaleY = height / resizedHeight;
  const left = roundHalfToEven((resizedWidth - size) / 2);
  const top = roundHalfToEven((resizedHeight - size) / 2);
  return { left: left * scaleX, top: top * scaleY, width: size * scaleX, height: size * scaleY };
}

/** The shorter side the evaluation recipe resizes to before its centre crop of `size`. */
export function evalResizeSide(size: number): number {
  return Math.round((size * EVAL_RESIZE) / IMAGENET_SIZE);
}

/** The crop a transform takes from a width x height image. */
export function sampleCrop(transform: ImageTransform, width: number, height: number): SampleCrop {
  if (transform.kind === 'train') {
    const { flip, ...box } = trainCrop(transform.seed, transform.epoch, transform.sample, width, height);
    return { box, flip, clampToBox: true };
  }
  return { box: evalCrop(width, height, transform.size), flip: false, clampToBox: false };
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

function requireImageSize(width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`image size ${width}x${height} is not a positive whole number of pixels`);
  }
}
