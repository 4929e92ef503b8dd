/**
 * ImageNet as image folders: `train/<wnid>/*.JPEG`, and `val/` as synset folders (the valprep.sh layout) or
 * flat `ILSVRC2012_val_XXXXXXXX.JPEG` files labelled by Kaggle's LOC_val_solution.csv or the devkit's
 * ground truth. Kaggle's download keeps the folders under ILSVRC/Data/CLS-LOC/ with the CSV beside ILSVRC/.
 */
import type { Dirent } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileSystemError } from '../../../shared/atomic-file.js';
import { InputError } from '../../../shared/errors.js';
import type { BadSample, CatalogIndex, FileGroup, SplitIndex } from './catalog-types.js';
import { mapLimited } from './parallel.js';
import { DEVKIT_GROUND_TRUTH_FILE, KAGGLE_SOLUTION_FILE, parseDevkitGroundTruth, parseKaggleSolution, type ValLabels } from './val-labels.js';

const KAGGLE_IMAGES = join('ILSVRC', 'Data', 'CLS-LOC');
const DEVKIT_DATA = join('ILSVRC2012_devkit_t12', 'data');
const WNID = /^n\d{8}$/;
const IMAGE_FILE = /^[^.].*\.(jpe?g|png)$/i;
/** Folders listed at once: enough to hide a network file system's latency, few enough for its server. */
const LISTING_CONCURRENCY = 16;

export interface FolderLayout {
  /** The dataset directory as given (absolute); index paths are relative to it. */
  readonly root: string;
  /** The directory holding train/ and val/. */
  readonly images: string;
  /** The label files for a flat val/, where present. */
  readonly kaggleSolution: string | undefined;
  readonly devkitGroundTruth: string | undefined;
}

/** The folder layout under `root`, or undefined when there is no train/ folder. */
export async function findFolderLayout(root: string): Promise<FolderLayout | undefined> {
  for (const images of [root, join(root, KAGGLE_IMAGES)]) {
    if (!(await isDirectory(join(images, 'train')))) continue;
    const searched = [...new Set([root, images])];
    return {
      root,
      images,
      kaggleSolution: await firstFile(searched.map((dir) => join(dir, KAGGLE_SOLUTION_FILE))),
      devkitGroundTruth: await firstFile(searched.flatMap((dir) => [join(dir, DEVKIT_GROUND_TRUTH_FILE), join(dir, DEVKIT_DATA, DEVKIT_GROUND_TRUTH_FILE)])),
    };
  }
  return undefined;
}

/**
 * What the index depends on, cheap to read: the modification times of train/, val/ and their subfolders
 * (a folder's time changes when a file is added, removed or renamed in it) and the label files' sizes and
 * times. Read before listing, so that a change while listing makes the next open list again.
 */
export async function folderFingerprint(layout: FolderLayout): Promise<string> {
  const lines: string[] = [];
  for (const split of ['train', 'val']) {
    const dir = join(layout.images, split);
    const entries = await listDirectoryIfThere(dir);
    if (entries === undefined) {
      lines.push(`${split} absent`);
      continue;
    }
    lines.push(`${split} ${await modified(dir)}`);
    const folders = await foldersOf(dir, entries);
    const times = await mapLimited(folders, LISTING_CONCURRENCY, (name) => modified(join(dir, name)));
    folders.forEach((name, i) => lines.push(`${split}/${name} ${times[i]}`));
  }
  for (const file of [layout.kaggleSolution, layout.devkitGroundTruth]) {
    if (file !== undefined) lines.push(`${relative(layout.root, file)} ${(await stat(file, { bigint: true })).size} ${await modified(file)}`);
  }
  return lines.join('\n');
}

/** Lists the whole dataset: every image with its class, and the images that have none. */
export async function indexFolders(layout: FolderLayout): Promise<CatalogIndex> {
  const trainDir = join(layout.images, 'train');
  const trainEntries = await listDirectory(trainDir);
  const trainFolders = await foldersOf(trainDir, trainEntries);
  const classes = trainFolders.filter((name) => WNID.test(name)).sort();
  if (classes.length === 0) {
    const archives = trainEntries.filter((entry) => entry.name.endsWith('.tar')).length;
    throw new InputError(trainDir, 'holds no class folders', {
      expected: 'one folder per class named by its WordNet ID (train/n01440764/...)',
      found: archives > 0 ? `${archives} .tar archives: extract each into train/<wnid>/` : `${trainEntries.length} entries, none a WordNet ID folder`,
    });
  }
  const classOf = new Map(classes.map((wnid, index) => [wnid, index]));
  const train = await indexSynsetFolders(
    layout,
    trainDir,
    trainFolders,
    classOf,
    (name) => `folder ${name} is not a WordNet ID (nXXXXXXXX), so its images have no class`,
  );
  const val = await indexValidation(layout, classOf);
  return { layout: 'folders', classes, train, val };
}

