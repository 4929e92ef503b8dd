import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { gzipSync } from 'node:zlib';
import type protobuf from 'protobufjs';
import sharp from 'sharp';
import { encodeExample } from '../../engine/data/imagenet/example.js';
import { frameRecords } from '../../shared/tfrecord-framing.js';

/**
 * ImageNet-shaped test data written for real: small JPEGs, image folders, TFRecord files framed as TensorFlow
 * frames them (both CRCs) holding tf.train.Examples encoded with the same .proto files, plain or GZIP.
 */

/** A small JPEG whose colour comes from `seed`, so that different samples have different bytes. */
export function jpeg(seed: number, width = 40, height = 30): Promise<Buffer> {
  const background = { r: (seed * 67) % 256, g: (seed * 131) % 256, b: (seed * 29) % 256 };
  return sharp({ create: { width, height, channels: 3, background } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/** Writes `data` at `path`, creating its folders. */
export function writeFile(path: string, data: Buffer | string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
}

/** Writes a TFRecord file of `records`; returns each record's offset in the uncompressed stream. */
export function writeTfrecordFile(path: string, records: readonly Buffer[], options: { gzip?: boolean } = {}): number[] {
  const { bytes, offsets } = frameRecords(records);
  writeFile(path, options.gzip ? gzipSync(bytes) : bytes);
  return offsets;
}

/** An Example with TFDS imagenet2012's keys: 0-based label, file name. */
export function tfdsExample(type: protobuf.Type, image: Buffer, label0: number, fileName: string): Buffer {
  return encodeExample(type, { image, label: label0, file_name: fileName });
}
