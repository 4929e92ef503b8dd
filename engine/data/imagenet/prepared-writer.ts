import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { createDirectories, fileSystemError, writeFileAtomic } from '../../../shared/atomic-file.js';
import { InputError } from '../../../shared/errors.js';
import { seededUniform, shuffled } from '../../random.js';
import { range } from '../../sampling.js';
import { DecodeError, reencodeImage, type StoredEncoding } from './decode.js';
import {
  encodeColumns,
  type PackEntry,
  PREPARED_FOLDER,
  PREPARED_FORMAT,
  PREPARED_INDEX,
  PREPARED_VERSION,
  type PreparedBadSample,
  type PreparedIndex,
  type SplitName,
} from './prepared.js';

/**
 * Writes the prepared cache (prepared.ts) from any dataset the catalog opens: each sample is read once,
 * re-encoded as a JPEG with a bounded shorter side, and appended to its pack. Packs are written under a
 * temporary name and renamed when complete, and index.json last, so an interrupted run leaves no cache
 * that looks whole.
 */

/** A split as the catalog's CatalogSplit offers it (the part the writer reads). */
export interface PrepareSourceSplit {
  readonly count: number;
  labelOf(index: number): number;
  /** The sample's file, or file@offset. */
  describe(index: number): string;
  readEncoded(indices: readonly number[]): Promise<Array<{ index: number; bytes: Buffer } | { index: number; bad: PreparedBadSample }>>;
  /** Samples the source already left out (found bad while it was indexed); listed with the cache's own. */
  readonly bad?: readonly PreparedBadSample[];
}

export interface PrepareSource {
  readonly classes: readonly string[];
  readonly train: PrepareSourceSplit;
  readonly val: PrepareSourceSplit;
}

export interface PrepareOptions {
  /** Images whose shorter side is longer are scaled down to it. */
  readonly shortSide: number;
  /** JPEG quality; raw records ignore it. */
  readonly quality: number;
  /** `jpeg`: small, decoded while training; `raw`: RGB pixels, several times larger, with nothing to decode. */
  readonly encoding: StoredEncoding;
  /** The packs of each split are a multiple of this, with equal counts, so each rank can read whole packs. */
  readonly ranks: number;
  /** At most this many samples a pack (before rounding the pack count up to a multiple of `ranks`). */
  readonly samplesPerPack: number;
  /** Seeds the shuffle that mixes the classes across packs. */
  readonly seed: number;
  /** Images re-encoded at once. */
  readonly parallel: number;
  /** `fail`: the first sample that cannot be read or decoded is an InputError naming it; `skip`: it is left out and listed. */
  readonly badSamples: 'fail' | 'skip';
  readonly progress?: (done: number, total: number) => void;
}

export const PREPARE_DEFAULTS = { shortSide: 256, quality: 90, encoding: 'jpeg', ranks: 1, samplesPerPack: 20_000, seed: 0 } as const;

const MAX_CLASSES = 1 << 16;

export async function writePrepared(source: PrepareSource, outDir: string, options: PrepareOptions): Promise<PreparedIndex> {
  if (source.classes.length > MAX_CLASSES)
    throw new InputError(outDir, 'too many classes for the prepared cache', { expected: `at most ${MAX_CLASSES}`, found: `${source.classes.length}` });
  const folder = join(outDir, PREPARED_FOLDER);
  await createDirectories(folder);
  const total = source.train.count + source.val.count;
  let done = 0;
  let nextPack = 0;
  const writeSplit = async (name: SplitName, split: PrepareSourceSplit) => {
    const order = shuffled(range(split.count), seededUniform(options.seed, 'prepare', name));
    const packs: PackEntry[] = [];
    const bad: PreparedBadSample[] = [...(split.bad ?? [])];
    for (const members of packMembers(order, options.ranks, options.samplesPerPack)) {
      const file = `pack-${String(nextPack++).padStart(5, '0')}.bin`;
      packs.push(
        await writePack(folder, file, split, members, options, bad, (n) => {
          done += n;
          options.progress?.(done, total);
        }),
      );
    }
    return { packs, bad };
  };
  const train = await writeSplit('train', source.train);
  const val = await writeSplit('val', source.val);
  const index: PreparedIndex = {
    format: PREPARED_FORMAT,
    version: PREPARED_VERSION,
    shortSide: options.shortSide,
    quality: options.quality,
    encoding: options.encoding,
    ranks: options.ranks,
    classes: source.classes,
    splits: { train, val },
  };
  await writeFileAtomic(join(folder, PREPARED_INDEX), `${JSON.stringify(index)}\n`);
  return index;
}

/** The shuffled order cut into a multiple of `ranks` packs of equal size (to one), each at most about `samplesPerPack`. */
export function packMembers(order: Uint32Array, ranks: number, samplesPerPack: number): Uint32Array[] {
  if (order.length === 0) return [];
  const packCount = ranks * Math.max(1, Math.ceil(order.length / (ranks * samplesPerPack)));
  return Array.from({ length: packCount }, (_, p) =>
    order.subarray(Math.floor((p * order.length) / packCount), Math.floor(((p + 1) * order.length) / packCount)),
  );
}

async function writePack(
  folder: string,
  file: string,
  split: PrepareSourceSplit,
  members: Uint32Array,
  options: PrepareOptions,
  bad: PreparedBadSample[],
  advance: (n: number) => void,
): Promise<PackEntry> {
  const path = join(folder, file);
  const partial = `${path}.partial`;
  const records: Array<{ offset: number; length: number; label: number; crc: number }> = [];
  let handle: FileHandle | undefined;
  let offset = 0;
  try {
    handle = await open(partial, 'w');
    for (let start = 0; start < members.length; start += options.parallel) {
      const chunk = Array.from(members.subarray(start, start + options.parallel));
      const encoded = await reencodeChunk(split, chunk, options);
      for (const sample of encoded) {
        if ('bad' in sample) {
          if (options.badSamples === 'fail') throw badSampleError(sample.bad);
          bad.push(sample.bad);
          continue;
        }
        await handle.write(sample.bytes, 0, sample.bytes.length, offset);
        records.push({ offset, length: sample.bytes.length, label: split.labelOf(sample.index), crc: crc32c(sample.bytes) });
        offset += sample.bytes.length;
      }
      advance(chunk.length);
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(partial, path);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(partial, { force: true }).catch(() => undefined);
    throw error instanceof InputError ? error : fileSystemError(path, 'write the pack', error);
  }
  return { file, count: records.length, bytes: offset, ...encodeColumns(records) };
}

async function reencodeChunk(split: PrepareSourceSplit, indices: number[], options: PrepareOptions) {
  const read = await split.readEncoded(indices);
  return Promise.all(
    read.map(async (sample): Promise<{ index: number; bytes: Buffer } | { index: number; bad: PreparedBadSample }> => {
      if ('bad' in sample) return sample;
      try {
        return { index: sample.index, bytes: await reencodeImage(sample.bytes, options.shortSide, options.quality, options.encoding) };
      } catch (error) {
        if (!(error instanceof DecodeError)) throw error;
        return { index: sample.index, bad: { file: split.describe(sample.index), reason: `does not decode: ${error.message}` } };
      }
    }),
  );
}

function badSampleError(sample: PreparedBadSample): InputError {
  const where = sample.offset === undefined ? sample.file : `${sample.file} (offset ${sample.offset})`;
  return new InputError(where, sample.reason, { expected: 'a readable image (run with --bad-samples skip to leave such samples out)' });
}
