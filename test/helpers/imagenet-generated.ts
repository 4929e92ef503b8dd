import { join } from 'node:path';
import { loadExampleType } from '../../engine/data/imagenet/example.js';
import { modelsExample, writeFile, writeTfrecordFile } from './imagenet-data.js';
import { photoLikeJpeg } from './imagenet-images.js';

/**
 * Small ImageNet datasets written for real, for the engine's tests: photo-like JPEGs of a few classes, as
 * image folders or TFRecord shards. `wnid(c)` names class c.
 */

export const wnid = (c: number): string => `n0${String(1000000 + c * 1111).padStart(7, '0')}`;

/** A photo-like JPEG (so that crops differ) of class `c`, the `i`th of its kind. */
function classJpeg(c: number, i: number, size: number): Promise<Buffer> {
  return photoLikeJpeg(c * 1000 + i, size + (i % 3) * 4, size);
}

/**
 * TFRecord shards as the tensorflow/models builder writes them: `trainShards` files of `perShard` records
 * each (classes mixed, in turn) and one validation file of `val` records; returns the directory.
 */
export async function writeTfrecordImageNet(
  dir: string,
  options: { classes: number; trainShards: number; perShard: number; val: number; size?: number },
): Promise<string> {
  const type = loadExampleType();
  const size = options.size ?? 24;
  let i = 0;
  const record = async (c: number) => modelsExample(type, await classJpeg(c, i, size), c, wnid(c), `${wnid(c)}_${i++}.JPEG`);
  const name = (split: string, shard: number, of: number) => join(dir, `${split}-${String(shard).padStart(5, '0')}-of-${String(of).padStart(5, '0')}`);
  for (let s = 0; s < options.trainShards; s++) {
    const records = await Promise.all(Array.from({ length: options.perShard }, (_, r) => record((s + r) % options.classes)));
    writeTfrecordFile(name('train', s, options.trainShards), records);
  }
  writeTfrecordFile(name('validation', 0, 1), await Promise.all(Array.from({ length: options.val }, (_, r) => record(r % options.classes))));
  return dir;
}

/** Image folders: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the valprep.sh layout); returns the directory. */
export async function writeFolderImageNet(dir: string, options: { classes: number; train: number; val: number; size?: number }): Promise<string> {
  const size = options.size ?? 24;
  for (let c = 0; c < options.classes; c++) {
    for (let i = 0; i < options.train; i++) writeFile(join(dir, 'train', wnid(c), `${wnid(c)}_${i}.JPEG`), await classJpeg(c, i, size));
    for (let i = 0; i < options.val; i++)
      writeFile(join(dir, 'val', wnid(c), `ILSVRC2012_val_${String(c * 100 + i).padStart(8, '0')}.JPEG`), await classJpeg(c, i + 50, size));
  }
  return dir;
}
