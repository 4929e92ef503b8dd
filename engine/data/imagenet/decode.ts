import sharp, { type Sharp, type SharpOptions } from 'sharp';
import { type ImageSize, readImageSize } from './image-size.js';
import { encodeRawImage, isRawImage, rawImageSize, rawPixels } from './raw-image.js';
import { resampleBilinear } from './resample.js';
import { type CropBox, type ImageTransform, type SampleCrop, sampleCrop } from './transforms.js';

/**
 * One encoded image to size x size x 3 RGB bytes under a transform (transforms.ts). JPEG, PNG and whatever
 * else libvips reads; CMYK, greyscale, palette, alpha and 16-bit images all come out as 8-bit RGB (alpha is
 * dropped and embedded colour profiles ignored, as PIL's convert('RGB') in torchvision's recipe does).
 *
 * The pixels are torchvision's on PIL images: exactly where the crop is enlarged, within a few levels where
 * it is shrunk. Three paths, by scale:
 * - a crop enlarged on either axis: libvips decodes only the crop's rectangle (stopping after its last row)
 *   and resample.ts scales it exactly as Pillow does (libvips' upsampling sits half a pixel off Pillow's);
 * - a training crop shrunk by less than 3: libvips crops, then shrinks with its triangle filter, which is
 *   Pillow's to within a few levels;
 * - an evaluation crop, or a training crop shrunk by 3 or more: libvips resizes the whole image, then crops,
 *   computing only the crop's pixels; from a shrink of 3 it decodes the JPEG at 1/2, 1/4 or 1/8 in the DCT
 *   domain (shrink-on-load). Evaluation is resize-then-crop in torchvision too; a training crop's edges
 *   move by at most half an output pixel.
 *
 * A raw record of the prepared cache (raw-image.ts) skips the decoder: resample.ts works on its pixels.
 *
 * Anything libvips cannot decode, including a truncated JPEG (decoding fails on the first warning), is a
 * DecodeError: never a grey or black image.
 */

export class DecodeError extends Error {
  override readonly name = 'DecodeError';
}

const CHANNELS = 3;
/** sharp fuses shrink-on-load into a resize only from a shrink of 3 (pipeline.cc's guard against libjpeg rounding). */
const SHRINK_ON_LOAD_FROM = 3;
/** Pixels kept beyond an evaluation box's reach of the filter, for the rounding of its fractional edges. */
const FILTER_MARGIN = 2;

const INPUT: SharpOptions = { failOn: 'warning', ignoreIcc: true };

export async function decodeImage(bytes: Uint8Array, transform: ImageTransform): Promise<Uint8Array> {
  if (isRawImage(bytes) && rawImageSize(bytes) === undefined)
    throw new DecodeError(`a raw image record of ${bytes.length} bytes, not the size its header declares`);
  const size = readImageSize(bytes) ?? rawImageSize(bytes) ?? (await sizeFromDecoder(bytes));
  return decodeCrop(bytes, size, sampleCrop(transform, size.width, size.height), transform.size);
}

/** The pixels of `crop` of an image of `size`, scaled to side x side, by the path its scale calls for. */
export async function decodeCrop(bytes: Uint8Array, size: ImageSize, crop: SampleCrop, side: number): Promise<Uint8Array> {
  if (isRawImage(bytes)) return resampleRaw(rawPixels(bytes), size, crop, side);
  const shrink = Math.min(crop.box.width, crop.box.height) / side;
  try {
    if (shrink < 1) return await cropThenResample(bytes, size, crop, side);
    if (crop.clampToBox && shrink < SHRINK_ON_LOAD_FROM) return await cropThenShrink(bytes, crop, side);
    return await shrinkThenCrop(bytes, size, crop, side);
  } catch (error) {
    throw asDecodeError(error);
  }
}

/** A raw record (raw-image.ts) needs no decoder: Pillow's resampling straight from its pixels. */
function resampleRaw(pixels: Uint8Array, size: ImageSize, crop: SampleCrop, side: number): Uint8Array {
  if (!crop.clampToBox) return resampleBilinear(pixels, size.width, size.height, crop.box, side, side, crop.flip);
  // A training crop's filter stops at the crop's edges, so the crop is taken out first.
  const region = wholePixels(crop.box, 0, size);
  const rowBytes = region.width * CHANNELS;
  const taken = new Uint8Array(region.height * rowBytes);
  for (let y = 0; y < region.height; y++) {
    const from = ((region.top + y) * size.width + region.left) * CHANNELS;
    taken.set(pixels.subarray(from, from + rowBytes), y * rowBytes);
  }
  const box = { ...crop.box, left: crop.box.left - region.left, top: crop.box.top - region.top };
  return resampleBilinear(taken, region.width, region.height, box, side, side, crop.flip);
}

async function sizeFromDecoder(bytes: Uint8Array): Promise<ImageSize> {
  try {
    const { width, height } = await sharp(bytes, INPUT).metadata();
    if (!(width > 0 && height > 0)) throw new DecodeError(`the image has no size (${width}x${height})`);
    return { width, height };
  } catch (error) {
    throw asDecodeError(error);
  }
}

