/**
 * Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
 * an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON describing each tensor
 * (dtype, shape, [begin, end) offsets into the byte buffer) plus optional string metadata under
 * "__metadata__", then the byte buffer with every tensor packed little-endian, row-major.
 */

import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { fileSystemError, writeFileAtomic } from './atomic-file.js';
import { describeValue, InputError } from './errors.js';

/** Raw bit patterns stand in for F16 and BF16, which JavaScript has no typed array for. */
export type TensorData =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

interface TensorDataConstructor {
  new (length: number): TensorData;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

/** The typed array that holds each dtype's elements; its element size is the dtype's size. */
const DTYPE_ARRAYS = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  U64: BigUint64Array,
  I32: Int32Array,
  U32: Uint32Array,
  I16: Int16Array,
  U16: Uint16Array,
  I8: Int8Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
} satisfies Record<string, TensorDataConstructor>;

export type SafetensorsDtype = keyof typeof DTYPE_ARRAYS;

export interface NamedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorData;
}

export interface SafetensorsContents {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

const METADATA_KEY = '__metadata__';
const LENGTH_PREFIX_BYTES = 8;
/** The reference implementation's limit; a larger header is corruption or an attempt to exhaust memory. */
const MAX_HEADER_BYTES = 100_000_000;

// Typed-array views are used as the file's little-endian bytes directly.
if (endianness() !== 'LE') throw new Error('safetensors.ts requires a little-endian platform');

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(DTYPE_ARRAYS, value);
}

/** Element count of a shape, or undefined when it is not a list of non-negative integers (or overflows). */
function elementCount(shape: unknown): number | undefined {
  if (!Array.isArray(shape)) return undefined;
  let count = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0) return undefined;
    count *= dim;
  }
  return Number.isSafeInteger(count) ? count : undefined;
}

