/**
 * Indexing TFRecord shards: one sequential pass over every record (both CRCs checked, the Example decoded)
 * gives each record's offset, length and class. Classes are the sorted WordNet IDs: the training records'
 * synsets (tensorflow/models keys), or TFDS's label names (label.labels.txt, else the WordNet IDs that the
 * training records' file names carry). A record whose label and WordNet ID disagree is bad, never guessed.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import type protobuf from 'protobufjs';
import { fileSystemError } from '../../../shared/atomic-file.js';
import { InputError } from '../../../shared/errors.js';
import type { BadSample, CatalogIndex, RecordShard, SplitIndex } from './catalog-types.js';
import { decodeExample } from './example.js';
import { type RecordFacts, recordFacts } from './example-keys.js';
import { mapLimited } from './parallel.js';
import type { RecordLayout } from './record-layout.js';
import { isGzipFile, scanRecords } from './tfrecord.js';

/** Shards scanned at once: each scan is sequential, a few in flight keep a disk or network busy. */
const SCAN_CONCURRENCY = 4;
const WNID = /^n\d{8}$/;

interface ScannedRecord {
  readonly offset: number;
  readonly length: number;
  readonly wnid: string | undefined;
  readonly label: number | undefined;
}

interface ScannedShard {
  readonly file: string;
  readonly gzip: boolean;
  readonly records: readonly ScannedRecord[];
  readonly bad: readonly BadSample[];
}

export async function indexRecords(layout: RecordLayout, exampleType: protobuf.Type): Promise<CatalogIndex> {
  const scan = (files: readonly string[]) => mapLimited(files, SCAN_CONCURRENCY, (file) => scanShard(layout, file, exampleType));
  const train = await scan(layout.train);
  const val = await scan(layout.val);
  const resolve = layout.keys === 'tfrecord-models' ? bySynset(train) : byLabelNames(train, await readLabelNames(layout));
  return { layout: layout.keys, classes: resolve.classes, train: toSplit(train, resolve.classify), val: toSplit(val, resolve.classify) };
}

async function scanShard(layout: RecordLayout, path: string, exampleType: protobuf.Type): Promise<ScannedShard> {
  const file = relative(layout.root, path);
  const gzip = await isGzipFile(path);
  const records: ScannedRecord[] = [];
  const bad: BadSample[] = [];
  for await (const record of scanRecords(path, gzip)) {
    if ('bad' in record) {
      bad.push({ file, offset: record.offset, reason: record.bad });
      continue;
    }
    const facts = readFacts(layout, exampleType, record.data);
    if ('problem' in facts) bad.push({ file, offset: record.offset, reason: facts.problem });
    else records.push({ offset: record.offset, length: record.data.length, wnid: facts.wnid, label: facts.label });
  }
  return { file, gzip, records, bad };
}

function readFacts(layout: RecordLayout, exampleType: protobuf.Type, data: Buffer): RecordFacts | { problem: string } {
  try {
    return recordFacts(layout.keys, decodeExample(exampleType, data));
  } catch (error) {
    return { problem: `not a tf.train.Example (${(error as Error).message})` };
  }
}

/** A record's class, or why it has none. */
type Classify = (record: ScannedRecord) => number | string;

interface Resolution {
  readonly classes: string[];
  readonly classify: Classify;
}

/** tensorflow/models keys: the synset is the class; the 1-based label must be the one most training records of that synset carry. */
function bySynset(train: readonly ScannedShard[]): Resolution {
  const records = train.flatMap((shard) => shard.records);
  const classes = [...new Set(records.map((record) => record.wnid!))].sort();
  const classOf = new Map(classes.map((wnid, index) => [wnid, index]));
  const labelOf = mostCommon(records.flatMap((record) => (record.label === undefined ? [] : [[record.wnid!, record.label] as const])));
  return {
    classes,
    classify: (record) => {
      const index = classOf.get(record.wnid!);
      if (index === undefined) return unknownClass(record.wnid!);
      const expected = labelOf.get(record.wnid!);
      if (record.label !== undefined && expected !== undefined && record.label !== expected) {
        return `image/class/label ${record.label + 1} disagrees with image/class/synset ${record.wnid}, labelled ${expected + 1} in the training records`;
      }
      return index;
    },
  };
}

