import type { BadSample, CatalogSplit, ImageNetCatalog } from '../engine/data/imagenet/catalog.js';
import type { ImageCheck } from './image-check.js';

/**
 * `autoprune data check`'s work: every sample of both splits read through the catalog's readers and decoded,
 * tallied per class, with each bad sample and each image that had to be converted to RGB named.
 */

export interface SplitReport {
  readonly images: number;
  readonly perClass: Readonly<Record<string, number>>;
}

/** A sample whose image was not a 3-channel JPEG and was converted: `from` says what it was. */
export interface ConvertedSample {
  readonly file: string;
  readonly offset?: number;
  readonly from: string;
}

export interface CheckReport {
  readonly root: string;
  readonly layout: string;
  readonly classes: number;
  readonly splits: { readonly train: SplitReport; readonly val: SplitReport };
  readonly bad: readonly BadSample[];
  readonly converted: readonly ConvertedSample[];
}

export interface CheckOptions {
  /** Checks a batch of encoded images, one result each in their order. */
  readonly check: (images: readonly Buffer[]) => Promise<ImageCheck[]>;
  /** Called after each batch of samples with the number checked so far and the total. */
  readonly progress?: (checked: number, total: number) => void;
}

/** Samples read per call to the catalog: large enough to read shards sequentially, small enough to hold in memory. */
const READ_BATCH = 256;

export async function checkCatalog(catalog: ImageNetCatalog, options: CheckOptions): Promise<CheckReport> {
  const total = catalog.train.count + catalog.val.count;
  const bad: BadSample[] = [...catalog.train.bad, ...catalog.val.bad];
  const converted: ConvertedSample[] = [];
  let checked = 0;
  const checkSplit = async (split: CatalogSplit): Promise<SplitReport> => {
    const perClass = new Array<number>(catalog.classes.length).fill(0);
    const read = (first: number) => {
      const batch = split.readEncoded(Array.from({ length: Math.min(READ_BATCH, split.count - first) }, (_, i) => first + i));
      // Awaited on the next turn; if the check fails first, its failure is the one reported.
      batch.catch(() => undefined);
      return batch;
    };
    // The next batch is read while this one decodes.
    let reading = split.count > 0 ? read(0) : undefined;
    for (let first = 0; first < split.count; first += READ_BATCH) {
      const samples = await reading!;
      reading = first + READ_BATCH < split.count ? read(first + READ_BATCH) : undefined;
      const readable = samples.flatMap((sample) => ('bytes' in sample ? [sample.bytes] : []));
      const results = await options.check(readable);
      let next = 0;
      samples.forEach((sample) => {
        const check = 'bytes' in sample ? results[next++] : undefined;
        if ('bad' in sample) bad.push(sample.bad);
        else if (check?.problem !== undefined) bad.push({ ...located(split.describe(sample.index)), reason: check.problem });
        else perClass[split.labelOf(sample.index)]!++;
        if (check?.converted !== undefined) converted.push({ ...located(split.describe(sample.index)), from: check.converted });
      });
      checked += samples.length;
      options.progress?.(checked, total);
    }
    const images = perClass.reduce((sum, n) => sum + n, 0);
    return { images, perClass: Object.fromEntries(catalog.classes.map((wnid, c) => [wnid, perClass[c]!])) };
  };
  const train = await checkSplit(catalog.train);
  const val = await checkSplit(catalog.val);
  return { root: catalog.root, layout: catalog.layout, classes: catalog.classes.length, splits: { train, val }, bad, converted };
}

/** A sample's file, and its offset when it is a record (described as `file@offset`). */
function located(where: string): { file: string; offset?: number } {
  const at = /^(.*)@(\d+)$/.exec(where);
  return at ? { file: at[1]!, offset: Number(at[2]) } : { file: where };
}

/** The report as text: the class count, images per split and per class, then each bad sample and each conversion. */
export function formatCheckReport(report: CheckReport): string {
  const lines = [`${report.root}: ${report.layout}, ${report.classes} classes`];
  for (const [name, split] of Object.entries(report.splits)) {
    lines.push(`${name}: ${split.images} images`);
    for (const [wnid, count] of Object.entries(split.perClass)) lines.push(`  ${wnid}  ${count}`);
  }
  lines.push(`converted to 3-channel RGB: ${report.converted.length} image${report.converted.length === 1 ? '' : 's'}`);
  for (const sample of report.converted) lines.push(`  ${where(sample)}: ${sample.from}`);
  lines.push(`bad samples: ${report.bad.length}`);
  for (const sample of report.bad) lines.push(`  ${where(sample)}: ${sample.reason}`);
  return lines.join('\n');
}

function where(sample: { readonly file: string; readonly offset?: number }): string {
  return sample.offset === undefined ? sample.file : `${sample.file}@${sample.offset}`;
}
