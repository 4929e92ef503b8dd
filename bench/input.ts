import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openCatalog } from '../engine/data/imagenet/catalog.js';
import { decodeEnvironment } from '../engine/data/imagenet/decode-environment.js';
import { loadExampleType } from '../engine/data/imagenet/example.js';
import { modelsExample } from '../engine/data/imagenet/example-keys.js';
import { photoLikeJpeg } from '../engine/data/imagenet/photo-like.js';
import { openPrepared, PREPARED_FOLDER } from '../engine/data/imagenet/prepared.js';
import { PREPARE_DEFAULTS, writePrepared } from '../engine/data/imagenet/prepared-writer.js';
import { writeTfrecordFile } from '../test/helpers/imagenet-data.js';
import { anchorsDir, python } from './anchors.js';

/**
 * npm run bench:input — images a second that the ImageNet input pipeline delivers (read, decode, crop and
 * resize to 224x224 RGB bytes; normalisation happens on the device), per core and on all cores, from image
 * folders, TFRecord shards and the prepared cache, for the training transform (RandomResizedCrop + flip)
 * and the evaluation one (Resize(256) + CenterCrop(224)); beside torchvision's recipe on PIL
 * (../shared/anchors/torchvision_input_ref.py) run on the same files in the same run. "Per core" runs pin
 * the process to one core (taskset), ours and torchvision's alike. Also: what the malloc thresholds gain,
 * and how many cores a worker needs to feed 1,000 and 3,000 images a second.
 *
 * The images are generated: photograph-like JPEGs of ImageNet's typical sizes (about 500x375, quality 90,
 * about 100 KB). Options: --images N (training images, default 320), --passes N (passes over them a
 * measurement, best kept; default 3), --rounds N (rounds alternating torchvision and ours, best kept; default 2).
 */

const CLASSES = ['n01440764', 'n01443537', 'n01484850', 'n01491361'];
const SIZES = [
  [500, 375],
  [500, 333],
  [375, 500],
  [500, 400],
  [640, 480],
  [400, 300],
] as const;
const TARGETS = [1000, 3000];
const MEASURE = fileURLToPath(new URL('./input-measure.js', import.meta.url));

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

const hasTaskset = spawnSync('taskset', ['--version']).status === 0;

/** The command pinned to the first `cores` cores where taskset is there. */
function pinned(cores: number, command: string, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', `0-${cores - 1}`, command, ...args]] : [command, args];
}

function measure(layout: string, dir: string, kind: string, threads: number, passes: number, env: NodeJS.ProcessEnv): number {
  const [command, args] = pinned(threads, process.execPath, [MEASURE, layout, dir, kind, String(threads), String(passes)]);
  const result = spawnSync(command, args, { env, encoding: 'utf8', timeout: 20 * 60_000 });
  if (result.status !== 0) throw new Error(`measuring ${layout} ${kind} on ${threads} threads failed: ${result.stderr || result.error?.message}`);
  return (JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { imagesPerSecond: number }).imagesPerSecond;
}

/** torchvision's train and eval images/s on one core over every JPEG under `dir`, or why it did not run. */
function torchvision(dir: string, passes: number): { train: number; eval: number } | string {
  const anchors = anchorsDir();
  if (!anchors) return 'anchors directory not found (set AUTOPRUNE_ANCHORS)';
  const [command, args] = pinned(1, python(), [resolve(anchors, 'torchvision_input_ref.py'), dir, '--passes', String(passes)]);
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 20 * 60_000 });
  if (result.status !== 0) return `not run: ${(result.stderr || result.error?.message || '').trim().split('\n').at(-1)} (apt-get install python3-torchvision)`;
  const rate = (name: string) => Number(new RegExp(`torchvision ${name}: ([\\d.]+)`).exec(result.stdout)?.[1]);
  return { train: rate('train'), eval: rate('eval') };
}

async function makeDataset(root: string, images: number): Promise<{ folders: string; records: string; preparedImages: string; total: number }> {
  const folders = join(root, 'folders');
  const records = join(root, 'records');
  const exampleType = loadExampleType();
  const splits = { train: images, val: Math.max(CLASSES.length, Math.round(images / 8)) };
  for (const [split, count] of Object.entries(splits)) {
    const examples: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const label = i % CLASSES.length;
      const wnid = CLASSES[label]!;
      const [width, height] = SIZES[i % SIZES.length]!;
      const name = `${wnid}_${i}.JPEG`;
      const bytes = await photoLikeJpeg(split === 'train' ? i : 100_000 + i, width, height);
      mkdirSync(join(folders, split, wnid), { recursive: true });
      writeFileSync(join(folders, split, wnid, name), bytes);
      examples.push(modelsExample(exampleType, bytes, label, wnid, name));
    }
    const shards = split === 'train' ? 4 : 1;
    for (let s = 0; s < shards; s++) {
      const file = `${split === 'train' ? 'train' : 'validation'}-${String(s).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}`;
      writeTfrecordFile(
        join(records, file),
        examples.filter((_, i) => i % shards === s),
      );
    }
  }
  return { folders, records, preparedImages: join(root, 'prepared-images'), total: splits.train + splits.val };
}

/** The prepared cache's training images as files, for torchvision to read the same pixels. */
async function unpackPrepared(dir: string, out: string): Promise<void> {
  const { train } = await openPrepared(dir);
  mkdirSync(out, { recursive: true });
  const read = await train.readEncoded(Array.from({ length: train.count }, (_, i) => i));
  for (const sample of read) if ('bytes' in sample) writeFileSync(join(out, `${sample.index}.JPEG`), sample.bytes);
}

const fixed = (value: number) => value.toFixed(0).padStart(6);

