import { describeValue, InputError } from './errors.js';
import type { SafetensorsDtype } from './safetensors.js';

/**
 * A restricted reader of the pickle inside a PyTorch `.pth` file that holds a plain state dict. It
 * executes nothing: it interprets only the opcodes such a pickle uses (protocol 2 to 4 containers,
 * strings, integers, memo), and calls nothing but three known constructors, by name:
 * collections.OrderedDict (an empty dict), torch._utils._rebuild_tensor_v2 (a tensor's description) and
 * the torch.*Storage types (as persistent ids naming the data files). Any other global or opcode is an
 * InputError naming it and its byte offset, so a file crafted to run code is refused, never run.
 */

/** A tensor as the pickle describes it: a view into a storage (a data file of the archive). */
export interface PickledTensor {
  readonly storage: { readonly key: string; readonly dtype: SafetensorsDtype };
  /** In elements of the storage. */
  readonly offset: number;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
}

const STORAGE_DTYPES: Readonly<Record<string, SafetensorsDtype>> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

class Global {
  constructor(readonly name: string) {}
}
class StorageType {
  constructor(readonly dtype: SafetensorsDtype) {}
}
class Storage {
  constructor(
    readonly key: string,
    readonly dtype: SafetensorsDtype,
  ) {}
}
class Tensor {
  constructor(readonly tensor: PickledTensor) {}
}
/** A tuple (immutable) or list, as pickle builds them. */
class Sequence {
  constructor(readonly items: Value[]) {}
}
class Dict {
  readonly entries = new Map<Value, Value>();
}
const MARK = Symbol('mark');
type Value = string | number | boolean | null | Global | StorageType | Storage | Tensor | Sequence | Dict;
type StackItem = Value | typeof MARK;

