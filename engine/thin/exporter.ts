import * as tf from '@tensorflow/tfjs';
import { encodeSafetensors } from '../../shared/safetensors.js';
import type { Network } from '../network.js';
import { planChannels } from './channel-plan.js';
import { millisecondsPerImage } from './inference-time.js';
import { layersModelFiles, toLayersModel } from './layers-model.js';
import { type ModelSize, modelSize } from './model-size.js';
import { ONNX_FILE, onnxModel } from './onnx.js';
import { type ThinModel, thinModel } from './thin-model.js';
import { SAFETENSORS_FILE, torchStateDict } from './torch-state-dict.js';
import { readWeights } from './weights.js';

/**
 * A pruned network as a plain dense model in a deployment format: thin (closed channels and neurons
 * removed physically, with what they fed) or at the dense shapes (closed units zeroed), with the
 * parameters, FLOPs and measured inference time of both.
 */

export const EXPORT_FORMATS = ['onnx', 'tfjs', 'safetensors'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ModelFigures extends ModelSize {
  /** Median inference time of one image on `backend`; null when not measured. */
  readonly msPerImage: number | null;
}

export interface ExportSummary {
  readonly format: ExportFormat;
  /** Whether the exported model is the thin one (else the dense shapes). */
  readonly thin: boolean;
  /** The tfjs backend the times were measured on. */
  readonly backend: string;
  readonly thinModel: ModelFigures;
  readonly denseModel: ModelFigures;
  /** Neuron-gated layers whose every unit is closed: each keeps one zeroed channel. */
  readonly allClosed: readonly string[];
  /** The files written, by name. */
  readonly files: readonly string[];
}

/** The thin model and the one at the dense shapes, from a network's graph and weights. */
export interface ThinAndDense {
  readonly thin: ThinModel;
  readonly dense: ThinModel;
  readonly allClosed: readonly string[];
}

/** Plans and builds both models; `gated` false reads the network as a dense phase leaves it (gates ignored). */
export async function thinAndDense(network: Network, gated: boolean): Promise<ThinAndDense> {
  const graph = network.graph();
  const weights = await readWeights(network, gated);
  const thinPlan = planChannels(graph, weights, true);
  return {
    thin: thinModel(network.name, graph, weights, thinPlan),
    dense: thinModel(network.name, graph, weights, planChannels(graph, weights, false)),
    allClosed: thinPlan.allClosed,
  };
}

export interface ExportOptions {
  readonly format: ExportFormat;
  readonly thin: boolean;
  /** Timed runs per model after the warm-up; 0 measures nothing. */
  readonly timingRuns: number;
  /** autoprune's version, recorded as the producer. */
  readonly version: string;
}

/** The files of the chosen model in the chosen format, and the figures of both models. */
export async function exportModels(models: ThinAndDense, options: ExportOptions): Promise<{ files: Map<string, Uint8Array>; summary: ExportSummary }> {
  const files = await modelFiles(options.thin ? models.thin : models.dense, options);
  const summary: ExportSummary = {
    format: options.format,
    thin: options.thin,
    backend: tf.getBackend(),
    thinModel: { ...modelSize(models.thin), msPerImage: await timed(models.thin, options.timingRuns) },
    denseModel: { ...modelSize(models.dense), msPerImage: await timed(models.dense, options.timingRuns) },
    allClosed: models.allClosed,
    files: [...files.keys()],
  };
  return { files, summary };
}

/** The files of `model` in `format`, by file name. */
export async function modelFiles(model: ThinModel, options: Pick<ExportOptions, 'format' | 'version'>): Promise<Map<string, Uint8Array>> {
  switch (options.format) {
    case 'onnx':
      return new Map([[ONNX_FILE, onnxModel(model, options.version)]]);
    case 'safetensors':
      return new Map([
        [SAFETENSORS_FILE, encodeSafetensors(torchStateDict(model), { format: 'pt', model: model.model, producer: `autoprune ${options.version}` })],
      ]);
    case 'tfjs': {
      const keras = toLayersModel(model);
      try {
        return await layersModelFiles(keras);
      } finally {
        keras.dispose();
      }
    }
  }
}

async function timed(model: ThinModel, runs: number): Promise<number | null> {
  if (runs <= 0) return null;
  const keras = toLayersModel(model);
  try {
    return await millisecondsPerImage(keras, model.shapes[model.input]!, runs);
  } finally {
    keras.dispose();
  }
}
