import { join } from 'node:path';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../../shared/proto/load.js';
import type { ValueId } from '../graph.js';
import { channelsFirstKernel, rowsInChannelsFirstOrder } from './layouts.js';
import { type Pads, windowPads } from './pads.js';
import type { ThinModel } from './thin-model.js';

/**
 * A thin model as an ONNX model (opset 17, IR version 8), encoded with protobufjs from the ONNX project's
 * own onnx.proto (proto/third_party/onnx). ONNX computes in NCHW: the input is [batch, channels, height,
 * width], kernels are OIHW, and a dense layer after a flatten reads its rows in NCHW order.
 */

export const ONNX_FILE = 'model.onnx';
const OPSET = 17;
const IR_VERSION = 8;
const FLOAT = 1;
const ATTRIBUTE = { FLOAT: 1, INT: 2, INTS: 7 } as const;

let modelProto: protobuf.Type | undefined;

/** The `onnx.ModelProto` message type, parsed once from onnx.proto. */
function modelType(): protobuf.Type {
  modelProto ??= protobuf.loadSync(join(PROTO_DIR, 'third_party', 'onnx', 'onnx.proto')).lookupType('onnx.ModelProto');
  return modelProto;
}

interface Attribute {
  readonly name: string;
  readonly type: number;
  readonly i?: number;
  readonly f?: number;
  readonly ints?: readonly number[];
}

const ints = (name: string, values: readonly number[]): Attribute => ({ name, type: ATTRIBUTE.INTS, ints: values });
const int = (name: string, value: number): Attribute => ({ name, type: ATTRIBUTE.INT, i: value });
const onnxPads = (p: Pads) => [p.top, p.left, p.bottom, p.right];

/** The model.onnx bytes of `model`. */
export function onnxModel(model: ThinModel, producerVersion: string): Uint8Array {
  const nodes: object[] = [];
  const initializers: object[] = [];
  const valueName = (value: ValueId) => (value === model.input ? 'input' : value === model.output ? 'logits' : `v${value}`);
  const initializer = (name: string, dims: readonly number[], data: Float32Array) => {
    initializers.push({ name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  };
  const node = (opType: string, inputs: readonly string[], output: string, attribute: readonly Attribute[] = []) =>
    nodes.push({ opType, input: inputs, output: [output], name: `${opType}_${output}`, attribute });
  const producers = new Map(model.ops.map((op) => [op.output, op] as const));
  /** Clip's min and max, shared by every ReLU6. */
  let clipBounds: [string, string] | undefined;

  for (const op of model.ops) {
    const out = valueName(op.output);
    switch (op.kind) {
      case 'conv':
      case 'depthwise': {
        const input = valueName(op.input);
        const [k, , channels, last] = op.kernelShape;
        const weight = initializer(`${op.name}.weight`, op.kind === 'conv' ? [last, channels, k, k] : [channels * last, 1, k, k], channelsFirstKernel(op));
        const inputs = op.bias ? [input, weight, initializer(`${op.name}.bias`, [op.bias.length], op.bias)] : [input, weight];
        node('Conv', inputs, out, [
          ints('kernel_shape', [k, k]),
          ints('strides', [op.strides, op.strides]),
          ints('pads', onnxPads(windowPads(model.shapes[op.input]!, k, op.strides, op.padding))),
          int('group', op.kind === 'conv' ? 1 : channels),
        ]);
        break;
      }
      case 'dense': {
        const flattened = producers.get(op.input);
        const rows = flattened?.kind === 'flatten' ? model.shapes[flattened.input]! : [1, 1, op.kernelShape[0]];
        const weight = initializer(`${op.name}.weight`, [...op.kernelShape], rowsInChannelsFirstOrder(op.kernel, rows, op.kernelShape[1]));
        const inputs = [valueName(op.input), weight, ...(op.bias ? [initializer(`${op.name}.bias`, [op.bias.length], op.bias)] : [])];
        node('Gemm', inputs, out);
        break;
      }
      case 'batchNorm': {
        const parameter = (suffix: string, data: Float32Array) => initializer(`${op.name}.${suffix}`, [data.length], data);
        const inputs = [
          valueName(op.input),
          parameter('weight', op.gamma),
          parameter('bias', op.beta),
          parameter('running_mean', op.mean),
          parameter('running_var', op.variance),
        ];
        node('BatchNormalization', inputs, out, [{ name: 'epsilon', type: ATTRIBUTE.FLOAT, f: op.epsilon }]);
        break;
      }
      case 'relu':
        node('Relu', [valueName(op.input)], out);
        break;
      case 'relu6': {
        if (!clipBounds) clipBounds = [initializer('relu6.min', [], Float32Array.of(0)), initializer('relu6.max', [], Float32Array.of(6))];
        node('Clip', [valueName(op.input), ...clipBounds], out);
        break;
      }
      case 'maxPool':
        node('MaxPool', [valueName(op.input)], out, [
          ints('kernel_shape', [op.window, op.window]),
          ints('strides', [op.stride, op.stride]),
          ints('pads', onnxPads(windowPads(model.shapes[op.input]!, op.window, op.stride, op.padding))),
        ]);
        break;
      case 'globalAveragePool':
        node('GlobalAveragePool', [valueName(op.input)], `${out}.pooled`);
        node('Flatten', [`${out}.pooled`], out, [int('axis', 1)]);
        break;
      case 'flatten':
        node('Flatten', [valueName(op.input)], out, [int('axis', 1)]);
        break;
      case 'add':
        node('Add', [valueName(op.inputs[0]), valueName(op.inputs[1])], out);
        break;
    }
  }
  const [height, width, channels] = model.shapes[model.input]!;
  const type = modelType();
  const message = type.fromObject({
    irVersion: IR_VERSION,
    producerName: 'autoprune',
    producerVersion,
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: model.model,
      node: nodes,
      initializer: initializers,
      input: [tensorInfo('input', [channels!, height!, width!])],
      output: [tensorInfo('logits', [model.shapes[model.output]![0]!])],
    },
  });
  return type.encode(message).finish();
}

/** A float tensor of shape [batch, ...shape] with a symbolic batch axis. */
function tensorInfo(name: string, shape: readonly number[]): object {
  return { name, type: { tensorType: { elemType: FLOAT, shape: { dim: [{ dimParam: 'batch' }, ...shape.map((dimValue) => ({ dimValue }))] } } } };
}
