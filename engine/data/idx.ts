/**
 * Reader for the IDX format used by MNIST: two zero bytes, a dtype byte, an ndims byte,
 * ndims big-endian uint32 dimensions, then the elements in row-major order, big-endian.
 */
import { InputError } from '../../shared/errors.js';
import { readDataFile } from './dataset.js';

export type IdxDtype = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  readonly dtype: IdxDtype;
  readonly dims: readonly number[];
  readonly data: IdxData;
}

interface DtypeInfo {
  readonly dtype: IdxDtype;
  readonly bytes: number;
}

const DTYPES: ReadonlyMap<number, DtypeInfo> = new Map([
  [0x08, { dtype: 'uint8', bytes: 1 }],
  [0x09, { dtype: 'int8', bytes: 1 }],
  [0x0b, { dtype: 'int16', bytes: 2 }],
  [0x0c, { dtype: 'int32', bytes: 4 }],
  [0x0d, { dtype: 'float32', bytes: 4 }],
  [0x0e, { dtype: 'float64', bytes: 8 }],
]);

const KNOWN_DTYPE_CODES = [...DTYPES].map(([code, info]) => `${hexByte(code)} (${info.dtype})`).join(', ');

export async function readIdx(path: string): Promise<IdxArray> {
  return parseIdx(await readDataFile(path), path);
}

/** Parses IDX bytes; `where` names their source in errors. One-byte dtypes are views on `bytes`, not copies. */
export function parseIdx(bytes: Uint8Array, where: string): IdxArray {
  if (bytes.length < 4) {
    throw new InputError(where, 'file too short for an IDX header', {
      expected: 'at least 4 bytes',
      found: `${bytes.length} bytes`,
    });
  }
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new InputError(where, 'not an IDX file (bad magic number)', {
      expected: 'magic starting with bytes 0x00 0x00',
      found: `${hexByte(bytes[0]!)} ${hexByte(bytes[1]!)}`,
    });
  }
  const dtypeCode = bytes[2]!;
  const info = DTYPES.get(dtypeCode);
  if (info === undefined) {
    throw new InputError(where, 'unknown IDX dtype code in magic byte 2', {
      expected: `one of ${KNOWN_DTYPE_CODES}`,
      found: hexByte(dtypeCode),
    });
  }
  const ndims = bytes[3]!;
  if (ndims === 0) {
    throw new InputError(where, 'IDX file declares no dimensions', { expected: 'ndims >= 1', found: '0' });
  }

  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes) {
    throw new InputError(where, `file truncated inside the IDX header (${ndims} dimensions)`, {
      expected: `at least ${headerBytes} bytes`,
      found: `${bytes.length} bytes`,
    });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(view.getUint32(4 + 4 * i, false));

  const elementCount = dims.reduce((product, dim) => product * dim, 1);
  const expectedBytes = headerBytes + elementCount * info.bytes;
  if (bytes.length !== expectedBytes) {
    throw new InputError(where, bytes.length < expectedBytes ? 'file truncated' : 'file has trailing bytes', {
      expected: `${expectedBytes} bytes (${headerBytes}-byte header + ${dims.join('x')} ${info.dtype})`,
      found: `${bytes.length} bytes`,
    });
  }

  return { dtype: info.dtype, dims, data: decodeElements(info.dtype, view, headerBytes, elementCount) };
}

function decodeElements(dtype: IdxDtype, view: DataView, offset: number, count: number): IdxData {
  const start = view.byteOffset + offset;
  switch (dtype) {
    case 'uint8':
      return new Uint8Array(view.buffer, start, count);
    case 'int8':
      return new Int8Array(view.buffer, start, count);
    // Wider types are big-endian on disk, so they are decoded element by element.
    case 'int16': {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(offset + 2 * i, false);
      return out;
    }
    case 'int32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(offset + 4 * i, false);
      return out;
    }
    case 'float32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(offset + 4 * i, false);
      return out;
    }
    case 'float64': {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(offset + 8 * i, false);
      return out;
    }
  }
}

function hexByte(value: number): string {
  return `0x${value.toString(16).padStart(2, '0')}`;
}
