/**
 * Finding ImageNet's TFRecord shards in a directory: the tensorflow/models builder's `train-00000-of-01024`
 * ... `validation-00127-of-00128`, or TFDS's `imagenet2012-train.tfrecord-00000-of-01024` ... with its
 * `label.labels.txt` (the class names in label order). Every shard a split announces must be there.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileSystemError } from '../../../shared/atomic-file.js';
import { InputError } from '../../../shared/errors.js';
import type { RecordKeySet } from './example-keys.js';

const SHARD_NAMES: Readonly<Record<RecordKeySet, RegExp>> = {
  'tfrecord-models': /^(train|validation)-(\d{5})-of-(\d{5})$/,
  'tfrecord-tfds': /^imagenet2012-(train|validation)\.tfrecord-(\d{5})-of-(\d{5})$/,
};
/** TFDS writes the names of a ClassLabel feature beside the shards, one per line in label order. */
export const TFDS_LABEL_NAMES_FILE = 'label.labels.txt';

export interface RecordLayout {
  readonly root: string;
  readonly keys: RecordKeySet;
  /** Shard paths, absolute, in shard order. */
  readonly train: readonly string[];
  readonly val: readonly string[];
  /** TFDS's label names file, where present. */
  readonly labelNames: string | undefined;
}

/** The TFRecord layout among a directory's entry names, or undefined when it holds no shards. */
export function findRecordLayout(root: string, names: readonly string[]): RecordLayout | undefined {
  for (const keys of ['tfrecord-models', 'tfrecord-tfds'] as const) {
    const shards = { train: new Map<number, string>(), validation: new Map<number, string>() };
    const totals = { train: new Set<number>(), validation: new Set<number>() };
    for (const name of names) {
      const match = SHARD_NAMES[keys].exec(name);
      if (!match) continue;
      const split = match[1] as 'train' | 'validation';
      shards[split].set(Number(match[2]), name);
      totals[split].add(Number(match[3]));
    }
    if (shards.train.size === 0 && shards.validation.size === 0) continue;
    return {
      root,
      keys,
      train: completeShards(root, 'train', shards.train, totals.train),
      val: completeShards(root, 'validation', shards.validation, totals.validation),
      labelNames: keys === 'tfrecord-tfds' && names.includes(TFDS_LABEL_NAMES_FILE) ? join(root, TFDS_LABEL_NAMES_FILE) : undefined,
    };
  }
  return undefined;
}

/** What the index depends on: every shard's name, size and modification time, and the label names file's. */
export async function recordFingerprint(layout: RecordLayout): Promise<string> {
  const files = [...layout.train, ...layout.val, ...(layout.labelNames === undefined ? [] : [layout.labelNames])];
  const lines: string[] = [];
  for (const file of files) {
    try {
      const info = await stat(file, { bigint: true });
      lines.push(`${file.slice(layout.root.length + 1)} ${info.size} ${info.mtimeNs}`);
    } catch (error) {
      throw fileSystemError(file, 'read the size of', error);
    }
  }
  return lines.join('\n');
}

function completeShards(root: string, split: string, shards: ReadonlyMap<number, string>, totals: ReadonlySet<number>): string[] {
  if (shards.size === 0) throw new InputError(root, `has no ${split} shards`, { expected: `${split} TFRecord files beside the others` });
  if (totals.size !== 1) {
    throw new InputError(root, `${split} shards disagree on their number`, { found: [...totals].map((total) => `-of-${pad(total)}`).join(', ') });
  }
  const total = [...totals][0]!;
  const example = [...shards.values()][0]!;
  const missing: string[] = [];
  for (let n = 0; n < total; n++) if (!shards.has(n)) missing.push(example.replace(/\d{5}(?=-of-)/, pad(n)));
  if (missing.length > 0) {
    throw new InputError(root, `${split} shards are missing`, {
      expected: `all ${total} of them`,
      found: `${missing.length} missing: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
    });
  }
  const beyond = [...shards.keys()].filter((n) => n >= total);
  if (beyond.length > 0) throw new InputError(join(root, shards.get(beyond[0]!)!), `is numbered past the ${total} ${split} shards its name announces`);
  return [...shards.keys()].sort((a, b) => a - b).map((n) => join(root, shards.get(n)!));
}

function pad(n: number): string {
  return String(n).padStart(5, '0');
}
