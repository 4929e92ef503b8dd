import { type FileHandle, open, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { fileSystemError } from '../../../shared/atomic-file.js';
import { InputError } from '../../../shared/errors.js';

/**
 * The prepared cache (`autoprune data prepare`, prepared-writer.ts): a dataset re-encoded once, its shorter
 * side at most `shortSide`, as JPEGs or as raw RGB records (raw-image.ts), in a few large pack files, so
 * that training reads small images sequentially instead of opening 1.28M files. On disk, under the dataset
 * folder:
 *
 *   prepared/index.json       this format, the classes, and per split its packs, each with its records'
 *                             offsets, lengths, labels and CRC-32C, as base64 of little-endian arrays
 *   prepared/pack-00000.bin   the records (JPEG or raw) back to back, nothing between them
 *
 * A split's samples are the source's in a seeded shuffle, so that every pack, and so every rank's share of
 * packs, mixes the classes. With `ranks` N the packs of a split are a multiple of N with equal counts (to
 * one), so a plan can give each rank whole packs. The catalog (catalog.ts) opens this as a layout.
 */

export const PREPARED_FOLDER = 'prepared';
export const PREPARED_INDEX = 'index.json';
export const PREPARED_FORMAT = 'autoprune-prepared';
export const PREPARED_VERSION = 1;

export type SplitName = 'train' | 'val';

/** One pack as index.json stores it. */
export interface PackEntry {
  readonly file: string;
  readonly count: number;
  readonly bytes: number;
  /** base64 of little-endian arrays of `count` entries: float64 offsets, uint32 lengths, uint16 labels, uint32 CRC-32C. */
  readonly offsets: string;
  readonly lengths: string;
  readonly labels: string;
  readonly crc32c: string;
}

export interface PreparedBadSample {
  readonly file: string;
  readonly offset?: number;
  readonly reason: string;
}

export interface PreparedIndex {
  readonly format: typeof PREPARED_FORMAT;
  readonly version: typeof PREPARED_VERSION;
  readonly shortSide: number;
  readonly quality: number;
  /** `jpeg` records, or `raw` ones (raw-image.ts); decode.ts reads both. */
  readonly encoding: 'jpeg' | 'raw';
  readonly ranks: number;
  readonly classes: readonly string[];
  readonly splits: Record<SplitName, { readonly packs: readonly PackEntry[]; readonly bad: readonly PreparedBadSample[] }>;
}

export type PreparedSample = { readonly index: number; readonly bytes: Buffer } | { readonly index: number; readonly bad: PreparedBadSample };

/** Where one record lives. */
interface RecordTable {
  readonly file: string;
  readonly first: number;
  readonly offsets: Float64Array;
  readonly lengths: Uint32Array;
  readonly labels: Uint16Array;
  readonly crcs: Uint32Array;
}

/** A split of the prepared cache, shaped as the catalog's CatalogSplit. */
export class PreparedSplit {
  readonly count: number;
  readonly shards: ReadonlyArray<{ readonly file: string; readonly first: number; readonly count: number }>;

  constructor(
    private readonly packs: readonly RecordTable[],
    /** Samples left out when the cache was written, with their source file and why. */
    readonly bad: readonly PreparedBadSample[],
  ) {
    this.count = packs.reduce((sum, pack) => sum + pack.offsets.length, 0);
    this.shards = packs.map((pack) => ({ file: pack.file, first: pack.first, count: pack.offsets.length }));
  }

  labelOf(index: number): number {
    const { pack, position } = this.locate(index);
    return pack.labels[position]!;
  }

  describe(index: number): string {
    const { pack, position } = this.locate(index);
    return `${pack.file}@${pack.offsets[position]}`;
  }

  /** The records' bytes in the order asked; each pack is opened once and read in increasing offset order. */
  async readEncoded(indices: readonly number[]): Promise<PreparedSample[]> {
    const results = new Array<PreparedSample>(indices.length);
    const byPack = new Map<RecordTable, Array<{ slot: number; position: number }>>();
    indices.forEach((index, slot) => {
      const { pack, position } = this.locate(index);
      const wanted = byPack.get(pack) ?? [];
      wanted.push({ slot, position });
      byPack.set(pack, wanted);
    });
    await Promise.all(
      [...byPack].map(async ([pack, wanted]) => {
        wanted.sort((a, b) => pack.offsets[a.position]! - pack.offsets[b.position]!);
        const handle = await openPack(pack.file);
        try {
          for (const { slot, position } of wanted) results[slot] = await readRecord(handle, pack, position, indices[slot]!);
        } finally {
          await handle.close();
        }
      }),
    );
    return results;
  }

  private locate(index: number): { pack: RecordTable; position: number } {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) throw new RangeError(`sample ${index} is out of range (count ${this.count})`);
    let low = 0;
    let high = this.packs.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.packs[middle]!.first <= index) low = middle;
      else high = middle - 1;
    }
    return { pack: this.packs[low]!, position: index - this.packs[low]!.first };
  }
}

async function openPack(file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r');
  } catch (error) {
    throw fileSystemError(file, 'open the pack file', error);
  }
}

