import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { openCatalog } from '../engine/data/imagenet/catalog.js';
import { libuvThreads } from '../engine/data/imagenet/decode-environment.js';
import { DecodePool } from '../engine/data/imagenet/decode-pool.js';
import { IMAGENET_SIZE } from '../engine/data/imagenet/transforms.js';
import { loadConfig } from '../shared/config.js';
import { describeValue, InputError } from '../shared/errors.js';
import { type CheckReport, checkCatalog, formatCheckReport } from './data-check.js';
import { imageChecker } from './image-check.js';
import { dataPrepare, PREPARE_USAGE } from './prepare.js';

export const DATA_USAGE = `  autoprune data check <config.yaml | directory> [--json] [--threads N]
      reads and decodes every ImageNet sample of the training and validation sets (a config's data.dir, or a
      directory in any layout autoprune reads) on N decoding threads (default: the cores, at most libuv's
      UV_THREADPOOL_SIZE); prints the classes, images per split and per class, the images converted to RGB and
      each bad sample with its file, offset and reason. Exit status 0: clean; 1: bad samples; 2: unusable input
${PREPARE_USAGE}`;

/** `autoprune data <subcommand>`; resolves with the exit status. */
export async function data(args: string[]): Promise<number> {
  const [subcommand, ...rest] = args;
  if (subcommand === 'check') return dataCheck(rest);
  if (subcommand === 'prepare') return dataPrepare(rest, openCatalog);
  throw new InputError('autoprune data', 'needs a subcommand', {
    expected: 'check or prepare',
    found: subcommand === undefined ? 'none' : describeValue(subcommand),
  });
}

async function dataCheck(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' }, threads: { type: 'string' } } });
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
