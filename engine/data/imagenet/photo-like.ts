import sharp from 'sharp';
import { seededUniform } from '../../random.js';

/**
 * Photograph-like images for generated datasets and tests: smooth colour fields (a coarse random grid
 * enlarged with a cubic filter) under fine grain, so that JPEGs of them cost to decode and weigh about what
 * ImageNet's photos do (about 100 KB at 500x375, quality 90), and so that crops of one image differ, unlike
 * flat colours.
 */

/** An RGB colour, 0 to 255 a channel. */
export type Rgb = readonly [number, number, number];

/**
 * A photo-like JPEG drawn from `seed`. With a `palette`, the colour field is pulled halfway towards it, so
 * that images sharing a palette look alike (a generated class a network can learn).
 */
export async function photoLikeJpeg(seed: number, width: number, height: number, quality = 90, palette?: Rgb): Promise<Buffer> {
  const uniform = seededUniform(seed, 'photo-like');
  const gridWidth = Math.max(2, Math.round(width / 12));
  const gridHeight = Math.max(2, Math.round(height / 12));
  const grid = Buffer.alloc(gridWidth * gridHeight * 3);
  for (let i = 0; i < grid.length; i++) {
    const random = Math.floor(uniform() * 256);
    grid[i] = palette === undefined ? random : Math.round((random + palette[i % 3]!) / 2);
  }
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
