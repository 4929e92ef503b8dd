/**
 * ImageNet (ILSVRC-2012) as users store it, behind one catalog: which samples there are, their classes, and
 * their encoded image bytes. Layouts: image folders (folders.ts), the tensorflow/models builder's TFRecord
 * shards and TFDS's imagenet2012 files (record-layout.ts), and the prepared cache that `autoprune data prepare`
 * writes (prepared.ts). The index (file list with labels, or record offsets per shard) is built once and
 * cached in `cacheDir`; the prepared cache carries its own.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type protobuf from 'protobufjs';
import { fileSystemError } from '../../../shared/atomic-file.js';
import { InputError } from '../../../shared/errors.js';
import { requireDataDirectory } from '../dataset.js';
import type { BadSamplePolicy, CatalogIndex, CatalogSplit, ImageNetCatalog, SplitIndex } from './catalog-types.js';
import { loadExampleType } from './example.js';
import { FileSplit } from './file-split.js';
import { type FolderLayout, findFolderLayout, folderFingerprint, indexFolders } from './folders.js';
import { indexCachePath, indexKey, readCachedIndex, writeCachedIndex } from './index-cache.js';
import { openPrepared, PREPARED_FOLDER, PREPARED_INDEX } from './prepared.js';
import { indexRecords } from './record-index.js';
import { findRecordLayout, type RecordLayout, recordFingerprint } from './record-layout.js';
import { RecordSplit } from './record-split.js';

export type { BadSample, BadSamplePolicy, CatalogLayout, CatalogSplit, EncodedSample, ImageNetCatalog, ShardRange } from './catalog-types.js';

export interface OpenCatalogOptions {
  /** Where the index is cached; without one the dataset is listed (or its records scanned) on every open. */
  readonly cacheDir?: string;
  /** `fail`: any sample found bad while indexing is an InputError naming it; `skip`: such samples are left out and listed in each split's `bad`. */
  readonly badSamples: BadSamplePolicy;
}

type Source = { readonly kind: 'folders'; readonly layout: FolderLayout } | { readonly kind: 'records'; readonly layout: RecordLayout };

export async function openCatalog(dir: string, options: OpenCatalogOptions): Promise<ImageNetCatalog> {
  await requireDataDirectory(dir);
  const root = resolve(dir);
  // A prepared cache beside the images it was made from is what the user prepared for training.
  if (await isFile(join(root, PREPARED_FOLDER, PREPARED_INDEX))) return checked(await openPreparedCatalog(root), options.badSamples);
  if (basename(root) === PREPARED_FOLDER && (await isFile(join(root, PREPARED_INDEX))))
    return checked(await openPreparedCatalog(dirname(root)), options.badSamples);
  const source = await detectSource(root);
  const keys = source.kind === 'records' ? source.layout.keys : undefined;
  const exampleType = keys === undefined ? undefined : loadExampleType();
  const index = await loadIndex(root, source, options.cacheDir, exampleType);
  // Folders index as files and shards as records, so keys and exampleType are there whenever records are.
  const split = (indexed: SplitIndex): CatalogSplit =>
    indexed.kind === 'files' ? new FileSplit(root, indexed.groups, indexed.bad) : new RecordSplit(root, indexed.shards, indexed.bad, keys!, exampleType!);
  return checked({ root, layout: index.layout, classes: index.classes, train: split(index.train), val: split(index.val) }, options.badSamples);
}

async function openPreparedCatalog(root: string): Promise<ImageNetCatalog> {
  const prepared = await openPrepared(root);
  return { root, layout: 'prepared', classes: prepared.classes, train: prepared.train, val: prepared.val };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function detectSource(root: string): Promise<Source> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (error) {
    throw fileSystemError(root, 'list the dataset folder', error);
  }
  const folders = await findFolderLayout(root);
  const records = findRecordLayout(root, names);
  if (folders && records) {
    throw new InputError(root, 'holds both image folders and TFRecord shards', {
      expected: 'one layout per data.dir',
      found: `${folders.images}/train and ${records.train[0]}`,
    });
  }
  if (folders) return { kind: 'folders', layout: folders };
  if (records) return { kind: 'records', layout: records };
  throw new InputError(root, 'is not an ImageNet layout autoprune recognises', {
    expected:
      'train/<wnid>/*.JPEG with val/ (synset folders, or flat with LOC_val_solution.csv or ILSVRC2012_validation_ground_truth.txt), ' +
      'TFRecord shards (train-00000-of-01024 ..., validation-00000-of-00128 ...), or TFDS files (imagenet2012-train.tfrecord-00000-of-01024 ...)',
    found: names.length === 0 ? 'an empty folder' : `${names.slice(0, 5).join(', ')}${names.length > 5 ? ', ...' : ''}`,
  });
}

async function loadIndex(root: string, source: Source, cacheDir: string | undefined, exampleType: protobuf.Type | undefined): Promise<CatalogIndex> {
  const fingerprint = source.kind === 'folders' ? await folderFingerprint(source.layout) : await recordFingerprint(source.layout);
  const key = indexKey(source.kind === 'folders' ? 'folders' : source.layout.keys, fingerprint);
  const cachePath = cacheDir === undefined ? undefined : indexCachePath(resolve(cacheDir), root);
  const cached = cachePath === undefined ? undefined : await readCachedIndex(cachePath, key);
  if (cached) return cached;
  const index = source.kind === 'folders' ? await indexFolders(source.layout) : await indexRecords(source.layout, exampleType!);
  if (cachePath !== undefined) await writeCachedIndex(cachePath, key, index);
  return index;
}

/** The catalog, unless the policy is `fail` and some sample was found bad: then an InputError naming the first. */
function checked(catalog: ImageNetCatalog, policy: BadSamplePolicy): ImageNetCatalog {
  const bad = [...catalog.train.bad, ...catalog.val.bad];
  if (bad.length === 0 || policy === 'skip') return catalog;
  const first = bad[0]!;
  throw new InputError(first.offset === undefined ? first.file : `${first.file}@${first.offset}`, first.reason, {
    found: `${bad.length} bad sample${bad.length === 1 ? '' : 's'} in all (with data.badSamples: skip they are left out and counted; autoprune data check lists them)`,
  });
}
