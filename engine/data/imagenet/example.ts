/**
 * tf.train.Example, the message inside each TFRecord of an ImageNet shard, decoded (and, for generated
 * datasets, encoded) with protobufjs from
 * TensorFlow's own example.proto and feature.proto (proto/third_party/tensorflow, Apache-2.0).
 */
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../../../shared/proto/load.js';

const THIRD_PARTY_PROTO_DIR = join(PROTO_DIR, 'third_party');

/** One feature of an Example: a list of byte strings, of 64-bit integers or of floats. */
export type FeatureValue =
  | { readonly kind: 'bytes'; readonly values: readonly Buffer[] }
  | { readonly kind: 'int64'; readonly values: readonly number[] }
  | { readonly kind: 'float'; readonly values: readonly number[] };

interface DecodedFeature {
  bytesList?: { value: Buffer[] } | null;
  int64List?: { value: Array<number | protobuf.Long> } | null;
  floatList?: { value: number[] } | null;
}

/** The `tensorflow.Example` message type, parsed from the .proto files; load it once and reuse it. */
export function loadExampleType(): protobuf.Type {
  const root = new protobuf.Root();
  // example.proto imports "tensorflow/core/example/feature.proto": every path is relative to third_party/.
  root.resolvePath = (_origin, target) => join(THIRD_PARTY_PROTO_DIR, target);
  root.loadSync('tensorflow/core/example/example.proto');
  return root.lookupType('tensorflow.Example');
}

/** A serialized Example: numbers become int64 lists, strings and buffers bytes lists, of one value each. */
export function encodeExample(type: protobuf.Type, features: Readonly<Record<string, Buffer | string | number>>): Buffer {
  const feature: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(features)) {
    feature[name] =
      typeof value === 'number' ? { int64List: { value: [value] } } : { bytesList: { value: [typeof value === 'string' ? Buffer.from(value) : value] } };
  }
  return Buffer.from(type.encode(type.fromObject({ features: { feature } })).finish());
}

/**
 * The features of a serialized Example by name. Byte values are views into `data`, not copies.
 * Throws (protobufjs's error) when `data` is not a well-formed Example.
 */
export function decodeExample(type: protobuf.Type, data: Uint8Array): ReadonlyMap<string, FeatureValue> {
  const message = type.decode(data) as unknown as { features?: { feature?: Record<string, DecodedFeature> } | null };
  const features = new Map<string, FeatureValue>();
  for (const [name, feature] of Object.entries(message.features?.feature ?? {})) {
    if (feature.bytesList) features.set(name, { kind: 'bytes', values: feature.bytesList.value });
    else if (feature.int64List) features.set(name, { kind: 'int64', values: feature.int64List.value.map(int64ToNumber) });
    else if (feature.floatList) features.set(name, { kind: 'float', values: feature.floatList.value });
  }
  return features;
}

function int64ToNumber(value: number | protobuf.Long): number {
  return typeof value === 'number' ? value : protobuf.util.LongBits.from(value).toNumber();
}
