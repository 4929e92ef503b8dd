import sharp, { type Metadata } from 'sharp';
import type { DecodePool } from '../engine/data/imagenet/decode-pool.js';
import { isRawImage } from '../engine/data/imagenet/raw-image.js';

/**
 * What `data check` learns from one encoded image: whether the training decoder turns it into RGB pixels, and
 * what had to be converted on the way (a CMYK or greyscale JPEG, a PNG named .JPEG), so that the report can
 * say the odd files were handled rather than leave them unmentioned.
 */
export interface ImageCheck {
  /** Why the image cannot be used; undefined when it decodes. */
  readonly problem: string | undefined;
  /** What the image was before conversion to RGB, when it was not a 3-channel JPEG (e.g. "CMYK JPEG", "PNG"). */
  readonly converted: string | undefined;
}

/** Checks a batch of images: each decoded by `pool` with the evaluation transform at `size`, as training would. */
export function imageChecker(pool: DecodePool, size: number): (images: readonly Buffer[]) => Promise<ImageCheck[]> {
  return async (images) => {
    // Read the headers first: the pool takes each buffer over (transfers it to its thread).
    const conversions = await Promise.all(images.map(conversion));
    const decoded = await pool.decode(images.map((bytes) => ({ bytes, transform: { kind: 'eval', size } })));
    return decoded.map((result, i) => ({
      problem: result instanceof Error ? `does not decode: ${result.message}` : undefined,
      converted: conversions[i],
    }));
  };
}

/** What an image is, when it is not a 3-channel JPEG; undefined for those, for raw records and for what has no readable header. */
async function conversion(bytes: Buffer): Promise<string | undefined> {
  if (isRawImage(bytes)) return undefined;
  let meta: Metadata;
  try {
    meta = await sharp(bytes).metadata();
  } catch {
    return undefined;
  }
  const format = meta.format === 'jpeg' ? 'JPEG' : meta.format.toUpperCase();
  const colour = meta.space === 'cmyk' ? 'CMYK ' : meta.channels === 1 || meta.space === 'b-w' ? 'greyscale ' : '';
  const alpha = meta.hasAlpha ? ' with alpha' : '';
  const described = `${colour}${format}${alpha}`;
  return described === 'JPEG' ? undefined : described;
}
