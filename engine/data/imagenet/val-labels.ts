/**
 * The two label files a flat `val/ILSVRC2012_val_XXXXXXXX.JPEG` folder comes with: Kaggle's
 * LOC_val_solution.csv (label = the first token of PredictionString, a WordNet ID) and the devkit's
 * ILSVRC2012_validation_ground_truth.txt (line k: the ILSVRC2012_ID of image k, in meta.mat order).
 */
import { InputError } from '../../../shared/errors.js';
import { ILSVRC2012_DEVKIT_WNIDS } from './devkit-synsets.js';

export const KAGGLE_SOLUTION_FILE = 'LOC_val_solution.csv';
export const DEVKIT_GROUND_TRUTH_FILE = 'ILSVRC2012_validation_ground_truth.txt';

/** An image's WordNet ID, or why its entry gives none. */
export type ValEntry = { readonly wnid: string } | { readonly problem: string };

/** Looks up an image's entry by its file name (e.g. ILSVRC2012_val_00000001.JPEG); a missing entry says so. */
export type ValLabels = (fileName: string) => ValEntry;

const WNID = /^n\d{8}$/;
const VAL_NUMBER = /^ILSVRC2012_val_(\d{8})\.[A-Za-z]+$/;

/** The file name without its extension, Kaggle's ImageId. */
function imageId(fileName: string): string {
  const dot = fileName.lastIndexOf('.');
  return dot > 0 ? fileName.slice(0, dot) : fileName;
}

export function parseKaggleSolution(text: string, path: string): ValLabels {
  const lines = text.split(/\r?\n/);
  const header = lines[0]?.trim();
  if (header !== 'ImageId,PredictionString') {
    throw new InputError(path, 'not a Kaggle LOC_val_solution.csv', {
      expected: 'a first line "ImageId,PredictionString"',
      found: JSON.stringify(header ?? ''),
    });
  }
  const entries = new Map<string, ValEntry>();
  for (let n = 1; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === '') continue;
    const comma = line.indexOf(',');
    const id = comma < 0 ? line : line.slice(0, comma);
    const first =
      comma < 0
        ? undefined
        : line
            .slice(comma + 1)
            .trim()
            .split(/\s+/)[0];
    entries.set(
      id,
      first !== undefined && WNID.test(first) ? { wnid: first } : { problem: `${path}, line ${n + 1}: PredictionString does not start with a WordNet ID` },
    );
  }
  return (fileName) => entries.get(imageId(fileName)) ?? { problem: `no entry for ${imageId(fileName)} in ${path}` };
}

export function parseDevkitGroundTruth(text: string, path: string): ValLabels {
  const ids = text.split(/\r?\n/);
  while (ids.length > 0 && ids[ids.length - 1]!.trim() === '') ids.pop();
  return (fileName) => {
    const match = VAL_NUMBER.exec(fileName);
    if (!match) return { problem: `the name does not carry a validation image number (ILSVRC2012_val_NNNNNNNN), which ${path} is indexed by` };
    const line = Number(match[1]);
    if (line < 1 || line > ids.length) return { problem: `no entry for image ${line} in ${path} (it has ${ids.length} lines)` };
    const text = ids[line - 1]!.trim();
    const id = Number(text);
    if (!/^\d+$/.test(text) || id < 1 || id > ILSVRC2012_DEVKIT_WNIDS.length) {
      return { problem: `${path}, line ${line}: ${JSON.stringify(text)} is not an ILSVRC2012_ID from 1 to ${ILSVRC2012_DEVKIT_WNIDS.length}` };
    }
    return { wnid: ILSVRC2012_DEVKIT_WNIDS[id - 1]! };
  };
}
