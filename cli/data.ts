import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { openCatalog } from '../engine/data/imagenet/catalog.js';
import { libuvThreads } from '../engine/data/imagenet/decode-environment.js';
import { DecodePool } from '../engine/data/imagenet/decode-pool.js';
import { IMAGENET_SIZE } from '../engine/data/imagenet/transforms.js';
import { loadConfig } from '../shared/config.js';
import { describeValue, InputError } from '../shared/errors.js';
import { defineCommand, formatCommandList, parseCommand, printHelp } from './command.js';
import { type CheckReport, checkCatalog, formatCheckReport } from './data-check.js';
import { dataGenerate, GENERATE_COMMAND } from './generate.js';
import { imageChecker } from './image-check.js';
import { nearest } from './nearest.js';
import { dataPrepare, PREPARE_COMMAND } from './prepare.js';

export const DATA_CHECK_COMMAND = defineCommand({
  name: 'data check',
  summary: 'reads and decodes every ImageNet sample; lists classes, images per split and every bad sample',
  usage: ['data check <config.yaml | directory> [--json] [--threads N]'],
  description:
    "Reads and decodes every ImageNet sample of the training and validation sets (a config's data.dir, or a directory in\n" +
    'any layout autoprune reads); prints the classes, images per split and per class, the images converted to RGB and\n' +
    'each bad sample with its file, offset and reason. Exit status 0: clean; 1: bad samples; 2: unusable input.',
  arguments: [{ name: '<config.yaml | directory>', description: 'a run config (its data.dir) or a dataset directory' }],
  options: {
    json: { type: 'boolean', description: 'prints the report as JSON' },
    threads: { type: 'string', value: 'N', description: 'decoding threads', defaultText: "the machine's cores, at most libuv's UV_THREADPOOL_SIZE" },
  },
  examples: ['data check /data/imagenet --threads 8', 'data check resnet50-imagenet.yaml --json > check.json'],
});

/** `autoprune data`'s subcommands, for its help and for `autoprune --help`. */
export const DATA_COMMANDS = [DATA_CHECK_COMMAND, GENERATE_COMMAND, PREPARE_COMMAND] as const;

/** `autoprune data <subcommand>`; resolves with the exit status. */
export async function data(args: string[]): Promise<number> {
  const [subcommand, ...rest] = args;
  if (subcommand === 'check') return dataCheck(rest);
  if (subcommand === 'generate') return dataGenerate(rest);
  if (subcommand === 'prepare') return dataPrepare(rest, openCatalog);
  if (subcommand === '--help' || subcommand === '-h') {
    process.stdout.write(`${formatCommandList(DATA_COMMANDS, 'data')}\n`);
    return 0;
  }
  const guess = subcommand === undefined ? undefined : nearest(subcommand, ['check', 'generate', 'prepare']);
  throw new InputError('autoprune data', 'needs a subcommand', {
    expected: guess === undefined ? 'check, generate or prepare' : `check, generate or prepare (nearest: ${guess})`,
    found: subcommand === undefined ? 'none' : describeValue(subcommand),
  });
}

async function dataCheck(args: string[]): Promise<number> {
  const parsed = parseCommand(DATA_CHECK_COMMAND, args);
  if (parsed.help) {
    printHelp(DATA_CHECK_COMMAND);
    return 0;
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) {
    throw new InputError('autoprune data check', 'expects exactly one config file or dataset directory', { found: `${positionals.length} arguments` });
  }
  // libvips decodes on libuv's thread pool, so more decoding threads than it has would only wait.
  const threads = values.threads === undefined ? Math.min(availableParallelism(), libuvThreads()) : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1)
    throw new InputError('--threads', 'must be a whole number of at least 1', { found: describeValue(values.threads) });
  const { dir, cacheDir, imageSize } = await datasetOf(positionals[0]!);
  const catalog = await openCatalog(dir, { badSamples: 'skip', ...(cacheDir === undefined ? {} : { cacheDir }) });
  const pool = new DecodePool(threads);
  let report: CheckReport;
  try {
    report = await checkCatalog(catalog, { check: imageChecker(pool, imageSize), ...(process.stderr.isTTY ? { progress: progressLine() } : {}) });
  } finally {
    await pool.close();
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatCheckReport(report)}\n`);
  return report.bad.length > 0 ? 1 : 0;
}

/** The dataset a config names (its data.dir and data.cacheDir) and the image size it trains at, or the directory itself. */
async function datasetOf(target: string): Promise<{ dir: string; cacheDir: string | undefined; imageSize: number }> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(target)).isDirectory();
  } catch {
    throw new InputError(target, 'not found', { expected: 'a config file or a dataset directory' });
  }
  if (isDirectory) return { dir: target, cacheDir: undefined, imageSize: IMAGENET_SIZE };
  const config = await loadConfig(target);
  const { data } = config;
  if (data.dataset !== 'imagenet') {
    throw new InputError(`${target}: data.dataset`, 'names no dataset that data check reads', { expected: 'imagenet', found: describeValue(data.dataset) });
  }
  return { dir: data.dir, cacheDir: data.cacheDir, imageSize: data.imageSize };
}

/** Progress on a terminal: one line, rewritten at most twice a second. */
function progressLine(): (checked: number, total: number) => void {
  let shown = 0;
  return (checked, total) => {
    if (Date.now() - shown < 500 && checked < total) return;
    shown = Date.now();
    process.stderr.write(`\rchecked ${checked} of ${total} images`);
  };
}
