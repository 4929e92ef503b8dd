import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { RUN_FILES } from '../coordinator/run-directory.js';
import { importPosition, importTorchvision } from '../engine/import-torchvision.js';
import { isTorchvisionModel, TORCHVISION_MODELS, type TorchvisionModel } from '../engine/models/torchvision.js';
import { fileSystemError, writeFileAtomic } from '../shared/atomic-file.js';
import { CheckpointStore } from '../shared/checkpoint-store.js';
import { describeValue, InputError } from '../shared/errors.js';
import { readWeightsFile } from '../shared/torch-weights.js';
import { defineCommand, parseCommand, printHelp } from './command.js';

export const IMPORT_COMMAND = defineCommand({
  name: 'import',
  summary: 'turns torchvision weights (safetensors or .pth) into a checkpoint a run starts from',
  usage: [`import <weights> --model ${TORCHVISION_MODELS.join('|')} --out DIR`],
  description:
    'Reads a torchvision state dict (safetensors, or a zip .pth from torch.save(model.state_dict()), read without\n' +
    "running any of its code) and writes DIR as a run directory holding one checkpoint of it, which a dense phase's\n" +
    '`init: DIR` starts from (a prune phase after it prunes the imported network).',
  arguments: [{ name: '<weights>', description: 'a .safetensors file or a zip .pth state dict' }],
  options: {
    model: {
      type: 'string',
      value: TORCHVISION_MODELS.join('|'),
      description: 'the torchvision architecture of the weights (required); the classes follow its classifier',
    },
    out: { type: 'string', value: 'DIR', description: 'a new or empty directory to write (required)' },
  },
  examples: ['import resnet50.safetensors --model resnet50 --out runs/resnet50-imported'],
});

/** What `import` writes beside the checkpoint: where it came from. */
export const IMPORT_FILE = 'import.json';

export interface ImportSummary {
  readonly model: TorchvisionModel;
  readonly source: string;
  readonly format: string;
  readonly sha256: string;
  readonly numClasses: number;
  readonly tensors: number;
  readonly checkpoint: string;
}

/** `autoprune import`. */
export async function importCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(IMPORT_COMMAND, args);
  if (parsed.help) return printHelp(IMPORT_COMMAND);
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new InputError('autoprune import', 'expects exactly one weights file', { found: `${positionals.length} arguments` });
  if (values.model === undefined || !isTorchvisionModel(values.model))
    throw new InputError('--model', 'names no network that import reads', { expected: TORCHVISION_MODELS.join(', '), found: describeValue(values.model) });
  if (values.out === undefined) throw new InputError('autoprune import', 'needs --out DIR, the run directory to write the checkpoint into');
  const summary = await importWeights(positionals[0]!, values.model, values.out);
  process.stdout.write(
    `imported ${summary.tensors} tensors of torchvision ${summary.model} (${summary.numClasses} classes) from ${summary.source}\n` +
      `checkpoint: ${summary.checkpoint}\nstart a run from it with a dense phase \`init: ${values.out}\`\n`,
  );
}

/** Reads `weightsPath`, maps it onto `model` and writes `outDir` as a run directory with that one checkpoint. */
export async function importWeights(weightsPath: string, model: TorchvisionModel, outDir: string): Promise<ImportSummary> {
  await refuseEarlierContents(outDir);
  const file = await readWeightsFile(weightsPath);
  const sha256 = createHash('sha256').update(file.bytes).digest('hex');
  const { parameters, numClasses } = importTorchvision(model, file.tensors, weightsPath);
  const summary = { model, source: resolve(weightsPath), format: file.format, sha256, numClasses, tensors: parameters.size };
  const store = new CheckpointStore(join(outDir, RUN_FILES.checkpoints), 1);
  const checkpoint = await store.save({ position: importPosition(model, sha256), parameters, optimizers: new Map() }, { importedFrom: summary });
  await writeFileAtomic(join(outDir, IMPORT_FILE), `${JSON.stringify({ ...summary, checkpoint }, null, 2)}\n`);
  return { ...summary, checkpoint };
}

/** An import never overwrites: the directory must be new or empty. */
async function refuseEarlierContents(outDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(outDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fileSystemError(outDir, 'use it as the import directory', error);
  }
  if (entries.length > 0)
    throw new InputError(outDir, 'is not empty; refusing to overwrite it', {
      expected: 'a new or empty directory (--out)',
      found: entries.slice(0, 4).join(', '),
    });
}
