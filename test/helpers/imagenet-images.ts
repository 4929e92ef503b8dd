import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import sharp from 'sharp';
import { seededUniform } from '../../engine/random.js';

/**
 * Photograph-like test images: smooth colour fields (a coarse random grid enlarged with a cubic filter)
 * under fine grain, so that JPEGs of them cost to decode and weigh about what ImageNet's photos do
 * (about 100 KB at 500x375, quality 90), unlike flat colours.
 */
export async function photoLikeJpeg(seed: number, width: number, height: number, quality = 90): Promise<Buffer> {
  const uniform = seededUniform(seed, 'photo-like');
  const gridWidth = Math.max(2, Math.round(width / 12));
  const gridHeight = Math.max(2, Math.round(height / 12));
  const grid = Buffer.alloc(gridWidth * gridHeight * 3);
  for (let i = 0; i < grid.length; i++) grid[i] = Math.floor(uniform() * 256);
  const pixels = await sharp(grid, { raw: { width: gridWidth, height: gridHeight, channels: 3 } })
    .resize(width, height, { kernel: 'cubic', fit: 'fill' })
    .raw()
    .toBuffer();
  const grain = 60;
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.max(0, Math.min(255, pixels[i]! + Math.round((uniform() - 0.5) * grain)));
  return sharp(pixels, { raw: { width, height, channels: 3 } })
    .jpeg({ quality })
    .toBuffer();
}

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
