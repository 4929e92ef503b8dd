/**
 * The catalog's data model: what `openCatalog` returns (the contract the ImageNet source is built on) and
 * the index it is built from, which is what the index cache stores.
 */

export type CatalogLayout = 'folders' | 'tfrecord-models' | 'tfrecord-tfds' | 'prepared';

/** A sample that cannot be used, and why: `file` is absolute; `offset` is a record's position in a TFRecord or pack file. */
export interface BadSample {
  readonly file: string;
  readonly offset?: number;
  readonly reason: string;
}

export type EncodedSample = { readonly index: number; readonly bytes: Buffer } | { readonly index: number; readonly bad: BadSample };

/** A file of records and the sample indices [first, first + count) it holds. */
export interface ShardRange {
  readonly file: string;
  readonly first: number;
  readonly count: number;
}

export interface CatalogSplit {
  /** Usable samples: indices 0 to count - 1. Samples found bad while indexing are not among them. */
  readonly count: number;
  /** The sample's class: the position of its WordNet ID in the sorted class list. */
  labelOf(index: number): number;
  /** Where the sample lives: its file, or file@offset for a record. */
  describe(index: number): string;
  /** Record files with their index ranges, in index order; empty for folders of image files. */
  readonly shards: readonly ShardRange[];
  /**
   * The encoded image bytes of each index, in the order asked, read file by file (records of one file in
   * increasing offset order). A sample that cannot be read comes back as `bad`, naming its file and offset.
   */
  readEncoded(indices: readonly number[]): Promise<EncodedSample[]>;
  /** Samples found unusable while indexing (unknown WordNet ID, no ground truth, broken record, ...). */
  readonly bad: readonly BadSample[];
}

export interface ImageNetCatalog {
  /** The dataset directory, absolute. */
  readonly root: string;
  readonly layout: CatalogLayout;
  /** The classes' WordNet IDs, sorted; a label is a position in this list. */
  readonly classes: readonly string[];
  readonly train: CatalogSplit;
  readonly val: CatalogSplit;
}

export type BadSamplePolicy = 'fail' | 'skip';

/** Image files of one folder that share a label, or each with its own. Paths are relative to the dataset root. */
export interface FileGroup {
  readonly dir: string;
  readonly names: readonly string[];
  readonly labels: number | readonly number[];
}

/** The records of one TFRecord file: each record's header offset (in the uncompressed stream), data length and class. */
export interface RecordShard {
  readonly file: string;
  readonly gzip: boolean;
  readonly offsets: readonly number[];
  readonly lengths: readonly number[];
  readonly labels: readonly number[];
}

/** A split as indexed; the bad samples' files are relative to the dataset root here. */
export type SplitIndex =
  | { readonly kind: 'files'; readonly groups: readonly FileGroup[]; readonly bad: readonly BadSample[] }
  | { readonly kind: 'records'; readonly shards: readonly RecordShard[]; readonly bad: readonly BadSample[] };

/** Everything needed to open a dataset again without listing or scanning it. */
export interface CatalogIndex {
  readonly layout: Exclude<CatalogLayout, 'prepared'>;
  readonly classes: readonly string[];
  readonly train: SplitIndex;
  readonly val: SplitIndex;
}