async function indexValidation(layout: FolderLayout, classOf: ReadonlyMap<string, number>): Promise<SplitIndex> {
  const valDir = join(layout.images, 'val');
  const entries = await listDirectoryIfThere(valDir);
  if (entries === undefined) throw new InputError(valDir, 'validation folder not found', { expected: 'val/ beside train/' });
  const synsetSplit = await indexSynsetFolders(layout, valDir, await foldersOf(valDir, entries), classOf, (name) => unknownClass(name));
  const flat = imageNames(entries);
  if (flat.length === 0) {
    if (synsetSplit.groups.length === 0 && synsetSplit.bad.length === 0)
      throw new InputError(valDir, 'holds no images', { expected: 'val/<wnid>/*.JPEG or val/*.JPEG' });
    return synsetSplit;
  }
  const labels = await flatValLabels(layout, valDir, flat.length);
  const names: string[] = [];
  const classIndices: number[] = [];
  const bad: BadSample[] = [...synsetSplit.bad];
  for (const name of flat) {
    const entry = labels(name);
    const file = relative(layout.root, join(valDir, name));
    if ('problem' in entry) bad.push({ file, reason: entry.problem });
    else if (!classOf.has(entry.wnid)) bad.push({ file, reason: unknownClass(entry.wnid) });
    else {
      names.push(name);
      classIndices.push(classOf.get(entry.wnid)!);
    }
  }
  const flatGroup: FileGroup = { dir: relative(layout.root, valDir), names, labels: classIndices };
  return { kind: 'files', groups: [flatGroup, ...synsetSplit.groups], bad };
}

async function flatValLabels(layout: FolderLayout, valDir: string, images: number): Promise<ValLabels> {
  if (layout.kaggleSolution !== undefined) return parseKaggleSolution(await readText(layout.kaggleSolution), layout.kaggleSolution);
  if (layout.devkitGroundTruth !== undefined) return parseDevkitGroundTruth(await readText(layout.devkitGroundTruth), layout.devkitGroundTruth);
  throw new InputError(valDir, `holds ${images} images but no labels for them`, {
    expected: `${KAGGLE_SOLUTION_FILE} or ${DEVKIT_GROUND_TRUTH_FILE} (also in ${DEVKIT_DATA}/) in ${layout.root}${layout.images === layout.root ? '' : ` or ${layout.images}`}, or val/<wnid>/ folders`,
  });
}

/** One group per WordNet ID folder that names a class; the images of any other folder are bad, for `reason`. */
async function indexSynsetFolders(
  layout: FolderLayout,
  dir: string,
  folders: readonly string[],
  classOf: ReadonlyMap<string, number>,
  reason: (folder: string) => string,
): Promise<{ kind: 'files'; groups: FileGroup[]; bad: BadSample[] }> {
  const listed = await mapLimited(folders, LISTING_CONCURRENCY, async (name) => imageNames(await listDirectory(join(dir, name))));
  const groups: FileGroup[] = [];
  const bad: BadSample[] = [];
  folders.forEach((folder, i) => {
    const relativeDir = relative(layout.root, join(dir, folder));
    const label = classOf.get(folder);
    if (label !== undefined) groups.push({ dir: relativeDir, names: listed[i]!, labels: label });
    else for (const name of listed[i]!) bad.push({ file: join(relativeDir, name), reason: reason(folder) });
  });
  return { kind: 'files', groups, bad };
}

function unknownClass(wnid: string): string {
  return `unknown WordNet ID ${wnid}: not among the training classes`;
}

/** Image file names of a listing, sorted so that every process numbers the samples alike. */
function imageNames(entries: readonly Dirent[]): string[] {
  return entries
    .filter((entry) => (entry.isFile() || entry.isSymbolicLink()) && IMAGE_FILE.test(entry.name))
    .map((entry) => entry.name)
    .sort();
}

/** Names of the subfolders in a listing (following symbolic links), sorted. */
async function foldersOf(dir: string, entries: readonly Dirent[] | undefined): Promise<string[]> {
  const candidates = (entries ?? []).filter((entry) => !entry.name.startsWith('.') && (entry.isDirectory() || entry.isSymbolicLink()));
  const isFolder = await mapLimited(candidates, LISTING_CONCURRENCY, (entry) =>
    entry.isDirectory() ? Promise.resolve(true) : isDirectory(join(dir, entry.name)),
  );
  return candidates
    .filter((_, i) => isFolder[i])
    .map((entry) => entry.name)
    .sort();
}

async function listDirectory(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw fileSystemError(dir, 'list folder', error);
  }
}

/** A folder's entries, or undefined when it does not exist. */
async function listDirectoryIfThere(dir: string): Promise<Dirent[] | undefined> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileSystemError(dir, 'list folder', error);
  }
}

async function modified(path: string): Promise<string> {
  try {
    return String((await stat(path, { bigint: true })).mtimeNs);
  } catch (error) {
    throw fileSystemError(path, 'read the modification time of', error);
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function firstFile(paths: readonly string[]): Promise<string | undefined> {
  for (const path of paths) {
    try {
      if ((await stat(path)).isFile()) return path;
    } catch {
      // not there: try the next place
    }
  }
  return undefined;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw fileSystemError(path, 'read label file', error);
  }
}
