import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import sharp from 'sharp';

/** Test images beside the generated ones (engine/data/imagenet/photo-like.ts): flat colours, and the shared fixture. */

/** A JPEG of one flat colour. */
export function flatJpeg(colour: { r: number; g: number; b: number }, width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: colour } })
    .jpeg({ quality: 95 })
    .toBuffer();
}

/** The shared ImageNet fixture (written by TensorFlow and Pillow) beside the checkout, or undefined where there is none. */
export function imagenetMiniFixture(): string | undefined {
  const candidates = [process.env.AUTOPRUNE_SHARED, resolve('..', 'shared'), '/work/shared'];
  return candidates.map((dir) => dir && resolve(dir, 'fixtures', 'imagenet-mini')).find((dir): dir is string => dir !== undefined && existsSync(dir));
}
