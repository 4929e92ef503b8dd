import { type GenerateOptions, generatedWnid, generateImageNet } from '../../engine/data/imagenet/generate.js';

/**
 * The engine's tests' small ImageNet datasets, written by the product's generator (`autoprune data generate`)
 * with small images unless told otherwise. `wnid(c)` names class c.
 */

export const wnid = generatedWnid;

/** Writes the dataset into `dir` (new or empty); returns `dir`. */
export async function writeGeneratedImageNet(
  dir: string,
  options: Pick<GenerateOptions, 'format' | 'classes' | 'perClass' | 'valPerClass'> & Partial<GenerateOptions>,
): Promise<string> {
  await generateImageNet(dir, { size: 24, seed: 1, shards: 1, ...options }, { parallel: 4 });
  return dir;
}
