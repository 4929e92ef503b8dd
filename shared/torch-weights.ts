import { readFile } from 'node:fs/promises';
import { fileSystemError } from './atomic-file.js';
import { describeValue, InputError } from './errors.js';
import { decodeSafetensors, type NamedTensor, type SafetensorsDtype } from './safetensors.js';
import { type PickledTensor, readStateDictPickle } from './torch-pickle.js';
import { readStoredZip } from './zip-stored.js';

/**
 * The tensors of a weights file as PyTorch users have them: safetensors, or a PyTorch zip `.pth` holding a
 * plain state dict (read without executing anything, see torch-pickle.ts). Told apart by their first bytes.
 */

export type WeightsFormat = 'safetensors' | 'pth';

export interface WeightsFile {
  readonly format: WeightsFormat;
  readonly tensors: Map<string, NamedTensor>;
  readonly bytes: Buffer;
}

const ZIP_MAGIC = 0x04034b50;

export async function readWeightsFile(path: string): Promise<WeightsFile> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw fileSystemError(path, 'read the weights file', error);
  }
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === ZIP_MAGIC) return { format: 'pth', tensors: decodeTorchZip(bytes, path), bytes };
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! <= 5)
    throw new InputError(path, 'is a legacy (pre-1.6) torch.save file', {
      expected: 'a zip .pth (torch.save from PyTorch 1.6 or later) or safetensors',
    });
  return { format: 'safetensors', tensors: decodeSafetensors(bytes, path).tensors, bytes };
}

/** Element sizes of the storages a state dict may use. */
const ELEMENT_BYTES: Readonly<Partial<Record<SafetensorsDtype, number>>> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** A torch.save zip: `<name>/data.pkl` describes the tensors, `<name>/data/<key>` holds each storage's bytes. */
export function decodeTorchZip(bytes: Buffer, source: string): Map<string, NamedTensor> {
  const files = readStoredZip(bytes, source);
  const pickles = [...files.keys()].filter((name) => name === 'data.pkl' || name.endsWith('/data.pkl'));
  if (pickles.length !== 1) throw new InputError(source, 'is not a torch.save archive', { expected: 'one data.pkl entry', found: `${pickles.length}` });
  const prefix = pickles[0]!.slice(0, -'data.pkl'.length);
  const byteOrder = files.get(`${prefix}byteorder`)?.toString('utf8').trim();
  if (byteOrder !== undefined && byteOrder !== 'little')
    throw new InputError(`${source}: entry ${prefix}byteorder`, 'is not little-endian', { found: describeValue(byteOrder) });
  const tensors = new Map<string, NamedTensor>();
  for (const [key, description] of readStateDictPickle(files.get(pickles[0]!)!, `${source}: entry ${pickles[0]}`)) {
    const storageName = `${prefix}data/${description.storage.key}`;
    const storage = files.get(storageName);
    if (!storage) throw new InputError(`${source}: tensor ${key}`, `refers to storage ${storageName}, which the archive lacks`);
    tensors.set(key, materialise(description, storage, `${source}: tensor ${key}`));
  }
  return tensors;
}

/** Copies a (possibly strided) view of a storage into a row-major tensor of its own. */
function materialise(view: PickledTensor, storage: Buffer, where: string): NamedTensor {
  const { dtype } = view.storage;
  const size = ELEMENT_BYTES[dtype]!;
  const count = view.shape.reduce((n, d) => n * d, 1);
  const out = Buffer.alloc(count * size);
  // The furthest element the view reaches must lie inside the storage.
  const last = count === 0 ? -1 : view.offset + view.shape.reduce((sum, d, i) => sum + (d - 1) * view.stride[i]!, 0);
  if ((last + 1) * size > storage.length)
    throw new InputError(where, 'reaches past the end of its storage', { expected: `at most ${storage.length / size} elements`, found: `element ${last}` });
  const rowMajor = view.shape.every((_, axis) => view.shape[axis] === 1 || view.stride[axis] === view.shape.slice(axis + 1).reduce((n, d) => n * d, 1));
  if (rowMajor) {
    storage.copy(out, 0, view.offset * size, (view.offset + count) * size);
    return { dtype, shape: [...view.shape], data: typedView(dtype, out) };
  }
  const index = new Array<number>(view.shape.length).fill(0);
  for (let i = 0; i < count; i++) {
    const element = index.reduce((sum, position, axis) => sum + position * view.stride[axis]!, view.offset);
    storage.copy(out, i * size, element * size, (element + 1) * size);
    for (let axis = index.length - 1; axis >= 0; axis--) {
      if (++index[axis]! < view.shape[axis]!) break;
      index[axis] = 0;
    }
  }
  return { dtype, shape: [...view.shape], data: typedView(dtype, out) };
}

function typedView(dtype: SafetensorsDtype, bytes: Buffer): NamedTensor['data'] {
  const { buffer, byteOffset, byteLength } = bytes;
  switch (dtype) {
    case 'F64':
      return new Float64Array(buffer, byteOffset, byteLength / 8);
    case 'F32':
      return new Float32Array(buffer, byteOffset, byteLength / 4);
    case 'F16':
    case 'BF16':
    case 'U16':
      return new Uint16Array(buffer, byteOffset, byteLength / 2);
    case 'I64':
      return new BigInt64Array(buffer, byteOffset, byteLength / 8);
    case 'I32':
      return new Int32Array(buffer, byteOffset, byteLength / 4);
    case 'I16':
      return new Int16Array(buffer, byteOffset, byteLength / 2);
    case 'I8':
      return new Int8Array(buffer, byteOffset, byteLength);
    default:
      return new Uint8Array(buffer, byteOffset, byteLength);
  }
}