async function main(): Promise<void> {
  const images = option('images', 320);
  const passes = option('passes', 3);
  const rounds = option('rounds', 2);
  const cores = availableParallelism();
  const root = mkdtempSync(join(tmpdir(), 'autoprune-bench-input-'));
  try {
    process.stdout.write(`generating ${images} ImageNet-sized JPEGs as folders and TFRecord shards ...\n`);
    const { folders, records, preparedImages, total } = await makeDataset(root, images);
    const source = await openCatalog(folders, { badSamples: 'fail' });
    const prepared = join(root, 'prepared');
    const preparedRaw = join(root, 'prepared-raw');
    const started = performance.now();
    await writePrepared(source, prepared, { ...PREPARE_DEFAULTS, parallel: 2 * cores, badSamples: 'fail' });
    const prepareRate = total / ((performance.now() - started) / 1000);
    await writePrepared(source, preparedRaw, { ...PREPARE_DEFAULTS, encoding: 'raw', parallel: 2 * cores, badSamples: 'fail' });
    await unpackPrepared(prepared, preparedImages);
    const originals = join(folders, 'train');
    const layouts = [
      { name: 'folders', dir: folders, anchorDir: originals },
      { name: 'tfrecord', dir: records, anchorDir: originals },
      { name: 'prepared', dir: prepared, anchorDir: preparedImages },
      // torchvision cannot read raw records: its column shows it on the original JPEGs.
      { name: 'prep-raw', dir: preparedRaw, anchorDir: originals },
    ];
    const threadCounts = cores > 1 ? [1, cores] : [1];
    // Rounds alternate torchvision and ours, keeping the best of each, so that a load that drifts during the
    // run (a shared machine) does not favour whichever ran first.
    const anchors = new Map<string, { train: number; eval: number } | string>();
    const ours = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      for (const dir of new Set(layouts.map((layout) => layout.anchorDir))) {
        const result = torchvision(dir, passes);
        const before = anchors.get(dir);
        anchors.set(
          dir,
          typeof result === 'string' || typeof before !== 'object'
            ? result
            : { train: Math.max(before.train, result.train), eval: Math.max(before.eval, result.eval) },
        );
      }
      for (const layout of layouts) {
        for (const kind of ['train', 'eval'] as const) {
          const rates = threadCounts.map((threads) => measure(layout.name, layout.dir, kind, threads, passes, decodeEnvironment(threads)));
          const key = `${layout.name} ${kind}`;
          ours.set(
            key,
            rates.map((rate, i) => Math.max(rate, ours.get(key)?.[i] ?? 0)),
          );
        }
      }
    }
    process.stdout.write(
      `\ncores: ${cores}${hasTaskset ? '' : ' (taskset missing: per-core runs are not pinned)'}; ${images} training images; ` +
        `best of ${rounds} rounds of ${passes} passes; images/s delivered as 224x224 RGB bytes\n\n`,
    );
    process.stdout.write('layout    transform   ours 1 core   ours all cores (per core)   torchvision 1 core (same files)   ours/torchvision per core\n');
    const perCoreTrain = new Map<string, number>();
    for (const layout of layouts) {
      for (const kind of ['train', 'eval'] as const) {
        const rates = ours.get(`${layout.name} ${kind}`)!;
        const anchor = anchors.get(layout.anchorDir)!;
        const theirs = typeof anchor === 'string' ? undefined : anchor[kind];
        const all = rates.at(-1)!;
        if (kind === 'train') perCoreTrain.set(layout.name, rates[0]!);
        process.stdout.write(
          `${layout.name.padEnd(9)} ${kind.padEnd(9)} ${fixed(rates[0]!)}        ${fixed(all)} (${fixed(all / threadCounts.at(-1)!)})            ` +
            `${theirs === undefined ? '     -' : fixed(theirs)}                          ${theirs === undefined ? '-' : (rates[0]! / theirs).toFixed(2)}\n`,
        );
      }
    }
    for (const [dir, anchor] of anchors) if (typeof anchor === 'string') process.stdout.write(`torchvision on ${dir}: ${anchor}\n`);
    const originalTv = anchors.get(originals);
    if (typeof originalTv !== 'string' && originalTv) {
      for (const layout of ['prepared', 'prep-raw']) {
        const ratio = perCoreTrain.get(layout)! / originalTv.train;
        process.stdout.write(`\n${layout} (training transform) / torchvision on the original JPEGs, per core: ${ratio.toFixed(2)}`);
      }
      process.stdout.write('\n');
    }
    const { GLIBC_TUNABLES: _, ...withoutTunables } = decodeEnvironment(1);
    const plain = measure('folders', folders, 'train', 1, passes, withoutTunables);
    const tuned = measure('folders', folders, 'train', 1, passes, decodeEnvironment(1));
    process.stdout.write(`malloc thresholds (GLIBC_TUNABLES), folders, training, 1 core: ${fixed(plain)} -> ${fixed(tuned)} images/s\n`);
    process.stdout.write(
      `data prepare (JPEG): ${prepareRate.toFixed(0)} images/s on ${cores} cores\n\ncores a worker needs for the training transform (at the per-core rate):\n`,
    );
    for (const [layout, perCore] of perCoreTrain) {
      process.stdout.write(`  ${layout.padEnd(9)} ${TARGETS.map((target) => `${target} images/s: ${Math.ceil(target / perCore)}`).join(', ')}\n`);
    }
    process.stdout.write(`(${PREPARED_FOLDER} caches: shorter side ${PREPARE_DEFAULTS.shortSide}; JPEG quality ${PREPARE_DEFAULTS.quality}, or raw RGB)\n`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
