/**
 * TFRecord files (framing in shared/tfrecord-framing.ts) as ImageNet shards hold them: plain or GZIP (one gzip stream over the framed
 * records; offsets are then positions in the uncompressed stream). Every CRC is checked; a record that
 * fails is reported with its offset, never returned.
 */
import { createReadStream } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { fileSystemError } from '../../../shared/atomic-file.js';
import { checkRecordData, checkRecordHeader, RECORD_FOOTER_BYTES, RECORD_HEADER_BYTES, type RecordRead } from '../../../shared/tfrecord-framing.js';
import { ByteReader } from './byte-reader.js';

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
  const header = checkRecordHeader(frame.subarray(0, RECORD_HEADER_BYTES));
  if ('bad' in header) return header;
  if (header.length !== length) return { bad: `record length ${header.length} is not the indexed ${length} (the file changed since it was indexed)` };
  return checkRecordData(frame.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + length), frame.subarray(RECORD_HEADER_BYTES + length));
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
  const header = checkRecordHeader(headerBytes);
  if ('bad' in header) return { bad: `${header.bad}; the rest of the file cannot be framed`, final: true };
  const body = await reader.read(header.length + RECORD_FOOTER_BYTES);
  if (body.length < header.length + RECORD_FOOTER_BYTES) {
    return { bad: `truncated record: ${RECORD_HEADER_BYTES + body.length} of ${RECORD_HEADER_BYTES + header.length + RECORD_FOOTER_BYTES} bytes`, final: true };
  }
  return checkRecordData(body.subarray(0, header.length), body.subarray(header.length));
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
