import { crc32 } from '@node-rs/crc32';
import { InputError } from './errors.js';

/**
 * Reads the entries of a zip archive whose entries are stored uncompressed, as torch.save writes its
 * files (zip64 records included, for files past 4 GiB). Each entry's bytes are checked against its CRC-32;
 * a compressed or encrypted entry, or any record that points outside the file, is an InputError naming
 * the file and the entry.
 */

const END_OF_DIRECTORY = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_END_OF_DIRECTORY = 0x06064b50;
const DIRECTORY_ENTRY = 0x02014b50;
const LOCAL_HEADER = 0x04034b50;
const ZIP64_EXTRA = 0x0001;
/** The end record (22 bytes) may be followed by a comment of up to 65535 bytes. */
const END_SEARCH = 22 + 0xffff;

export function readStoredZip(bytes: Buffer, source: string): Map<string, Buffer> {
  const fail = (problem: string, at?: number) => new InputError(at === undefined ? source : `${source} (byte ${at})`, problem);
  const end = findEndOfDirectory(bytes);
  if (end < 0) throw fail('is not a zip archive (no end of central directory record)');
  let entries = bytes.readUInt16LE(end + 10);
  let directorySize = bytes.readUInt32LE(end + 12);
  let directoryOffset = bytes.readUInt32LE(end + 16);
  if (end >= 20 && bytes.readUInt32LE(end - 20) === ZIP64_LOCATOR) {
    const record = safeNumber(bytes.readBigUInt64LE(end - 12), bytes.length, () => fail('zip64 locator points outside the file', end - 20));
    if (record + 56 > bytes.length || bytes.readUInt32LE(record) !== ZIP64_END_OF_DIRECTORY) throw fail('zip64 end record is missing', record);
    const big = (at: number) => safeNumber(bytes.readBigUInt64LE(record + at), bytes.length, () => fail('zip64 end record is out of range', record));
    entries = big(32);
    directorySize = big(40);
    directoryOffset = big(48);
  }
  if (directoryOffset + directorySize > bytes.length) throw fail('central directory runs past the end of the file', end);
  const files = new Map<string, Buffer>();
  let at = directoryOffset;
  for (let i = 0; i < entries; i++) {
    if (at + 46 > bytes.length || bytes.readUInt32LE(at) !== DIRECTORY_ENTRY) throw fail('central directory entry is damaged', at);
    const flags = bytes.readUInt16LE(at + 8);
    const method = bytes.readUInt16LE(at + 10);
    const crc = bytes.readUInt32LE(at + 16);
    let size = bytes.readUInt32LE(at + 24);
    let compressedSize = bytes.readUInt32LE(at + 20);
    const nameLength = bytes.readUInt16LE(at + 28);
    const extraLength = bytes.readUInt16LE(at + 30);
    const commentLength = bytes.readUInt16LE(at + 32);
    let localOffset = bytes.readUInt32LE(at + 42);
    const name = bytes.toString('utf8', at + 46, at + 46 + nameLength);
    const where = `${source}: entry ${name}`;
    // zip64: the 32-bit fields that overflowed hold 0xFFFFFFFF and their values follow in the extra field.
    const zip64 = zip64Values(bytes, at + 46 + nameLength, extraLength);
    const overflow = 0xffffffff;
    if (size === overflow) size = safeNumber(zip64.shift(), bytes.length, () => new InputError(where, 'has no zip64 size'));
    if (compressedSize === overflow) compressedSize = safeNumber(zip64.shift(), bytes.length, () => new InputError(where, 'has no zip64 size'));
    if (localOffset === overflow) localOffset = safeNumber(zip64.shift(), bytes.length, () => new InputError(where, 'has no zip64 offset'));
    if (flags & 1) throw new InputError(where, 'is encrypted');
    if (method !== 0 || compressedSize !== size)
      throw new InputError(where, 'is compressed', { expected: 'stored entries, as torch.save writes them', found: `method ${method}` });
    if (localOffset + 30 > bytes.length || bytes.readUInt32LE(localOffset) !== LOCAL_HEADER)
      throw new InputError(where, 'has no local header where the directory says');
    const dataStart = localOffset + 30 + bytes.readUInt16LE(localOffset + 26) + bytes.readUInt16LE(localOffset + 28);
    if (dataStart + size > bytes.length) throw new InputError(where, 'runs past the end of the file');
    const data = bytes.subarray(dataStart, dataStart + size);
    if (crc32(data) !== crc) throw new InputError(where, 'does not match its CRC-32 (damaged file)');
    if (files.has(name)) throw new InputError(where, 'appears twice');
    files.set(name, data);
    at += 46 + nameLength + extraLength + commentLength;
  }
  return files;
}

function findEndOfDirectory(bytes: Buffer): number {
  for (let at = bytes.length - 22; at >= Math.max(0, bytes.length - END_SEARCH); at--) {
    if (bytes.readUInt32LE(at) === END_OF_DIRECTORY) return at;
  }
  return -1;
}

/** The 64-bit values of an entry's zip64 extra field, in order (empty when it has none). */
function zip64Values(bytes: Buffer, start: number, length: number): bigint[] {
  for (let at = start; at + 4 <= start + length; ) {
    const id = bytes.readUInt16LE(at);
    const size = bytes.readUInt16LE(at + 2);
    if (id === ZIP64_EXTRA) {
      const values: bigint[] = [];
      for (let v = at + 4; v + 8 <= Math.min(at + 4 + size, start + length); v += 8) values.push(bytes.readBigUInt64LE(v));
      return values;
    }
    at += 4 + size;
  }
  return [];
}

/** A 64-bit size or offset as a number, which must lie within the file. */
function safeNumber(value: bigint | undefined, limit: number, error: () => InputError): number {
  if (value === undefined || value > BigInt(limit)) throw error();
  return Number(value);
}
