import { availableParallelism } from 'node:os';
import { libuvThreads } from '../engine/data/imagenet/decode-environment.js';
import { PREPARED_FOLDER } from '../engine/data/imagenet/prepared.js';
import { PREPARE_DEFAULTS, type PrepareSource, writePrepared } from '../engine/data/imagenet/prepared-writer.js';
import { describeValue, InputError } from '../shared/errors.js';
import { defineCommand, parseCommand, printHelp } from './command.js';
import { wholeNumber } from './whole-number.js';

export const PREPARE_COMMAND = defineCommand({
  name: 'data prepare',
  summary: 'writes an ImageNet dataset once, resized, into a few large packs that train faster',
  usage: ['data prepare <dataset-dir> --out DIR [--short-side N] [--encoding jpeg|raw] [--quality Q] [--ranks N] [--samples-per-pack N]'],
  description:
    'Writes the dataset (any layout data check reads) once with the shorter side at most --short-side, as JPEGs or\n' +
    `as raw RGB (several times larger, nothing to decode), in a few large packs with an offset index (DIR/${PREPARED_FOLDER}/);\n` +
    'with --ranks N each split has a multiple of N packs of equal size, so each of N workers reads whole packs.\n' +
    'Set data.dir to DIR to train from it.',
  arguments: [{ name: '<dataset-dir>', description: 'image folders, TFRecord shards, or another prepared cache' }],
  options: {
    out: { type: 'string', value: 'DIR', description: 'the folder to write the prepared cache into (required)' },
    'short-side': { type: 'string', value: 'N', description: 'the shorter side of the stored images at most', default: String(PREPARE_DEFAULTS.shortSide) },
    encoding: { type: 'string', value: 'jpeg|raw', description: 'how images are stored', default: PREPARE_DEFAULTS.encoding },
    quality: { type: 'string', value: 'Q', description: 'JPEG quality, 1 to 100', default: String(PREPARE_DEFAULTS.quality) },
    ranks: { type: 'string', value: 'N', description: 'workers that will read whole packs', default: String(PREPARE_DEFAULTS.ranks) },
    'samples-per-pack': { type: 'string', value: 'N', description: 'samples per pack', default: String(PREPARE_DEFAULTS.samplesPerPack) },
    'bad-samples': { type: 'string', value: 'fail|skip', description: 'a sample that cannot be read fails the run or is left out', default: 'fail' },
    'cache-dir': {
      type: 'string',
      value: 'DIR',
      description: "where the source's index is cached",
      defaultText: '$XDG_CACHE_HOME/autoprune or ~/.cache/autoprune',
    },
  },
  examples: ['data prepare /data/imagenet --out /data/imagenet-160 --short-side 160 --ranks 8'],
});

/** Opens a dataset directory as the catalog does (catalog.ts's openCatalog). */
export type SourceOpener = (dir: string, options: { cacheDir?: string; badSamples: 'fail' | 'skip' }) => Promise<PrepareSource>;

/** `autoprune data prepare`; resolves with the exit status. */
export async function dataPrepare(args: string[], openSource: SourceOpener, stderr: NodeJS.WritableStream = process.stderr): Promise<number> {
  const parsed = parseCommand(PREPARE_COMMAND, args);
  if (parsed.help) {
    printHelp(PREPARE_COMMAND);
    return 0;
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1)
    throw new InputError('autoprune data prepare', 'expects exactly one dataset directory', { found: `${positionals.length} arguments` });
  if (values.out === undefined) throw new InputError('autoprune data prepare', 'needs --out DIR, the folder to write the prepared cache into');
  const badSamples = values['bad-samples'];
  if (badSamples !== 'fail' && badSamples !== 'skip') throw new InputError('--bad-samples', 'must be fail or skip', { found: describeValue(badSamples) });
  const encoding = values.encoding;
  if (encoding !== 'jpeg' && encoding !== 'raw') throw new InputError('--encoding', 'must be jpeg or raw', { found: describeValue(encoding) });
  const shortSide = wholeNumber('--short-side', values['short-side'], 1);
  const quality = wholeNumber('--quality', values.quality, 1, 100);
  const ranks = wholeNumber('--ranks', values.ranks, 1);
  const samplesPerPack = wholeNumber('--samples-per-pack', values['samples-per-pack'], 1);
  const cacheDir = values['cache-dir'];
  const source = await openSource(positionals[0]!, { badSamples, ...(cacheDir === undefined ? {} : { cacheDir }) });
  // Re-encoding runs on libuv's pool, so more images in flight than it has threads would only wait.
  const parallel = Math.max(1, Math.min(availableParallelism(), libuvThreads())) * 2;
  let shown = 0;
  const index = await writePrepared(source, values.out, {
    shortSide,
    quality,
    encoding,
    ranks,
    samplesPerPack,
    seed: PREPARE_DEFAULTS.seed,
    parallel,
    badSamples,
    progress: (done, total) => {
      if (Date.now() - shown < 1000 && done < total) return;
      shown = Date.now();
      stderr.write(`prepared ${done} of ${total} images\n`);
    },
  });
  const { train, val } = index.splits;
  const count = (packs: typeof train.packs) => packs.reduce((sum, pack) => sum + pack.count, 0);
  const bytes = [...train.packs, ...val.packs].reduce((sum, pack) => sum + pack.bytes, 0);
  stderr.write(
    `wrote ${count(train.packs)} training and ${count(val.packs)} validation images in ${train.packs.length + val.packs.length} packs ` +
      `(${(bytes / 2 ** 20).toFixed(1)} MiB) to ${values.out}/${PREPARED_FOLDER}; ${train.bad.length + val.bad.length} bad samples left out\n`,
  );
  for (const sample of [...train.bad, ...val.bad])
    stderr.write(`  bad: ${sample.file}${sample.offset === undefined ? '' : `@${sample.offset}`}: ${sample.reason}\n`);
  return 0;
}