async function readRecord(handle: FileHandle, pack: RecordTable, position: number, index: number): Promise<PreparedSample> {
  const offset = pack.offsets[position]!;
  const bytes = Buffer.allocUnsafeSlow(pack.lengths[position]!);
  const { bytesRead } = await handle.read(bytes, 0, bytes.length, offset);
  if (bytesRead < bytes.length)
    return { index, bad: { file: pack.file, offset, reason: `the pack ends ${bytesRead} bytes into this ${bytes.length}-byte record (truncated)` } };
  if (crc32c(bytes) !== pack.crcs[position])
    return { index, bad: { file: pack.file, offset, reason: 'CRC-32C mismatch: the record changed since it was written' } };
  return { index, bytes };
}

export interface PreparedDataset {
  readonly root: string;
  readonly index: PreparedIndex;
  readonly classes: readonly string[];
  readonly train: PreparedSplit;
  readonly val: PreparedSplit;
}

/** Opens `dir`/prepared/; an InputError names what is missing or malformed. */
export async function openPrepared(dir: string): Promise<PreparedDataset> {
  const root = resolve(dir);
  const folder = join(root, PREPARED_FOLDER);
  const indexPath = join(folder, PREPARED_INDEX);
  let text: string;
  try {
    text = await readFile(indexPath, 'utf8');
  } catch (error) {
    throw fileSystemError(indexPath, 'read the prepared index', error);
  }
  const index = parseIndex(text, indexPath);
  const split = (name: SplitName) => {
    let first = 0;
    const tables = index.splits[name].packs.map((entry, p) => {
      const table = recordTable(folder, entry, first, `${indexPath}: splits.${name}.packs[${p}]`);
      first += entry.count;
      return table;
    });
    return new PreparedSplit(tables, index.splits[name].bad);
  };
  return { root, index, classes: index.classes, train: split('train'), val: split('val') };
}

function parseIndex(text: string, where: string): PreparedIndex {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new InputError(where, 'is not JSON', { found: (error as Error).message });
  }
  const index = parsed as Partial<PreparedIndex> | null;
  if (index?.format !== PREPARED_FORMAT || index.version !== PREPARED_VERSION) {
    throw new InputError(where, 'is not a prepared-cache index autoprune can read', {
      expected: `format ${JSON.stringify(PREPARED_FORMAT)} version ${PREPARED_VERSION}`,
      found: `format ${JSON.stringify(index?.format)} version ${JSON.stringify(index?.version)}`,
    });
  }
  const splitsOk = (['train', 'val'] as const).every((name) => Array.isArray(index.splits?.[name]?.packs) && Array.isArray(index.splits?.[name]?.bad));
  if (!Array.isArray(index.classes) || !splitsOk) throw new InputError(where, 'lacks its classes or its splits (train and val, each with packs and bad)');
  return index as PreparedIndex;
}

function recordTable(folder: string, entry: PackEntry, first: number, where: string): RecordTable {
  const column = (text: string, bytesEach: number, name: string) => {
    const bytes = Buffer.from(text ?? '', 'base64');
    if (bytes.length !== entry.count * bytesEach) {
      throw new InputError(where, `${name} does not hold ${entry.count} entries`, { expected: `${entry.count * bytesEach} bytes`, found: `${bytes.length}` });
    }
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
  const offsetView = column(entry.offsets, 8, 'offsets');
  const lengthView = column(entry.lengths, 4, 'lengths');
  const labelView = column(entry.labels, 2, 'labels');
  const crcView = column(entry.crc32c, 4, 'crc32c');
  const table: RecordTable = {
    file: join(folder, entry.file),
    first,
    offsets: new Float64Array(entry.count),
    lengths: new Uint32Array(entry.count),
    labels: new Uint16Array(entry.count),
    crcs: new Uint32Array(entry.count),
  };
  for (let i = 0; i < entry.count; i++) {
    table.offsets[i] = offsetView.getFloat64(i * 8, true);
    table.lengths[i] = lengthView.getUint32(i * 4, true);
    table.labels[i] = labelView.getUint16(i * 2, true);
    table.crcs[i] = crcView.getUint32(i * 4, true);
  }
  return table;
}

/** Little-endian base64 columns of a pack's records, as index.json stores them. */
export function encodeColumns(
  records: ReadonlyArray<{ offset: number; length: number; label: number; crc: number }>,
): Pick<PackEntry, 'offsets' | 'lengths' | 'labels' | 'crc32c'> {
  const offsets = Buffer.alloc(records.length * 8);
  const lengths = Buffer.alloc(records.length * 4);
  const labels = Buffer.alloc(records.length * 2);
  const crcs = Buffer.alloc(records.length * 4);
  records.forEach((record, i) => {
    offsets.writeDoubleLE(record.offset, i * 8);
    lengths.writeUInt32LE(record.length, i * 4);
    labels.writeUInt16LE(record.label, i * 2);
    crcs.writeUInt32LE(record.crc, i * 4);
  });
  return { offsets: offsets.toString('base64'), lengths: lengths.toString('base64'), labels: labels.toString('base64'), crc32c: crcs.toString('base64') };
}
