/**
 * The two key sets of ImageNet TFRecords. The tensorflow/models builder writes `image/encoded`,
 * `image/class/label` (1-based) and `image/class/synset` (the WordNet ID); TFDS `imagenet2012` writes
 * `image`, `label` (0-based) and `file_name` (n01440764_10026.JPEG for training images).
 */
import type protobuf from 'protobufjs';
import { encodeExample, type FeatureValue } from './example.js';

export type RecordKeySet = 'tfrecord-models' | 'tfrecord-tfds';

/** What one record says: its encoded image, its WordNet ID where it names one, its 0-based label where it has one. */
export interface RecordFacts {
  readonly image: Buffer;
  readonly wnid: string | undefined;
  readonly label: number | undefined;
}

const WNID = /^n\d{8}$/;
const WNID_FILE_NAME = /^(n\d{8})_/;

/** A serialized Example with the tensorflow/models builder's keys: the JPEG, 1-based label, synset, file name. */
export function modelsExample(type: protobuf.Type, image: Buffer, label0: number, synset: string, fileName: string): Buffer {
  return encodeExample(type, {
    'image/encoded': image,
    'image/format': 'JPEG',
    'image/class/label': label0 + 1,
    'image/class/synset': synset,
    'image/filename': fileName,
  });
}

export function recordFacts(keys: RecordKeySet, features: ReadonlyMap<string, FeatureValue>): RecordFacts | { readonly problem: string } {
  const facts = readFacts(keys, features);
  if ('image' in facts && facts.image.length === 0) return { problem: 'the encoded image is empty' };
  return facts;
}

function readFacts(keys: RecordKeySet, features: ReadonlyMap<string, FeatureValue>): RecordFacts | { readonly problem: string } {
  if (keys === 'tfrecord-models') {
    const image = single(features, 'image/encoded', 'bytes');
    const synset = single(features, 'image/class/synset', 'bytes');
    if (typeof image === 'string') return { problem: image };
    if (typeof synset === 'string') return { problem: synset };
    const wnid = synset.toString('latin1');
    if (!WNID.test(wnid)) return { problem: `image/class/synset ${JSON.stringify(wnid)} is not a WordNet ID` };
    const label = features.has('image/class/label') ? single(features, 'image/class/label', 'int64') : undefined;
    if (typeof label === 'string') return { problem: label };
    return { image, wnid, label: label === undefined ? undefined : label - 1 };
  }
  const image = single(features, 'image', 'bytes');
  const label = single(features, 'label', 'int64');
  if (typeof image === 'string') return { problem: image };
  if (typeof label === 'string') return { problem: label };
  const fileName = features.has('file_name') ? single(features, 'file_name', 'bytes') : undefined;
  if (typeof fileName === 'string') return { problem: fileName };
  return { image, wnid: fileName === undefined ? undefined : WNID_FILE_NAME.exec(fileName.toString('latin1'))?.[1], label };
}

/** The feature's one value, or a problem saying what is wrong with it. */
function single(features: ReadonlyMap<string, FeatureValue>, name: string, kind: 'bytes'): Buffer | string;
function single(features: ReadonlyMap<string, FeatureValue>, name: string, kind: 'int64'): number | string;
function single(features: ReadonlyMap<string, FeatureValue>, name: string, kind: 'bytes' | 'int64'): Buffer | number | string {
  const feature = features.get(name);
  if (feature === undefined) return `no ${name} feature`;
  if (feature.kind !== kind) return `${name} is a ${feature.kind} list, not ${kind}`;
  if (feature.values.length !== 1) return `${name} holds ${feature.values.length} values, not 1`;
  const value = feature.values[0]!;
  if (typeof value === 'number' && !Number.isSafeInteger(value)) return `${name} ${value} is out of range`;
  return value;
}
