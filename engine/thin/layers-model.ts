import * as tf from '@tensorflow/tfjs';
import type { ThinModel, ThinOp } from './thin-model.js';

/**
 * A thin model as a TensorFlow.js LayersModel (Keras layers, NHWC like the engine), built with tfjs's
 * own layers so that its model.json is what `tf.loadLayersModel` reads without any autoprune code. The
 * same model measures the thin and dense inference times on the current backend.
 */

export const LAYERS_MODEL_JSON = 'model.json';
export const LAYERS_MODEL_WEIGHTS = 'weights.bin';

/** Builds `model` with its weights; dispose it when done. */
export function toLayersModel(model: ThinModel): tf.LayersModel {
  const values = new Map<number, tf.SymbolicTensor>();
  const input = tf.input({ shape: [...model.shapes[model.input]!], name: 'input' });
  values.set(model.input, input);
  const weights: Array<[string, tf.Tensor[]]> = [];
  const at = (value: number) => values.get(value)!;
  const producers = new Map(model.ops.map((op) => [op.output, op] as const));
  for (const op of model.ops) {
    const [layer, layerWeights] = kerasLayer(op);
    const x = op.kind === 'add' ? [at(op.inputs[0]), at(op.inputs[1])] : maybePadded(op, at(op.input), producers);
    values.set(op.output, layer.apply(x) as tf.SymbolicTensor);
    if (layerWeights) weights.push([layer.name, layerWeights]);
  }
  const keras = tf.model({ inputs: input, outputs: at(model.output), name: kerasName(model.model) });
  for (const [name, tensors] of weights) {
    keras.getLayer(name).setWeights(tensors);
    tf.dispose(tensors);
  }
  return keras;
}

/** model.json and its one weight file, as `tf.loadLayersModel` reads them. */
export async function layersModelFiles(keras: tf.LayersModel): Promise<Map<string, Uint8Array>> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await keras.save(
    tf.io.withSaveHandler(async (saved) => {
      artifacts = saved;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const { modelTopology, weightSpecs, weightData } = artifacts!;
  const json = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
    convertedBy: 'autoprune export --thin',
    modelTopology,
    weightsManifest: [{ paths: [LAYERS_MODEL_WEIGHTS], weights: weightSpecs }],
  };
  return new Map([
    [LAYERS_MODEL_JSON, new TextEncoder().encode(JSON.stringify(json))],
    [LAYERS_MODEL_WEIGHTS, new Uint8Array(tf.io.CompositeArrayBuffer.join(weightData))],
  ]);
}

/**
 * Keras pads only 'same' or 'valid': an explicit pad becomes a ZeroPadding2D before the window. For a max
 * pool that is exact only over values that are never negative (after a ReLU), where a zero never wins.
 */
function maybePadded(op: Exclude<ThinOp, { kind: 'add' }>, x: tf.SymbolicTensor, producers: ReadonlyMap<number, ThinOp>): tf.SymbolicTensor {
  if ((op.kind !== 'conv' && op.kind !== 'depthwise' && op.kind !== 'maxPool') || typeof op.padding !== 'number' || op.padding === 0) return x;
  const producer = producers.get(op.input);
  if (op.kind === 'maxPool' && producer?.kind !== 'relu' && producer?.kind !== 'relu6')
    throw new Error(`a max pool with explicit padding over ${producer?.kind ?? 'the input'}, which may be negative, has no Keras layer`);
  return tf.layers.zeroPadding2d({ padding: op.padding, name: `pad_${op.output}` }).apply(x) as tf.SymbolicTensor;
}

function kerasLayer(op: ThinOp): [tf.layers.Layer, tf.Tensor[] | undefined] {
  switch (op.kind) {
    case 'conv':
    case 'depthwise': {
      const [k1, , , last] = op.kernelShape;
      const padding = op.padding === 'same' ? 'same' : 'valid';
      const common = { kernelSize: k1, strides: op.strides, padding, useBias: op.bias !== undefined, name: kerasName(op.name) } as const;
      const layer = op.kind === 'conv' ? tf.layers.conv2d({ ...common, filters: last }) : tf.layers.depthwiseConv2d({ ...common, depthMultiplier: last });
      return [layer, withBias(tf.tensor(op.kernel, [...op.kernelShape]), op.bias)];
    }
    case 'dense':
      return [
        tf.layers.dense({ units: op.kernelShape[1], useBias: op.bias !== undefined, name: kerasName(op.name) }),
        withBias(tf.tensor(op.kernel, [...op.kernelShape]), op.bias),
      ];
    case 'batchNorm':
      return [
        tf.layers.batchNormalization({ axis: -1, epsilon: op.epsilon, name: kerasName(op.name) }),
        [tf.tensor(op.gamma), tf.tensor(op.beta), tf.tensor(op.mean), tf.tensor(op.variance)],
      ];
    case 'relu':
      return [tf.layers.reLU({ name: `relu_${op.output}` }), undefined];
    case 'relu6':
      return [tf.layers.reLU({ maxValue: 6, name: `relu6_${op.output}` }), undefined];
    case 'maxPool':
      return [
        tf.layers.maxPooling2d({ poolSize: op.window, strides: op.stride, padding: op.padding === 'same' ? 'same' : 'valid', name: `max_pool_${op.output}` }),
        undefined,
      ];
    case 'globalAveragePool':
      return [tf.layers.globalAveragePooling2d({ name: `global_average_pool_${op.output}` }), undefined];
    case 'flatten':
      return [tf.layers.flatten({ name: `flatten_${op.output}` }), undefined];
    case 'add':
      return [tf.layers.add({ name: `add_${op.output}` }), undefined];
  }
}

function withBias(kernel: tf.Tensor, bias: Float32Array | undefined): tf.Tensor[] {
  return bias ? [kernel, tf.tensor(bias)] : [kernel];
}

/** Keras layer names: letters, digits and underscores (the engine's dots become underscores). */
function kerasName(name: string): string {
  return name.replace(/[^A-Za-z0-9_]/g, '_');
}
