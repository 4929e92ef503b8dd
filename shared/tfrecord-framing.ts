import { crc32c } from '@node-rs/crc32';

/**
 * TFRecord framing, TensorFlow's container for ImageNet shards and TensorBoard event files alike: each record
 * is its length (uint64 little-endian), the masked CRC-32C of those 8 bytes, the data, and the masked CRC-32C
 * of the data. The engine reads shards with it; the coordinator writes event files with it.
 */

/** Bytes before a record's data: its length and the masked CRC-32C of the length. */
export const RECORD_HEADER_BYTES = 12;
/** Bytes after a record's data: the masked CRC-32C of the data. */
export const RECORD_FOOTER_BYTES = 4;
/** A longer length is a corrupt header, refused rather than allocated (ImageNet's largest JPEG is ~15 MB). */
const MAX_RECORD_BYTES = 1 << 30;
const MASK_DELTA = 0xa282ead8;

/** TensorFlow's masked CRC-32C: the CRC rotated right by 15 bits plus a constant, so that CRCs of CRCs stay strong. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return (((crc >>> 15) | (crc << 17)) + MASK_DELTA) >>> 0;
}

/** One record as TFRecord frames it. */
export function frameRecord(data: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(RECORD_HEADER_BYTES + data.length + RECORD_FOOTER_BYTES);
  frame.writeBigUInt64LE(BigInt(data.length), 0);
  frame.writeUInt32LE(maskedCrc32c(frame.subarray(0, 8)), 8);
  frame.set(data, RECORD_HEADER_BYTES);
  frame.writeUInt32LE(maskedCrc32c(data), RECORD_HEADER_BYTES + data.length);
  return frame;
}

/** A TFRecord file's bytes (uncompressed) holding `records`, and each record's offset in them. */
export function frameRecords(records: readonly Uint8Array[]): { readonly bytes: Buffer; readonly offsets: number[] } {
  const frames = records.map(frameRecord);
  const offsets: number[] = [];
  let offset = 0;
  for (const frame of frames) {
    offsets.push(offset);
    offset += frame.length;
  }
  return { bytes: Buffer.concat(frames), offsets };
}

/** A record's data, or why it cannot be trusted. */
export type RecordRead = { readonly data: Buffer } | { readonly bad: string };

/** The data length a record's 12-byte header gives, or why the header cannot be trusted. */
export function checkRecordHeader(header: Buffer): { readonly length: number } | { readonly bad: string } {
  if (maskedCrc32c(header.subarray(0, 8)) !== header.readUInt32LE(8)) return { bad: "CRC-32C mismatch in the record's length" };
  const length = header.readBigUInt64LE(0);
  if (length > BigInt(MAX_RECORD_BYTES)) return { bad: `record length ${length} is implausible (over ${MAX_RECORD_BYTES} bytes)` };
  return { length: Number(length) };
}

/** The record's data if its 4-byte footer `crc` matches it. */
export function checkRecordData(data: Buffer, crc: Buffer): RecordRead {
  return maskedCrc32c(data) === crc.readUInt32LE(0) ? { data } : { bad: "CRC-32C mismatch in the record's data" };
}
