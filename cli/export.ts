import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatExport, REPORT_FILE, type RunReport, readReport } from '../coordinator/report.js';
import { RUN_FILES, RunDirectory } from '../coordinator/run-directory.js';
import { type BackendName, backendOptions, initBackend } from '../engine/backend.js';
import { datasetShape } from '../engine/data/sources.js';
import { disposeNetwork } from '../engine/network.js';
import { createNetwork } from '../engine/setup.js';
import { assignParameters } from '../engine/state.js';
import { EXPORT_FORMATS, type ExportFormat, exportModels, thinAndDense } from '../engine/thin/exporter.js';
import { createDirectories, fileSystemError, writeFileAtomic } from '../shared/atomic-file.js';
import { BACKENDS } from '../shared/config.js';
import { describeValue, InputError } from '../shared/errors.js';
import { defineCommand, parseCommand, printHelp } from './command.js';

export const EXPORT_COMMAND = defineCommand({
  name: 'export',
  summary: "writes a run's model as ONNX, TensorFlow.js or safetensors; --thin removes closed channels physically",
  usage: [`export <run-dir> [--thin] --format ${EXPORT_FORMATS.join('|')} [--out DIR] [--backend NAME] [--timing-runs N]`],
  description:
    "Writes the run's newest checkpoint as a plain model: ONNX (model.onnx, opset 17), a TensorFlow.js LayersModel\n" +
    "(model.json + weights.bin) or a PyTorch state dict (model.safetensors, torchvision's names for ResNet-50,\n" +
    'MobileNetV2 and AlexNet). With --thin, closed channels and neurons go, and so does what they fed. Prints the thin\n' +
    "and dense models' parameters, FLOPs and time per image, and adds them to the run's report.json.",
  arguments: [{ name: '<run-dir>', description: 'the run directory (--out of train or run)' }],
  options: {
    thin: { type: 'boolean', description: 'remove closed channels and neurons physically (else: the dense shapes, closed units zeroed)' },
    format: { type: 'string', value: EXPORT_FORMATS.join('|'), description: `the file format: ${EXPORT_FORMATS.join(', ')} (required)` },
    out: { type: 'string', value: 'DIR', description: 'the directory to write into', defaultText: '<run-dir>/export-<thin|dense>-<format>' },
    backend: {
      type: 'string',
      value: 'NAME',
      description: `the TensorFlow.js backend the inference times are measured on: ${BACKENDS.join(', ')}`,
      defaultText: "the run config's",
    },
    'timing-runs': { type: 'string', value: 'N', description: 'timed single-image runs per model after two warm-up runs; 0 measures nothing', default: '5' },
  },
  examples: ['export runs/resnet50-pruned --thin --format onnx', 'export runs/quickstart --thin --format tfjs --out lenet5-tfjs'],
});

/** `autoprune export`: the run's newest checkpoint as a plain dense model in a deployment format. */
export async function exportCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(EXPORT_COMMAND, args);
  if (parsed.help) return printHelp(EXPORT_COMMAND);
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new InputError('autoprune export', 'expects exactly one run directory', { found: `${positionals.length} arguments` });
  const runDir = positionals[0]!;
  const format = parseFormat(values.format);
  const timingRuns = Number(values['timing-runs']);
  if (!Number.isInteger(timingRuns) || timingRuns < 0)
    throw new InputError('--timing-runs', 'must be a whole number of at least 0', { found: describeValue(values['timing-runs']) });
  if (values.backend !== undefined && !(BACKENDS as readonly string[]).includes(values.backend))
    throw new InputError('--backend', 'is not a backend', { expected: BACKENDS.join(', '), found: describeValue(values.backend) });
  if (!existsSync(join(runDir, RUN_FILES.config)))
    throw new InputError(runDir, 'is not a run directory', { expected: `a directory written by autoprune train or run (with ${RUN_FILES.config})` });

  const runDirectory = await RunDirectory.open(runDir);
  const stored = await runDirectory.checkpoints.latest();
  if (!stored) {
    throw new InputError(runDir, 'holds no checkpoint to export', {
      expected: `a valid checkpoint under ${join(runDir, RUN_FILES.checkpoints)} (a run writes one every checkpoint.every steps and at its end)`,
    });
  }
  const { config } = runDirectory;
  await initBackend(
    (values.backend ?? config.backend) as BackendName,
    (message) => process.stderr.write(`autoprune export: ${message}\n`),
    backendOptions(config, process.env),
  );
  const network = createNetwork(config, datasetShape(config.data));
  try {
    assignParameters(network.parameters, stored.checkpoint.parameters, stored.path);
    // The gates are in force from the first prune phase on.
    const gated = config.phases.slice(0, stored.checkpoint.position.phaseIndex + 1).some((phase) => phase.phase !== 'dense');
    const models = await thinAndDense(network, gated);
    const { files, summary } = await exportModels(models, { format, thin: values.thin ?? false, timingRuns, version: await packageVersion() });
    const outDir = values.out ?? join(runDir, `export-${summary.thin ? 'thin' : 'dense'}-${format}`);
    try {
      await createDirectories(outDir);
    } catch (error) {
      throw fileSystemError(outDir, 'create the export directory', error);
    }
    for (const [name, bytes] of files) await writeFileAtomic(join(outDir, name), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    if (existsSync(join(runDir, REPORT_FILE))) {
      const report: RunReport = { ...(await readReport(runDir)), export: summary };
      await writeFileAtomic(join(runDir, REPORT_FILE), `${JSON.stringify(report, null, 2)}\n`);
    }
    process.stdout.write(`${formatExport(summary)}\n\nwritten to ${outDir}\n`);
  } finally {
    disposeNetwork(network);
  }
}

function parseFormat(format: string | undefined): ExportFormat {
  if (format === undefined) throw new InputError('autoprune export', 'needs --format', { expected: EXPORT_FORMATS.join(', ') });
  if (!(EXPORT_FORMATS as readonly string[]).includes(format))
    throw new InputError('--format', 'is not an export format', { expected: EXPORT_FORMATS.join(', '), found: describeValue(format) });
  return format as ExportFormat;
}

/** autoprune's version from its package.json, recorded in the exported files as their producer. */
async function packageVersion(): Promise<string> {
  const text = await readFile(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}
