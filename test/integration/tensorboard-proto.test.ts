import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../../shared/proto/load.js';
import { pythonVenv, TENSORBOARD_REQUIREMENTS } from '../helpers/python-venv.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * proto/tensorboard/event.proto declares only the messages autoprune writes, copied by hand from
 * TensorFlow's event.proto, summary.proto and histogram.proto. This test holds it to the real ones: every
 * field it declares must have the name, number, type, cardinality, message or enum type and oneof of the
 * field with that name in the descriptors TensorBoard itself is built from (tensorboard.compat.proto, in
 * the same venv observe.test.ts reads event files with), and every enum value its number there.
 */

const EVENT_PROTO = join(PROTO_DIR, 'tensorboard', 'event.proto');
/** Our package, TensorFlow's. */
const PACKAGE = 'tensorflow';
/** TensorBoard's copies of TensorFlow's protos are the same files with the package renamed (its proto sync script). */
const TENSORBOARD_PACKAGE = 'tensorboard';

/** One field as both sides describe it; `type` is descriptor.proto's name for it (double, int64, message, enum ...). */
interface FieldFacts {
  readonly number: number;
  readonly type: string;
  readonly repeated: boolean;
  readonly packed: boolean;
  /** The message or enum type's full name, in TensorFlow's package; null for scalars. */
  readonly typeName: string | null;
  readonly oneof: string | null;
}

/** Messages by full name (fields by name) and enums by full name (values by name), as our .proto declares them. */
interface ProtoFacts {
  readonly messages: Record<string, Record<string, FieldFacts>>;
  readonly enums: Record<string, Record<string, number>>;
}

/** The same from TensorBoard's descriptors: null for a name it does not have. */
interface RealFacts {
  readonly messages: Record<string, Record<string, FieldFacts> | null>;
  readonly enums: Record<string, Record<string, number> | null>;
}

/** Dumps the descriptors of the messages and enums named in argv[1] (JSON), TensorBoard's package for ours. */
const DUMP_DESCRIPTORS = `
import json, sys
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from tensorboard.compat.proto import event_pb2, summary_pb2  # registers event, summary and histogram
pool = descriptor_pool.Default()
wanted = json.loads(sys.argv[1])
ours, theirs = ${JSON.stringify(PACKAGE)} + '.', ${JSON.stringify(TENSORBOARD_PACKAGE)} + '.'
type_names = {getattr(FieldDescriptor, n): n[len('TYPE_'):].lower() for n in dir(FieldDescriptor) if n.startswith('TYPE_')}
def find(finder, name):
    try:
        return finder(theirs + name[len(ours):])
    except KeyError:
        return None
def renamed(full_name):
    return ours + full_name[len(theirs):] if full_name.startswith(theirs) else full_name
def field(f):
    nested = f.message_type or f.enum_type
    return {
        'number': f.number, 'type': type_names[f.type], 'repeated': f.is_repeated, 'packed': f.is_packed,
        'typeName': renamed(nested.full_name) if nested else None,
        'oneof': f.containing_oneof.name if f.containing_oneof else None,
    }
messages = {name: (lambda d: d and {f.name: field(f) for f in d.fields})(find(pool.FindMessageTypeByName, name)) for name in wanted['messages']}
enums = {name: (lambda d: d and {v.name: v.number for v in d.values})(find(pool.FindEnumTypeByName, name)) for name in wanted['enums']}
print(json.dumps({'messages': messages, 'enums': enums}))
`;

/** Descriptor.proto's names for protobufjs's scalar type names (they agree). */
const SCALAR_TYPES = new Set([
  'double',
  'float',
  'int64',
  'uint64',
  'int32',
  'fixed64',
  'fixed32',
  'bool',
  'string',
  'bytes',
  'uint32',
  'sfixed32',
  'sfixed64',
  'sint32',
  'sint64',
]);

/** What our .proto (its text) declares, with the field names as written (keepCase). */
function declaredFacts(source: string): ProtoFacts {
  const { root } = protobuf.parse(source, { keepCase: true });
  root.resolveAll();
  const messages: Record<string, Record<string, FieldFacts>> = {};
  const enums: Record<string, Record<string, number>> = {};
  const visit = (namespace: protobuf.NamespaceBase) => {
    for (const nested of namespace.nestedArray) {
      const name = nested.fullName.replace(/^\./, '');
      if (nested instanceof protobuf.Type) {
        messages[name] = Object.fromEntries(nested.fieldsArray.map((f) => [f.name, fieldFacts(f)]));
      } else if (nested instanceof protobuf.Enum) {
        enums[name] = { ...nested.values };
      }
      if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) visit(nested);
    }
  };
  visit(root);
  return { messages, enums };
}

