import { openCatalog } from '../engine/data/imagenet/catalog.js';
import { DecodeError } from '../engine/data/imagenet/decode.js';
import { DecodePool } from '../engine/data/imagenet/decode-pool.js';
import { openPrepared } from '../engine/data/imagenet/prepared.js';
import type { ImageTransform } from '../engine/data/imagenet/transforms.js';

/**
 * One measurement of bench/input.ts, in a process of its own so that its environment (libuv's pool size,
 * the malloc thresholds) and its CPU affinity are set from the start: the training split of DIR read
 * through its layout's reader and decoded by a DecodePool of THREADS threads, batch by batch with the next
 * batch read while one decodes, as a training loop would. Prints {"imagesPerSecond": best of PASSES}.
 *
 * node dist/bench/input-measure.js folders|tfrecord|prepared|prep-raw DIR train|eval THREADS PASSES
 */

const BATCH = 64;

async function main(): Promise<void> {
  const [layout, dir, kind, threadsText, passesText] = process.argv.slice(2);
  const threads = Number(threadsText);
  const passes = Number(passesText);
  const split = layout!.startsWith('prep') ? (await openPrepared(dir!)).train : (await openCatalog(dir!, { badSamples: 'fail' })).train;
  const pool = new DecodePool(threads);
  const transform = (sample: number, epoch: number): ImageTransform =>
    kind === 'eval' ? { kind: 'eval', size: 224 } : { kind: 'train', size: 224, seed: 1, epoch, sample };
  let best = 0;
  try {
    for (let pass = 0; pass < passes; pass++) {
      const batches: number[][] = [];
      for (let start = 0; start < split.count; start += BATCH) batches.push(Array.from({ length: Math.min(BATCH, split.count - start) }, (_, i) => start + i));
      const started = performance.now();
      let reading = split.readEncoded(batches[0]!);
      let decoded = 0;
      for (let b = 0; b < batches.length; b++) {
        const read = await reading;
        if (b + 1 < batches.length) reading = split.readEncoded(batches[b + 1]!);
        const jobs = read.map((sample) => {
          if ('bad' in sample) throw new Error(`bad sample ${sample.bad.file}: ${sample.bad.reason}`);
          return { bytes: sample.bytes, transform: transform(sample.index, pass) };
        });
        for (const result of await pool.decode(jobs)) {
          if (result instanceof DecodeError) throw result;
          decoded++;
        }
      }
      best = Math.max(best, decoded / ((performance.now() - started) / 1000));
    }
  } finally {
    await pool.close();
  }
  process.stdout.write(`${JSON.stringify({ imagesPerSecond: best })}\n`);
}

await main();