function sortedEntries<T>(items: Map<string, T> | Record<string, T>): [string, T][] {
  const entries = items instanceof Map ? [...items] : Object.entries(items);
  // Code-unit order, independent of locale, so the same tensors always give the same bytes.
  return entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Encodes tensors (stored in name order) and optional string metadata into safetensors bytes.
 * The header is padded with spaces so the byte buffer starts 8-byte aligned in the file.
 * Throws when a tensor's data is the wrong typed array for its dtype or its length does not match its shape.
 */
export function encodeSafetensors(tensors: Map<string, NamedTensor> | Record<string, NamedTensor>, metadata?: Record<string, string>): Buffer {
  const entries = sortedEntries(tensors);
  // The header is assembled by hand because JSON.stringify of an object would move integer-like
  // names ("0", "1") to the front, and the header order should match the data order.
  const headerParts: string[] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const sortedMetadata: Record<string, string> = {};
    for (const [key, value] of sortedEntries(metadata)) {
      if (typeof value !== 'string') {
        throw new TypeError(`safetensors metadata "${key}" must be a string, got ${describeValue(value)}`);
      }
      sortedMetadata[key] = value;
    }
    headerParts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(sortedMetadata)}`);
  }
  let dataBytes = 0;
  for (const [name, tensor] of entries) {
    if (name === METADATA_KEY) throw new TypeError(`"${METADATA_KEY}" is reserved and cannot name a tensor`);
    if (!isDtype(tensor.dtype)) throw new TypeError(`tensor "${name}" has unknown dtype ${describeValue(tensor.dtype)}`);
    const arrayType = DTYPE_ARRAYS[tensor.dtype];
    if (!(tensor.data instanceof arrayType)) {
      throw new TypeError(`tensor "${name}" (${tensor.dtype}) needs a ${arrayType.name}, got ${tensor.data?.constructor?.name}`);
    }
    const count = elementCount(tensor.shape);
    if (count === undefined) {
      throw new TypeError(`tensor "${name}" has invalid shape ${describeValue(tensor.shape)}`);
    }
    if (tensor.data.length !== count) {
      throw new RangeError(`tensor "${name}" has shape ${JSON.stringify(tensor.shape)} (${count} elements) but ${tensor.data.length} data elements`);
    }
    const info = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [dataBytes, dataBytes + tensor.data.byteLength] };
    headerParts.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    dataBytes += tensor.data.byteLength;
  }

  const headerJson = Buffer.from(`{${headerParts.join(',')}}`, 'utf8');
  const headerBytes = Math.ceil(headerJson.length / 8) * 8;
  const output = Buffer.alloc(LENGTH_PREFIX_BYTES + headerBytes + dataBytes, 0x20);
  output.writeBigUInt64LE(BigInt(headerBytes), 0);
  headerJson.copy(output, LENGTH_PREFIX_BYTES);
  let position = LENGTH_PREFIX_BYTES + headerBytes;
  for (const [, { data }] of entries) {
    output.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), position);
    position += data.byteLength;
  }
  return output;
}

interface TensorLayout {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Decodes safetensors bytes, checking everything a damaged or hostile file could get wrong;
 * `source` (usually the file path) names the file in the InputErrors thrown.
 * Each tensor's data views `bytes` where its offset is aligned for its element type, and is a copy otherwise.
 */
export function decodeSafetensors(bytes: Buffer, source: string): SafetensorsContents {
  if (bytes.length < LENGTH_PREFIX_BYTES) {
    throw new InputError(source, 'file too short to be safetensors', {
      expected: `at least ${LENGTH_PREFIX_BYTES} bytes (the header length)`,
      found: `${bytes.length} bytes`,
    });
  }
  const declaredHeaderBytes = bytes.readBigUInt64LE(0);
  if (declaredHeaderBytes > BigInt(MAX_HEADER_BYTES)) {
    throw new InputError(`${source} (byte 0)`, 'safetensors header length is implausibly large', {
      expected: `at most ${MAX_HEADER_BYTES} bytes`,
      found: `${declaredHeaderBytes} bytes`,
    });
  }
  const headerBytes = Number(declaredHeaderBytes);
  const dataStart = LENGTH_PREFIX_BYTES + headerBytes;
  if (dataStart > bytes.length) {
    throw new InputError(`${source} (byte 0)`, 'safetensors header length runs past the end of the file', {
      expected: `at most ${bytes.length - LENGTH_PREFIX_BYTES} bytes`,
      found: `${headerBytes} bytes`,
    });
  }

  const header = parseHeader(bytes.subarray(LENGTH_PREFIX_BYTES, dataStart), source);
  const metadata = parseMetadata(header[METADATA_KEY], source);
  const layouts = Object.entries(header)
    .filter(([name]) => name !== METADATA_KEY)
    .map(([name, info]) => parseTensorInfo(name, info, source));
  checkTensorsTileBuffer(layouts, bytes.length - dataStart, source, dataStart);

  const tensors = new Map<string, NamedTensor>();
  for (const { name, dtype, shape, begin, end } of layouts) {
    const arrayType: TensorDataConstructor = DTYPE_ARRAYS[dtype];
    const absoluteOffset = bytes.byteOffset + dataStart + begin;
    const length = (end - begin) / arrayType.BYTES_PER_ELEMENT;
    // Typed arrays cannot start at an offset that is not a multiple of their element size.
    const data =
      absoluteOffset % arrayType.BYTES_PER_ELEMENT === 0
        ? new arrayType(bytes.buffer, absoluteOffset, length)
        : new arrayType(bytes.buffer.slice(absoluteOffset, absoluteOffset + end - begin), 0, length);
    tensors.set(name, { dtype, shape, data });
  }
  return { tensors, metadata };
}

function parseHeader(headerBytes: Buffer, source: string): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new InputError(source, 'safetensors header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (error) {
    throw new InputError(source, 'safetensors header is not valid JSON', {
      expected: 'a JSON object',
      found: `${describeValue(text)} (${(error as Error).message})`,
    });
  }
  if (!isPlainObject(header)) {
    throw new InputError(source, 'safetensors header is not a JSON object', {
      expected: 'an object mapping tensor names to {dtype, shape, data_offsets}',
      found: describeValue(header),
    });
  }
  return header;
}

function parseMetadata(value: unknown, source: string): Record<string, string> {
  if (value === undefined) return {};
  const where = `${source}: ${METADATA_KEY}`;
  if (!isPlainObject(value)) {
    throw new InputError(where, 'metadata is not an object', { expected: 'an object of strings', found: describeValue(value) });
  }
  const metadata: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string') {
      throw new InputError(where, `metadata value "${key}" is not a string`, { expected: 'a string', found: describeValue(entry) });
    }
    metadata[key] = entry;
  }
  return metadata;
}

function parseTensorInfo(name: string, info: unknown, source: string): TensorLayout {
  const where = `${source}: tensor ${JSON.stringify(name)}`;
  if (!isPlainObject(info)) {
    throw new InputError(where, 'tensor entry is not an object', {
      expected: '{dtype, shape, data_offsets}',
      found: describeValue(info),
    });
  }
  const { dtype, shape, data_offsets: offsets } = info;
  if (!isDtype(dtype)) {
    throw new InputError(where, 'unknown dtype', {
      expected: `one of ${Object.keys(DTYPE_ARRAYS).join(', ')}`,
      found: describeValue(dtype),
    });
  }
  const count = elementCount(shape);
  if (count === undefined) {
    throw new InputError(where, 'invalid shape', {
      expected: 'an array of non-negative integers with a representable product',
      found: describeValue(shape),
    });
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0) || offsets[0] > offsets[1]) {
    throw new InputError(where, 'invalid data_offsets', {
      expected: '[begin, end] with integers 0 <= begin <= end',
      found: describeValue(offsets),
    });
  }
  const [begin, end] = offsets as [number, number];
  const expectedBytes = count * DTYPE_ARRAYS[dtype].BYTES_PER_ELEMENT;
  if (end - begin !== expectedBytes) {
    throw new InputError(where, 'data_offsets do not match the shape and dtype', {
      expected: `${expectedBytes} bytes (${count} elements of ${dtype} for shape ${JSON.stringify(shape)})`,
      found: `${end - begin} bytes (data_offsets ${JSON.stringify(offsets)})`,
    });
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/**
 * The tensors must cover the byte buffer exactly: in offset order each begins where the previous
 * ended, the first at 0 and the last at the buffer's end. This rules out overlapping tensors
 * (which could alias memory) as well as holes and trailing bytes (which hide unexplained data).
 * Sorts `layouts` into file order.
 */
function checkTensorsTileBuffer(layouts: TensorLayout[], bufferBytes: number, source: string, dataStart: number): void {
  layouts.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  for (const { name, begin, end } of layouts) {
    const where = `${source}: tensor ${JSON.stringify(name)} (file byte ${dataStart + begin})`;
    if (end > bufferBytes) {
      throw new InputError(where, 'data_offsets run past the end of the file', {
        expected: `end <= ${bufferBytes} (the byte buffer's size)`,
        found: `end ${end}`,
      });
    }
    if (begin !== expectedBegin) {
      throw new InputError(where, begin < expectedBegin ? 'tensor data overlaps another tensor' : 'hole in the byte buffer before this tensor', {
        expected: `data to begin at buffer offset ${expectedBegin}`,
        found: `begin ${begin}`,
      });
    }
    expectedBegin = end;
  }
  if (expectedBegin !== bufferBytes) {
    throw new InputError(`${source} (byte ${dataStart + expectedBegin})`, 'bytes after the last tensor belong to no tensor', {
      expected: `a byte buffer of ${expectedBegin} bytes`,
      found: `${bufferBytes} bytes`,
    });
  }
}

