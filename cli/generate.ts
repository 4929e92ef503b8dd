import { availableParallelism } from 'node:os';
import { libuvThreads } from '../engine/data/imagenet/decode-environment.js';
import { GENERATED_FORMATS, type GeneratedFormat, generateImageNet } from '../engine/data/imagenet/generate.js';
import { describeValue, InputError } from '../shared/errors.js';
import { defineCommand, parseCommand, printHelp } from './command.js';
import { wholeNumber } from './whole-number.js';

/** Training shards of a TFRecord dataset unless --shards says otherwise (fewer when there are fewer images). */
const DEFAULT_SHARDS = 8;
/** ImageNet has 1000 classes; the WordNet-like IDs stay distinct far beyond. */
const MAX_CLASSES = 1000;

export const GENERATE_COMMAND = defineCommand({
  name: 'data generate',
  summary: 'writes a small ImageNet-like dataset of generated photo-like JPEGs, to try autoprune without ImageNet',
  usage: ['data generate <dir> --classes N --per-class N [--val-per-class N] [--size PX] [--format folders|tfrecord] [--shards N] [--seed S]'],
  description:
    'Writes photo-like JPEGs of N classes named by WordNet-like IDs (n01000000, n01001111, ...), each class in colours of its\n' +
    'own, as image folders (train/<wnid>/, val/<wnid>/) or as TFRecord shards as the tensorflow/models builder writes them\n' +
    '(train-00000-of-00008, ..., validation-00000-of-00001). What it writes is what `data check` reads and a run trains on:\n' +
    'set data.dir to <dir> and data.classes to N. <dir> must be new or empty; it appears only once complete.',
  arguments: [{ name: '<dir>', description: 'the folder to write the dataset into (new or empty)' }],
  options: {
    classes: { type: 'string', value: 'N', description: `classes, 2 to ${MAX_CLASSES} (required)` },
    'per-class': { type: 'string', value: 'N', description: 'training images per class (required)' },
    'val-per-class': { type: 'string', value: 'N', description: 'validation images per class', defaultText: 'a fifth of --per-class, at least 1' },
    size: { type: 'string', value: 'PX', description: 'the shorter side of the images; widths go up to a quarter more', default: '64' },
    format: { type: 'string', value: GENERATED_FORMATS.join('|'), description: 'image folders or TFRecord shards', default: 'folders' },
    shards: {
      type: 'string',
      value: 'N',
      description: 'TFRecord training shards (validation: one per 8)',
      defaultText: `${DEFAULT_SHARDS}, or one per training image when there are fewer`,
    },
    seed: { type: 'string', value: 'S', description: 'the same seed writes the same images', default: '1' },
  },
  examples: [
    'data generate data/imagenet-demo --classes 4 --per-class 8 --val-per-class 2 --size 40',
    'data generate /tmp/imagenet-shards --classes 10 --per-class 100 --format tfrecord --shards 16',
  ],
});

/** `autoprune data generate`; resolves with the exit status. */
export async function dataGenerate(args: string[], stderr: NodeJS.WritableStream = process.stderr): Promise<number> {
  const parsed = parseCommand(GENERATE_COMMAND, args);
  if (parsed.help) {
    printHelp(GENERATE_COMMAND);
    return 0;
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1)
    throw new InputError('autoprune data generate', 'expects exactly one folder to write into', { found: `${positionals.length} arguments` });
  for (const required of ['classes', 'per-class'] as const) {
    if (values[required] === undefined) throw new InputError('autoprune data generate', `needs --${required} N`);
  }
  const format = values.format as GeneratedFormat;
  if (!GENERATED_FORMATS.includes(format))
    throw new InputError('--format', `must be ${GENERATED_FORMATS.join(' or ')}`, { found: describeValue(values.format) });
  const classes = wholeNumber('--classes', values.classes!, 2, MAX_CLASSES);
  const perClass = wholeNumber('--per-class', values['per-class']!, 1);
  const valPerClass =
    values['val-per-class'] === undefined ? Math.max(1, Math.round(perClass / 5)) : wholeNumber('--val-per-class', values['val-per-class'], 1);
  const shards = values.shards === undefined ? Math.min(DEFAULT_SHARDS, classes * perClass) : wholeNumber('--shards', values.shards, 1);
  if (values.shards !== undefined && format !== 'tfrecord') throw new InputError('--shards', 'applies to --format tfrecord only');
  const options = {
    classes,
    perClass,
    valPerClass,
    size: wholeNumber('--size', values.size, 8, 4096),
    format,
    seed: wholeNumber('--seed', values.seed, 0),
    shards,
  };
  // JPEG encoding runs on libuv's pool, so more images in flight than it has threads would only wait.
  const parallel = Math.max(1, Math.min(availableParallelism(), libuvThreads())) * 2;
  let shown = 0;
  const dataset = await generateImageNet(positionals[0]!, options, {
    parallel,
    progress: (done, total) => {
      if (Date.now() - shown < 1000 && done < total) return;
      shown = Date.now();
      stderr.write(`generated ${done} of ${total} images\n`);
    },
  });
  const files = format === 'folders' ? 'image folders' : `${dataset.files} TFRecord shards`;
  stderr.write(
    `wrote ${dataset.train} training and ${dataset.val} validation images of ${classes} classes as ${files} ` +
      `(${megabytes(dataset.bytes)}) to ${dataset.dir}; train on it with data.dir: ${dataset.dir} and data.classes: ${classes}\n`,
  );
  return 0;
}

/** A size as people read it: KiB below a MiB. */
function megabytes(bytes: number): string {
  return bytes < 2 ** 20 ? `${Math.ceil(bytes / 2 ** 10)} KiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