/** TFDS keys: the label names a WordNet ID (label.labels.txt, else the training file names); a file name's WordNet ID must agree. */
function byLabelNames(train: readonly ScannedShard[], labelNames: readonly string[] | undefined): Resolution {
  const names = labelNames ?? namesFromFileNames(train);
  const classes = [...new Set(names.filter((name) => name !== undefined))].sort();
  const classOf = new Map(classes.map((wnid, index) => [wnid, index]));
  return {
    classes,
    classify: (record) => {
      const wnid = names[record.label!];
      if (wnid === undefined) return `label ${record.label} names no class (${names.length} labels known)`;
      if (record.wnid !== undefined && record.wnid !== wnid) return `label ${record.label} (${wnid}) disagrees with file_name's WordNet ID ${record.wnid}`;
      return classOf.get(wnid)!;
    },
  };
}

/** label → WordNet ID from the training records' file names, each label taking its most common one. */
function namesFromFileNames(train: readonly ScannedShard[]): string[] {
  const records = train.flatMap((shard) => shard.records);
  const names: string[] = [];
  for (const [label, wnid] of mostCommon(records.flatMap((record) => (record.wnid === undefined ? [] : [[record.label!, record.wnid] as const]))))
    names[label] = wnid;
  return names;
}

/** For each key, the value paired with it most often (ties to the smaller value), so that a few wrong records cannot set the rule. */
function mostCommon<K, V extends string | number>(pairs: ReadonlyArray<readonly [K, V]>): Map<K, V> {
  const votes = new Map<K, Map<V, number>>();
  for (const [key, value] of pairs) {
    const counts = votes.get(key) ?? new Map<V, number>();
    counts.set(value, (counts.get(value) ?? 0) + 1);
    votes.set(key, counts);
  }
  const winners = new Map<K, V>();
  for (const [key, counts] of votes) winners.set(key, [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]![0]);
  return winners;
}

async function readLabelNames(layout: RecordLayout): Promise<string[] | undefined> {
  if (layout.labelNames === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(layout.labelNames, 'utf8');
  } catch (error) {
    throw fileSystemError(layout.labelNames, 'read label names', error);
  }
  const names = text.split(/\r?\n/).filter((line) => line.trim() !== '');
  const wrong = names.findIndex((name) => !WNID.test(name.trim()));
  if (wrong >= 0) throw new InputError(`${layout.labelNames}, line ${wrong + 1}`, 'is not a WordNet ID', { found: JSON.stringify(names[wrong]) });
  return names.map((name) => name.trim());
}

function toSplit(shards: readonly ScannedShard[], classify: Classify): SplitIndex {
  const bad: BadSample[] = [];
  const indexed: RecordShard[] = shards.map((shard) => {
    bad.push(...shard.bad);
    const kept = { offsets: [] as number[], lengths: [] as number[], labels: [] as number[] };
    for (const record of shard.records) {
      const label = classify(record);
      if (typeof label === 'string') bad.push({ file: shard.file, offset: record.offset, reason: label });
      else {
        kept.offsets.push(record.offset);
        kept.lengths.push(record.length);
        kept.labels.push(label);
      }
    }
    return { file: shard.file, gzip: shard.gzip, ...kept };
  });
  bad.sort((a, b) => (a.file === b.file ? a.offset! - b.offset! : a.file < b.file ? -1 : 1));
  return { kind: 'records', shards: indexed, bad };
}

function unknownClass(wnid: string): string {
  return `unknown WordNet ID ${wnid}: not among the training classes`;
}