const ALLOWED_GLOBALS = new Set(['collections.OrderedDict', 'torch._utils._rebuild_tensor_v2', ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`)]);

/** Reads a state dict's pickle (`data.pkl`) into its tensors' descriptions, by key. */
export function readStateDictPickle(bytes: Buffer, source: string): Map<string, PickledTensor> {
  const stack: StackItem[] = [];
  const memo = new Map<number, Value>();
  let at = 0;
  const fail = (problem: string, offset = at) => new InputError(`${source} (byte ${offset})`, problem);
  const need = (n: number) => {
    if (at + n > bytes.length) throw fail('the pickle ends in the middle of an opcode');
  };
  const pop = (): Value => {
    const item = stack.pop();
    if (item === undefined || item === MARK) throw fail('the pickle pops from an empty stack');
    return item;
  };
  const popMark = (): Value[] => {
    const mark = stack.lastIndexOf(MARK);
    if (mark < 0) throw fail('the pickle has no mark to pop to');
    const items = stack.splice(mark) as Value[];
    items.shift();
    return items;
  };
  const top = (): Value => {
    const item = stack[stack.length - 1];
    if (item === undefined || item === MARK) throw fail('the pickle reads an empty stack');
    return item;
  };
  const text = (length: number) => {
    need(length);
    const value = bytes.toString('utf8', at, at + length);
    at += length;
    return value;
  };
  const setItems = (dict: Value, items: Value[]) => {
    if (!(dict instanceof Dict)) throw fail('the pickle sets items on something that is not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) dict.entries.set(items[i]!, items[i + 1]!);
  };

  while (true) {
    need(1);
    const start = at;
    const op = bytes[at++]!;
    switch (op) {
      case 0x80: // PROTO
        need(1);
        at += 1;
        break;
      case 0x95: // FRAME: a length prefix only
        need(8);
        at += 8;
        break;
      case 0x28: // ( MARK
        stack.push(MARK);
        break;
      case 0x7d: // } EMPTY_DICT
        stack.push(new Dict());
        break;
      case 0x29: // ) EMPTY_TUPLE
      case 0x5d: // ] EMPTY_LIST
        stack.push(new Sequence([]));
        break;
      case 0x74: // t TUPLE
        stack.push(new Sequence(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const items = Array.from({ length: op - 0x84 }, pop).reverse();
        stack.push(new Sequence(items));
        break;
      }
      case 0x58: // X BINUNICODE
        need(4);
        at += 4;
        stack.push(text(bytes.readUInt32LE(at - 4)));
        break;
      case 0x8c: // SHORT_BINUNICODE
        need(1);
        stack.push(text(bytes[at++]!));
        break;
      case 0x4b: // K BININT1
        need(1);
        stack.push(bytes[at++]!);
        break;
      case 0x4d: // M BININT2
        need(2);
        stack.push(bytes.readUInt16LE(at));
        at += 2;
        break;
      case 0x4a: // J BININT
        need(4);
        stack.push(bytes.readInt32LE(at));
        at += 4;
        break;
      case 0x8a: {
        // LONG1: a little-endian two's complement integer of n bytes
        need(1);
        const n = bytes[at++]!;
        need(n);
        if (n > 7) throw fail('the pickle holds an integer too large for a tensor size');
        stack.push(n === 0 ? 0 : bytes.readIntLE(at, n));
        at += n;
        break;
      }
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4e: // N NONE
        stack.push(null);
        break;
      case 0x71: // q BINPUT
        need(1);
        memo.set(bytes[at++]!, top());
        break;
      case 0x72: // r LONG_BINPUT
        need(4);
        memo.set(bytes.readUInt32LE(at), top());
        at += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // h BINGET
      case 0x6a: {
        // j LONG_BINGET
        const size = op === 0x68 ? 1 : 4;
        need(size);
        const index = size === 1 ? bytes[at]! : bytes.readUInt32LE(at);
        at += size;
        const value = memo.get(index);
        if (value === undefined) throw fail(`the pickle reads memo ${index}, which was never set`, start);
        stack.push(value);
        break;
      }
      case 0x63: {
        // c GLOBAL "module\nname\n"
        const line = () => {
          const newline = bytes.indexOf(0x0a, at);
          if (newline < 0) throw fail('the pickle ends inside a global name');
          const value = bytes.toString('utf8', at, newline);
          at = newline + 1;
          return value;
        };
        const name = `${line()}.${line()}`;
        if (!ALLOWED_GLOBALS.has(name))
          throw new InputError(`${source} (byte ${start})`, `refers to ${describeValue(name)}, which a plain state dict does not use; refusing to read it`, {
            expected: 'only tensors in an OrderedDict (torch.save(model.state_dict(), path))',
          });
        const storage = name.startsWith('torch.') && name.endsWith('Storage') ? STORAGE_DTYPES[name.slice('torch.'.length)] : undefined;
        stack.push(storage ? new StorageType(storage) : new Global(name));
        break;
      }
      case 0x51: {
        // Q BINPERSID: ('storage', storage type, key, location, size)
        const id = pop();
        const [kind, type, key] = id instanceof Sequence ? id.items : [];
        if (kind !== 'storage' || !(type instanceof StorageType) || typeof key !== 'string')
          throw fail('the pickle has a persistent id that is not a tensor storage', start);
        stack.push(new Storage(key, type.dtype));
        break;
      }
      case 0x52: {
        // R REDUCE: only the allowed constructors
        const args = pop();
        const callable = pop();
        if (!(callable instanceof Global) || !(args instanceof Sequence)) throw fail('the pickle calls something that is not an allowed constructor', start);
        stack.push(construct(callable.name, args.items, (problem) => fail(problem, start)));
        break;
      }
      case 0x73: {
        // s SETITEM
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case 0x75: {
        // u SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x62: {
        // b BUILD: a state dict's `_metadata` (module versions), which carries no tensor
        const state = pop();
        if (!(top() instanceof Dict) || !(state instanceof Dict)) throw fail('the pickle builds an object that is not a dict', start);
        break;
      }
      case 0x2e: // . STOP
        return stateDict(pop(), source);
      default:
        throw new InputError(
          `${source} (byte ${start})`,
          `uses pickle opcode 0x${op.toString(16)}, which a plain state dict does not use; refusing to read it`,
        );
    }
  }
}

function construct(name: string, args: Value[], fail: (problem: string) => InputError): Value {
  if (name === 'collections.OrderedDict') {
    if (args.length !== 0) throw fail('OrderedDict is called with arguments');
    return new Dict();
  }
  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  const [storage, offset, shape, stride] = args;
  const integers = (value: Value | undefined) =>
    value instanceof Sequence && value.items.every((n) => Number.isSafeInteger(n) && (n as number) >= 0) ? (value.items as number[]) : undefined;
  const dims = integers(shape);
  const steps = integers(stride);
  if (!(storage instanceof Storage) || !Number.isSafeInteger(offset) || (offset as number) < 0 || !dims || !steps || dims.length !== steps.length)
    throw fail('a tensor is described with arguments that are not (storage, offset, shape, stride)');
  return new Tensor({ storage: { key: storage.key, dtype: storage.dtype }, offset: offset as number, shape: dims, stride: steps });
}

function stateDict(value: Value, source: string): Map<string, PickledTensor> {
  if (!(value instanceof Dict))
    throw new InputError(source, 'does not hold a state dict', { expected: 'torch.save(model.state_dict(), path)', found: 'another object' });
  const tensors = new Map<string, PickledTensor>();
  for (const [key, tensor] of value.entries) {
    if (typeof key !== 'string' || !(tensor instanceof Tensor))
      throw new InputError(`${source}: entry ${describeValue(key)}`, 'is not a tensor', {
        expected: 'a plain state dict (save model.state_dict() alone, not a training checkpoint)',
      });
    tensors.set(key, tensor.tensor);
  }
  return tensors;
}