function fieldFacts(field: protobuf.Field): FieldFacts {
  const resolved = field.resolvedType;
  const type = resolved instanceof protobuf.Type ? 'message' : resolved instanceof protobuf.Enum ? 'enum' : field.type;
  assert.ok(type === 'message' || type === 'enum' || SCALAR_TYPES.has(type), `${field.fullName}: unknown type ${field.type}`);
  return {
    number: field.id,
    type,
    repeated: field.repeated,
    // Only repeated scalars of fixed or varint encoding can be packed; protobufjs reports any repeated field as packed in proto3.
    packed: field.repeated && field.type in protobuf.types.packed && field.packed,
    typeName: resolved ? resolved.fullName.replace(/^\./, '') : null,
    oneof: field.partOf ? field.partOf.name : null,
  };
}

/** Every way a declared field or enum value disagrees with the real descriptors, one line each. */
function disagreements(declared: ProtoFacts, real: RealFacts): string[] {
  const found: string[] = [];
  for (const [message, fields] of Object.entries(declared.messages)) {
    const realFields = real.messages[message];
    if (!realFields) {
      found.push(`${message}: no such message in TensorBoard's protos`);
      continue;
    }
    for (const [name, facts] of Object.entries(fields)) {
      const realFacts = realFields[name];
      if (!realFacts) found.push(`${message}.${name}: no such field`);
      else if (JSON.stringify(facts) !== JSON.stringify(realFacts))
        found.push(`${message}.${name}: declared ${JSON.stringify(facts)}, TensorBoard has ${JSON.stringify(realFacts)}`);
    }
  }
  for (const [name, values] of Object.entries(declared.enums)) {
    const realValues = real.enums[name];
    if (!realValues) found.push(`${name}: no such enum in TensorBoard's protos`);
    else
      for (const [value, number] of Object.entries(values))
        if (realValues[value] !== number) found.push(`${name}.${value}: declared ${number}, TensorBoard has ${realValues[value] ?? 'none'}`);
  }
  return found;
}

function realFacts(python: string, declared: ProtoFacts): Promise<RealFacts> {
  const wanted = JSON.stringify({ messages: Object.keys(declared.messages), enums: Object.keys(declared.enums) });
  return new Promise((resolve, reject) => {
    execFile(python, ['-c', DUMP_DESCRIPTORS, wanted], { timeout: 120_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`dumping TensorBoard's descriptors failed: ${stderr || error.message}`)) : resolve(JSON.parse(stdout) as RealFacts),
    );
  });
}

describe("proto/tensorboard/event.proto against TensorBoard's own descriptors", function () {
  this.timeout(600_000);
  const source = readFileSync(EVENT_PROTO, 'utf8');
  const declared = declaredFacts(source);
  let real: RealFacts;

  before(async function () {
    const venv = await pythonVenv(TENSORBOARD_REQUIREMENTS);
    if ('missing' in venv) skipBecause(this, venv.missing);
    real = await realFacts(venv.python, declared);
  });

  it('declares the messages autoprune writes, in TensorFlow’s package', () => {
    assert.deepEqual(Object.keys(declared.messages).sort(), [
      'tensorflow.Event',
      'tensorflow.HistogramProto',
      'tensorflow.SessionLog',
      'tensorflow.Summary',
      'tensorflow.Summary.Value',
    ]);
    assert.deepEqual(Object.keys(declared.enums), ['tensorflow.SessionLog.SessionStatus']);
  });

  it('gives every declared field the name, number, type, cardinality and oneof of the real one', () => {
    assert.deepEqual(disagreements(declared, real), []);
  });

  it('would notice a field number, a type or a name that drifted', () => {
    const drifted = (from: string, to: string) => {
      assert.ok(source.includes(from), from);
      return disagreements(declaredFacts(source.replace(from, to)), real);
    };
    assert.deepEqual(
      drifted('double sum = 4;', 'double sum = 14;').map((line) => line.split(':')[0]),
      ['tensorflow.HistogramProto.sum'],
    );
    assert.match(drifted('int64 step = 2;', 'sint64 step = 2;').join('\n'), /^tensorflow\.Event\.step: declared .*"sint64"/);
    assert.match(drifted('repeated Value value = 1;', 'Value value = 1;').join('\n'), /^tensorflow\.Summary\.value: declared .*"repeated":false/);
    assert.deepEqual(drifted('string checkpoint_path = 2;', 'string checkpoint = 2;'), ['tensorflow.SessionLog.checkpoint: no such field']);
    assert.deepEqual(drifted('CHECKPOINT = 3;', 'CHECKPOINT = 4;'), ['tensorflow.SessionLog.SessionStatus.CHECKPOINT: declared 4, TensorBoard has 3']);
  });
});