function asDecodeError(error: unknown): DecodeError {
  if (error instanceof DecodeError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new DecodeError(message.trim().split('\n')[0] || 'the decoder failed without a message');
}

/** Decodes the whole-pixel rectangle holding the box (and, for evaluation, what its filter reads), then resamples. */
async function cropThenResample(bytes: Uint8Array, size: ImageSize, crop: SampleCrop, side: number): Promise<Uint8Array> {
  const region = crop.clampToBox ? wholePixels(crop.box, 0, size) : wholePixels(crop.box, marginFor(crop.box, side), size);
  const pixels = await rgb(sharp(bytes, INPUT).extract(region), region);
  const box = { ...crop.box, left: crop.box.left - region.left, top: crop.box.top - region.top };
  return resampleBilinear(pixels, region.width, region.height, box, side, side, crop.flip);
}

/** The filter reaches one scale (at least one pixel) beyond the box's edge; the margin covers that and more. */
function marginFor(box: CropBox, side: number): number {
  return Math.ceil(Math.max(1, box.width / side, box.height / side)) + FILTER_MARGIN;
}

function wholePixels(box: CropBox, margin: number, size: ImageSize): { left: number; top: number; width: number; height: number } {
  const left = Math.max(0, Math.floor(box.left) - margin);
  const top = Math.max(0, Math.floor(box.top) - margin);
  const right = Math.min(size.width, Math.ceil(box.left + box.width) + margin);
  const bottom = Math.min(size.height, Math.ceil(box.top + box.height) + margin);
  return { left, top, width: right - left, height: bottom - top };
}

/** Takes a whole-pixel training crop, then shrinks it to side x side. */
async function cropThenShrink(bytes: Uint8Array, crop: SampleCrop, side: number): Promise<Uint8Array> {
  const pipeline = sharp(bytes, INPUT).extract(crop.box).resize(side, side, { fit: 'fill', kernel: 'linear' });
  return ownCopy(await rgb(crop.flip ? pipeline.flop() : pipeline, { width: side, height: side }));
}

/** Scales the whole image so the box becomes side x side (libvips computes only the box), then takes it. */
async function shrinkThenCrop(bytes: Uint8Array, size: ImageSize, crop: SampleCrop, side: number): Promise<Uint8Array> {
  const scaleX = side / crop.box.width;
  const scaleY = side / crop.box.height;
  const width = Math.max(side, Math.round(size.width * scaleX));
  const height = Math.max(side, Math.round(size.height * scaleY));
  const left = Math.min(width - side, Math.round(crop.box.left * scaleX));
  const top = Math.min(height - side, Math.round(crop.box.top * scaleY));
  let pipeline = sharp(bytes, INPUT).resize(width, height, { fit: 'fill', kernel: 'linear' });
  // libvips mirrors before it takes the crop, so the crop is taken from the mirrored side.
  if (crop.flip) pipeline = pipeline.flop();
  const region = { left: crop.flip ? width - side - left : left, top, width: side, height: side };
  return ownCopy(await rgb(pipeline.extract(region), region));
}

/** Results cross threads by transfer, which libvips' native memory cannot. */
function ownCopy(pixels: Uint8Array): Uint8Array {
  return new Uint8Array(pixels);
}

/**
 * The pipeline's pixels as 8-bit RGB, checked by their length to be the rectangle asked for. (sRGB output is
 * 8-bit already, 16-bit input included: asking for the depth would add a cast, and for the output's info an
 * object, each a measurable part of a call.)
 */
async function rgb(pipeline: Sharp, region: { width: number; height: number }): Promise<Uint8Array> {
  const data = await pipeline.removeAlpha().toColourspace('srgb').raw().toBuffer();
  const expected = region.width * region.height * CHANNELS;
  if (data.length !== expected) throw new DecodeError(`the decoder gave ${data.length} bytes, not ${region.width}x${region.height}x${CHANNELS}`);
  return data;
}

export type StoredEncoding = 'jpeg' | 'raw';

/**
 * The image with its shorter side at most `shortSide` (resized as torchvision's Resize(shortSide) does:
 * shorter side to shortSide, longer side truncated; never enlarged), for the prepared cache: an 8-bit sRGB
 * JPEG, or a raw record (raw-image.ts). CMYK, greyscale and PNG inputs all come out as 3-channel RGB.
 */
export async function reencodeImage(bytes: Uint8Array, shortSide: number, quality: number, encoding: StoredEncoding): Promise<Buffer> {
  const size = readImageSize(bytes) ?? (await sizeFromDecoder(bytes));
  const { width, height } = shorterSideAtMost(size, shortSide);
  try {
    const rgb = sharp(bytes, INPUT).resize(width, height, { fit: 'fill', kernel: 'linear' }).removeAlpha().toColourspace('srgb');
    if (encoding === 'jpeg') return await rgb.jpeg({ quality, chromaSubsampling: '4:2:0' }).toBuffer();
    const { data, info } = await rgb.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return encodeRawImage(data, info.width, info.height);
  } catch (error) {
    throw asDecodeError(error);
  }
}

function shorterSideAtMost(size: ImageSize, shortSide: number): ImageSize {
  const { width, height } = size;
  if (Math.min(width, height) <= shortSide) return size;
  return width <= height
    ? { width: shortSide, height: Math.floor((shortSide * height) / width) }
    : { width: Math.floor((shortSide * width) / height), height: shortSide };
}
