/** A split whose samples are image files, one per sample, in folders (the folder layout's train and val). */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BadSample, CatalogSplit, EncodedSample, FileGroup, ShardRange } from './catalog-types.js';
import { mapLimited } from './parallel.js';

/** Files read at once: small files, so latency rather than bandwidth is what concurrency hides. */
const READ_CONCURRENCY = 16;

export class FileSplit implements CatalogSplit {
  readonly count: number;
  readonly shards: readonly ShardRange[] = [];
  readonly bad: readonly BadSample[];
  /** The index of each group's first sample. */
  private readonly starts: number[] = [];

  constructor(
    private readonly root: string,
    private readonly groups: readonly FileGroup[],
    bad: readonly BadSample[],
  ) {
    let count = 0;
    for (const group of groups) {
      this.starts.push(count);
      count += group.names.length;
    }
    this.count = count;
    this.bad = bad.map((sample) => ({ ...sample, file: join(root, sample.file) }));
  }

  labelOf(index: number): number {
    const { group, position } = this.locate(index);
    return typeof group.labels === 'number' ? group.labels : group.labels[position]!;
  }

  describe(index: number): string {
    const { group, position } = this.locate(index);
    return join(this.root, group.dir, group.names[position]!);
  }

  readEncoded(indices: readonly number[]): Promise<EncodedSample[]> {
    return mapLimited(indices, READ_CONCURRENCY, async (index): Promise<EncodedSample> => {
      const file = this.describe(index);
      try {
        const bytes = await readFile(file);
        return bytes.length > 0 ? { index, bytes } : { index, bad: { file, reason: 'empty file' } };
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === undefined) throw error;
        return { index, bad: { file, reason: `cannot read the file (${code})` } };
      }
    });
  }

  private locate(index: number): { group: FileGroup; position: number } {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) throw new RangeError(`sample ${index} is out of range (count ${this.count})`);
    let low = 0;
    let high = this.starts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.starts[middle]! <= index) low = middle;
      else high = middle - 1;
    }
    return { group: this.groups[low]!, position: index - this.starts[low]! };
  }
}