/** Writes a safetensors file atomically: readers see the old file or the complete new one. */
export async function writeSafetensorsFile(
  path: string,
  tensors: Map<string, NamedTensor> | Record<string, NamedTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

export async function readSafetensorsFile(path: string): Promise<SafetensorsContents> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw fileSystemError(path, 'read file', error);
  }
  return decodeSafetensors(bytes, path);
}

// Scratch views for reinterpreting a float32's bits.
const float32Scratch = new Float32Array(1);
const float32ScratchBits = new Uint32Array(float32Scratch.buffer);

/** IEEE 754 binary16 bits of a number, rounded to nearest-even (overflow gives infinity; NaN stays NaN). */
function float32ToFloat16(value: number): number {
  float32Scratch[0] = value;
  const bits = float32ScratchBits[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return mantissa === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mantissa >>> 13);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal half: shift the full significand (implicit 1 included) down to units of 2^-24.
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    return sign | roundShiftRightEven(mantissa, shift);
  }
  // A carry out of the mantissa correctly bumps the exponent (and 65520 and above become infinity).
  return sign | roundShiftRightEven((halfExponent << 23) | mantissa, 13);
}

function roundShiftRightEven(value: number, shift: number): number {
  const kept = value >>> shift;
  const remainder = value & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  return remainder > halfway || (remainder === halfway && (kept & 1) === 1) ? kept + 1 : kept;
}

function float16ToFloat32(bits: number): number {
  const sign = (bits & 0x8000) << 16;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return (sign ? -1 : 1) * mantissa * 2 ** -24;
  float32ScratchBits[0] = exponent === 0x1f ? sign | 0x7f800000 | (mantissa << 13) : sign | ((exponent + 112) << 23) | (mantissa << 13);
  return float32Scratch[0];
}

/** Converts float32 values to float16 bit patterns (F16 tensor data), rounding to nearest-even. */
export function float32ToFloat16Bits(values: Float32Array): Uint16Array {
  const bits = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = float32ToFloat16(values[i]);
  return bits;
}

/** Converts float16 bit patterns (F16 tensor data) to float32 values; every half is exact in float32. */
export function float16BitsToFloat32(bits: Uint16Array): Float32Array {
  const values = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) values[i] = float16ToFloat32(bits[i]);
  return values;
}
