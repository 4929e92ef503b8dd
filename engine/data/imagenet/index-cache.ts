/**
 * The catalog's index, cached so that a restart or a new worker opens the dataset without listing 1.28M files
 * or scanning every record again. One gzip-compressed JSON file per dataset directory, keyed by the dataset's
 * fingerprint (what its listing depends on): a changed dataset does not match its old index and is indexed again.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { createDirectories, fileSystemError, writeFileAtomic } from '../../../shared/atomic-file.js';
import type { CatalogIndex } from './catalog-types.js';

const FORMAT = 'autoprune-imagenet-index';
/** Raised whenever the index's contents change meaning, so that older caches are rebuilt. */
const VERSION = 1;

interface CachedIndex {
  readonly format: typeof FORMAT;
  readonly version: number;
  readonly key: string;
  readonly index: CatalogIndex;
}

/** The cache file of the dataset at `root` (absolute) inside `cacheDir`. */
export function indexCachePath(cacheDir: string, root: string): string {
  return join(cacheDir, `imagenet-index-${sha256(root).slice(0, 16)}.json.gz`);
}

/** The key an index is valid for: its layout and the dataset's fingerprint. */
export function indexKey(layout: string, fingerprint: string): string {
  return sha256(`${FORMAT} ${VERSION}\n${layout}\n${fingerprint}`);
}

/** The cached index if there is one for `key`; a missing, stale or unreadable cache is simply not there. */
export async function readCachedIndex(path: string, key: string): Promise<CatalogIndex | undefined> {
  let cached: Partial<CachedIndex>;
  try {
    cached = JSON.parse((await promisify(gunzip)(await readFile(path))).toString('utf8')) as Partial<CachedIndex>;
  } catch {
    return undefined;
  }
  return cached.format === FORMAT && cached.version === VERSION && cached.key === key ? cached.index : undefined;
}

/** Writes the index atomically: a reader (another worker opening the same dataset) sees the old file or the whole new one. */
export async function writeCachedIndex(path: string, key: string, index: CatalogIndex): Promise<void> {
  const cached: CachedIndex = { format: FORMAT, version: VERSION, key, index };
  try {
    await createDirectories(join(path, '..'));
  } catch (error) {
    throw fileSystemError(join(path, '..'), 'create the index cache folder', error);
  }
  await writeFileAtomic(path, await promisify(gzip)(JSON.stringify(cached)));
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
