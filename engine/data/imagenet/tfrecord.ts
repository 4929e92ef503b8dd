/**
 * TFRecord framing: each record is its length (uint64 little-endian), the masked CRC-32C of those 8 bytes,
 * the data, and the masked CRC-32C of the data. Files are plain or GZIP (one gzip stream over the framed
 * records; offsets are then positions in the uncompressed stream). Every CRC is checked; a record that
 * fails is reported with its offset, never returned.
 */
import { createReadStream } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { fileSystemError } from '../../../shared/atomic-file.js';
import { ByteReader } from './byte-reader.js';

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

/** A record's data, or why it cannot be trusted. */
export type RecordRead = { readonly data: Buffer } | { readonly bad: string };

/** A record met by a sequential scan, at `offset` (where its header starts); `final` when the rest of the file cannot be framed. */
export type ScannedRecord = { readonly offset: number; readonly data: Buffer } | { readonly offset: number; readonly bad: string; readonly final: boolean };

/** Whether a file starts with the gzip magic bytes. */
export async function isGzipFile(path: string): Promise<boolean> {
  const handle = await openTfrecordFile(path);
  try {
    const magic = Buffer.alloc(2);
    const { bytesRead } = await handle.read(magic, 0, 2, 0);
    return bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/** Every record of a file in order; a record that fails its data CRC is reported and the scan goes on, a broken frame ends it. */
export async function* scanRecords(path: string, gzip: boolean): AsyncGenerator<ScannedRecord> {
  const stream = shardStream(path, gzip);
  const reader = new ByteReader(stream[Symbol.asyncIterator]());
  try {
    for (;;) {
      const offset = reader.position;
      let frame: FrameRead;
      try {
        frame = await readFrame(reader);
      } catch (error) {
        yield { offset, bad: streamFailure(path, error), final: true };
        return;
      }
      if (frame === 'end') return;
      if ('bad' in frame) {
        const final = 'final' in frame;
        yield { offset, bad: frame.bad, final };
        if (final) return;
      } else yield { offset, data: frame.data };
    }
  } finally {
    stream.destroy();
  }
}

/** Reads the record at `offset` of an uncompressed file, whose data the index says is `length` bytes. */
export async function readRecordAt(handle: FileHandle, offset: number, length: number): Promise<RecordRead> {
  const frame = Buffer.allocUnsafe(RECORD_HEADER_BYTES + length + RECORD_FOOTER_BYTES);
  const { bytesRead } = await handle.read(frame, 0, frame.length, offset);
  if (bytesRead < frame.length) return { bad: `truncated record: ${bytesRead} of ${frame.length} bytes` };
  const header = checkHeader(frame.subarray(0, RECORD_HEADER_BYTES));
  if ('bad' in header) return header;
  if (header.length !== length) return { bad: `record length ${header.length} is not the indexed ${length} (the file changed since it was indexed)` };
  return checkData(frame.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + length), frame.subarray(RECORD_HEADER_BYTES + length));
}

/**
 * Reads records of one file in increasing offset order by streaming it from the start: the only way into a
 * GZIP file, where offsets are positions in the uncompressed stream.
 */
export class SequentialRecordReader {
  private readonly stream: Readable;
  private readonly reader: ByteReader;

  constructor(
    private readonly path: string,
    gzip: boolean,
  ) {
    this.stream = shardStream(path, gzip);
    this.reader = new ByteReader(this.stream[Symbol.asyncIterator]());
  }

  /** Stops reading and releases the file. */
  close(): Promise<void> {
    this.stream.destroy();
    return Promise.resolve();
  }

  async recordAt(offset: number, length: number): Promise<RecordRead> {
    if (offset < this.reader.position) throw new RangeError(`SequentialRecordReader: offset ${offset} is behind the stream (${this.reader.position})`);
    try {
      const skipped = await this.reader.skip(offset - this.reader.position);
      if (this.reader.position < offset) return { bad: `file ends before the record (${skipped} bytes skipped)` };
      const frame = await readFrame(this.reader);
      if (frame === 'end') return { bad: 'file ends before the record' };
      if ('bad' in frame) return { bad: frame.bad };
      if (frame.data.length !== length)
        return { bad: `record length ${frame.data.length} is not the indexed ${length} (the file changed since it was indexed)` };
      return frame;
    } catch (error) {
      return { bad: streamFailure(this.path, error) };
    }
  }
}

type FrameRead = 'end' | { readonly data: Buffer } | { readonly bad: string } | { readonly bad: string; readonly final: true };

async function readFrame(reader: ByteReader): Promise<FrameRead> {
  const headerBytes = await reader.read(RECORD_HEADER_BYTES);
  if (headerBytes.length === 0) return 'end';
  if (headerBytes.length < RECORD_HEADER_BYTES) return { bad: `truncated record header: ${headerBytes.length} of ${RECORD_HEADER_BYTES} bytes`, final: true };
  const header = checkHeader(headerBytes);
  if ('bad' in header) return { bad: `${header.bad}; the rest of the file cannot be framed`, final: true };
  const body = await reader.read(header.length + RECORD_FOOTER_BYTES);
  if (body.length < header.length + RECORD_FOOTER_BYTES) {
    return { bad: `truncated record: ${RECORD_HEADER_BYTES + body.length} of ${RECORD_HEADER_BYTES + header.length + RECORD_FOOTER_BYTES} bytes`, final: true };
  }
  return checkData(body.subarray(0, header.length), body.subarray(header.length));
}

function checkHeader(header: Buffer): { readonly length: number } | { readonly bad: string } {
  if (maskedCrc32c(header.subarray(0, 8)) !== header.readUInt32LE(8)) return { bad: "CRC-32C mismatch in the record's length" };
  const length = header.readBigUInt64LE(0);
  if (length > BigInt(MAX_RECORD_BYTES)) return { bad: `record length ${length} is implausible (over ${MAX_RECORD_BYTES} bytes)` };
  return { length: Number(length) };
}

function checkData(data: Buffer, crc: Buffer): RecordRead {
  return maskedCrc32c(data) === crc.readUInt32LE(0) ? { data } : { bad: "CRC-32C mismatch in the record's data" };
}

function shardStream(path: string, gzip: boolean): Readable {
  const file = createReadStream(path, { highWaterMark: 1 << 22 });
  if (!gzip) return file;
  const gunzip = file.pipe(createGunzip());
  // A failed read of the file itself must surface from the gunzip side, and closing that side must close the file.
  file.once('error', (error) => gunzip.destroy(error));
  gunzip.once('close', () => file.destroy());
  return gunzip;
}

/** A damaged gzip stream is a bad record; a file that cannot be read at all is an input error. */
function streamFailure(path: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && code.startsWith('Z_')) return `gzip stream is damaged (${(error as Error).message})`;
  throw fileSystemError(path, 'read TFRecord file', error);
}

/** Opens a TFRecord file for positioned reads, with an input error naming it if that fails. */
export async function openTfrecordFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (error) {
    throw fileSystemError(path, 'open TFRecord file', error);
  }
}
