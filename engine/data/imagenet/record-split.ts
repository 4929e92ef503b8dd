/**
 * A split whose samples are TFRecords: each index is a record of a shard, read at its indexed offset with
 * both CRCs checked again (the file may have changed since it was indexed), its Example decoded for the image.
 */
import { join } from 'node:path';
import type protobuf from 'protobufjs';
import type { RecordRead } from '../../../shared/tfrecord-framing.js';
import type { BadSample, CatalogSplit, EncodedSample, RecordShard, ShardRange } from './catalog-types.js';
import { decodeExample } from './example.js';
import { type RecordKeySet, recordFacts } from './example-keys.js';
import { mapLimited } from './parallel.js';
import { openTfrecordFile, readRecordAt, SequentialRecordReader } from './tfrecord.js';

/** Shards read at once by one call. */
const SHARD_CONCURRENCY = 4;

export class RecordSplit implements CatalogSplit {
  readonly count: number;
  readonly shards: readonly ShardRange[];
  readonly bad: readonly BadSample[];
  private readonly files: readonly string[];

  constructor(
    root: string,
    private readonly records: readonly RecordShard[],
    bad: readonly BadSample[],
    private readonly keys: RecordKeySet,
    private readonly exampleType: protobuf.Type,
  ) {
    let first = 0;
    this.files = records.map((shard) => join(root, shard.file));
    this.shards = records.map((shard, s) => {
      const range = { file: this.files[s]!, first, count: shard.offsets.length };
      first += range.count;
      return range;
    });
    this.count = first;
    this.bad = bad.map((sample) => ({ ...sample, file: join(root, sample.file) }));
  }

  labelOf(index: number): number {
    const { shard, position } = this.locate(index);
    return this.records[shard]!.labels[position]!;
  }

  describe(index: number): string {
    const { shard, position } = this.locate(index);
    return `${this.files[shard]}@${this.records[shard]!.offsets[position]}`;
  }

  async readEncoded(indices: readonly number[]): Promise<EncodedSample[]> {
    const byShard = new Map<number, Array<{ index: number; position: number; slot: number }>>();
    indices.forEach((index, slot) => {
      const { shard, position } = this.locate(index);
      const wanted = byShard.get(shard) ?? [];
      wanted.push({ index, position, slot });
      byShard.set(shard, wanted);
    });
    const results = new Array<EncodedSample>(indices.length);
    await mapLimited([...byShard], SHARD_CONCURRENCY, async ([shard, wanted]) => {
      const records = this.records[shard]!;
      wanted.sort((a, b) => records.offsets[a.position]! - records.offsets[b.position]!);
      const read = await this.shardReader(shard);
      try {
        for (const { index, position, slot } of wanted) {
          const offset = records.offsets[position]!;
          results[slot] = this.toSample(index, shard, offset, await read.recordAt(offset, records.lengths[position]!));
        }
      } finally {
        await read.close();
      }
    });
    return results;
  }

  /** Positioned reads for a plain file; one stream from the start for a GZIP one. */
  private async shardReader(shard: number): Promise<{ recordAt(offset: number, length: number): Promise<RecordRead>; close(): Promise<void> }> {
    const file = this.files[shard]!;
    if (this.records[shard]!.gzip) {
      const reader = new SequentialRecordReader(file, true);
      return { recordAt: (offset, length) => reader.recordAt(offset, length), close: () => reader.close() };
    }
    const handle = await openTfrecordFile(file);
    return { recordAt: (offset, length) => readRecordAt(handle, offset, length), close: () => handle.close() };
  }

  private toSample(index: number, shard: number, offset: number, read: RecordRead): EncodedSample {
    const file = this.files[shard]!;
    if ('bad' in read) return { index, bad: { file, offset, reason: read.bad } };
    let facts: ReturnType<typeof recordFacts>;
    try {
      facts = recordFacts(this.keys, decodeExample(this.exampleType, read.data));
    } catch (error) {
      return { index, bad: { file, offset, reason: `not a tf.train.Example (${(error as Error).message})` } };
    }
    return 'problem' in facts ? { index, bad: { file, offset, reason: facts.problem } } : { index, bytes: facts.image };
  }

  private locate(index: number): { shard: number; position: number } {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) throw new RangeError(`sample ${index} is out of range (count ${this.count})`);
    let low = 0;
    let high = this.shards.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.shards[middle]!.first <= index) low = middle;
      else high = middle - 1;
    }
    return { shard: low, position: index - this.shards[low]!.first };
  }
}
