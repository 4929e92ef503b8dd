import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { formatReport, readReport } from '../../coordinator/report.js';
import { RunDirectory } from '../../coordinator/run-directory.js';
import type { ModelName } from '../../engine/models/index.js';
import { disposeNetwork } from '../../engine/network.js';
import { captureCheckpoint } from '../../engine/state.js';
import { EXPORT_FORMATS, type ExportFormat, modelFiles, thinAndDense } from '../../engine/thin/exporter.js';
import { type ModelSize, modelSize } from '../../engine/thin/model-size.js';
import { ONNX_FILE } from '../../engine/thin/onnx.js';
import { SAFETENSORS_FILE } from '../../engine/thin/torch-state-dict.js';
import { configHash, validateConfig } from '../../shared/config.js';
import { CliProcess } from '../helpers/cli.js';
import { maskedLogits, randomImages, randomlyPrunedNetwork, relativeError } from '../helpers/pruned-network.js';
import { skipBecause } from '../helpers/skip.js';
import { torchvisionMissing } from '../helpers/torchvision.js';

/**
 * `exportNetwork` writes pruned networks (random weights and statistics, about a third of the gates
 * closed by the channel rule) as thin ONNX, TensorFlow.js and safetensors files, and third parties run
 * them: ONNX Runtime, plain @tensorflow/tfjs in a child process that loads no autoprune code, and
 * torchvision's own ResNet-50 and MobileNetV2 with the file's channel counts. Each must give the masked
 * network's logits within 1e-4.
 */

interface Case {
  readonly model: ModelName;
  readonly shape: readonly [number, number, number];
  /** torchvision.models' name for the architecture. */
  readonly torchvision?: string;
}

// 33 is odd at every stride-2 layer, where TensorFlow's 'same' padding pads like torchvision's symmetric one.
const CASES: readonly Case[] = [
  { model: 'lenet5', shape: [28, 28, 1] },
  { model: 'vgg-cifar', shape: [32, 32, 3] },
  { model: 'resnet50', shape: [33, 33, 3], torchvision: 'resnet50' },
  { model: 'mobilenetv2', shape: [33, 33, 3], torchvision: 'mobilenet_v2' },
];
/** Debian's, where python3-torchvision installs torch and torchvision. */
const PYTHON = '/usr/bin/python3';
const BATCH = 2;
const TOLERANCE = 1e-4;

interface Exported {
  readonly case: Case;
  readonly reference: Float32Array;
  /** The images as raw float32, NHWC and NCHW. */
  readonly nhwc: string;
  readonly nchw: string;
  readonly nchwShape: readonly number[];
  readonly dirs: Readonly<Record<ExportFormat, string>>;
  readonly sizes: { readonly thin: ModelSize; readonly dense: ModelSize };
}

describe('thin export', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-thin-export-'));
  const exported: Exported[] = [];

  before(async () => {
    for (const c of CASES) {
      const network = randomlyPrunedNetwork(c.model, { inputShape: c.shape, numClasses: 10, seed: 12 });
      const images = randomImages(BATCH, c.shape, 7);
      const nchw = tf.transpose(images, [0, 3, 1, 2]);
      try {
        const dir = join(root, c.model);
        mkdirSync(dir);
        writeFileSync(join(dir, 'images.nhwc.f32'), images.dataSync() as Float32Array);
        writeFileSync(join(dir, 'images.nchw.f32'), nchw.dataSync() as Float32Array);
        const dirs = {} as Record<ExportFormat, string>;
        const models = await thinAndDense(network, true);
        for (const format of EXPORT_FORMATS) {
          dirs[format] = join(dir, format);
          mkdirSync(dirs[format]);
          for (const [name, bytes] of await modelFiles(models.thin, { format, version: 'test' })) writeFileSync(join(dirs[format], name), bytes);
        }
        const sizes = { thin: modelSize(models.thin), dense: modelSize(models.dense) };
        exported.push({
          case: c,
          reference: maskedLogits(network, images),
          nhwc: join(dir, 'images.nhwc.f32'),
          nchw: join(dir, 'images.nchw.f32'),
          nchwShape: nchw.shape,
          dirs,
          sizes,
        });
      } finally {
        tf.dispose([images, nchw]);
        disposeNetwork(network);
      }
    }
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  it('removes channels: fewer parameters and FLOPs than the dense shapes, for every network', () => {
    for (const { case: c, sizes } of exported) {
      assert.ok(sizes.thin.params < 0.9 * sizes.dense.params, `${c.model}: ${sizes.thin.params} of ${sizes.dense.params} parameters`);
      assert.ok(sizes.thin.flops < 0.9 * sizes.dense.flops, `${c.model}: ${sizes.thin.flops} of ${sizes.dense.flops} MACs`);
    }
  });

  it('ONNX: ONNX Runtime gives the masked logits', async () => {
    for (const e of exported) {
      const session = await ort.InferenceSession.create(readFileSync(join(e.dirs.onnx, ONNX_FILE)));
      try {
        const input = new ort.Tensor('float32', floats(e.nchw), [...e.nchwShape]);
        const output = await session.run({ input });
        const error = relativeError(output.logits!.data as Float32Array, e.reference);
        assert.ok(error < TOLERANCE, `${e.case.model}: ONNX Runtime's logits differ by ${error}`);
      } finally {
        await session.release();
      }
    }
  });

  it('TensorFlow.js: plain @tensorflow/tfjs in a child process loads the LayersModel and gives the masked logits', async () => {
    const inputs = exported.map((e) => ({ dir: e.dirs.tfjs, input: e.nhwc, shape: [BATCH, ...e.case.shape] }));
    writeFileSync(join(root, 'tfjs-inputs.json'), JSON.stringify(inputs));
    const output = await runProgram(process.execPath, [resolve('test/fixtures/thin-export/layers-model-logits.mjs'), join(root, 'tfjs-inputs.json')]);
    const logits = JSON.parse(output) as number[][];
    exported.forEach((e, i) => {
      const error = relativeError(logits[i]!, e.reference);
      assert.ok(error < TOLERANCE, `${e.case.model}: tfjs logits differ by ${error}`);
    });
  });

  describe('safetensors', () => {
    before(async function () {
      const missing = await torchvisionMissing();
      if (missing) skipBecause(this, missing);
    });

    it("torchvision's ResNet-50 and MobileNetV2 with the thinned channel counts load the file and give the masked logits", async () => {
      for (const e of exported.filter((x) => x.case.torchvision)) {
        const args = [resolve('test/fixtures/thin-export/torchvision_logits.py'), e.case.torchvision!, join(e.dirs.safetensors, SAFETENSORS_FILE), e.nchw];
        const logits = JSON.parse(await runProgram(PYTHON, [...args, ...e.nchwShape.map(String)])) as number[];
        const error = relativeError(logits, e.reference);
        assert.ok(error < TOLERANCE, `${e.case.model}: torchvision's logits differ by ${error}`);
      }
    });
  });
});

describe('autoprune export', function () {
  this.timeout(300_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-export-cli-'));
  const config = validateConfig(
    {
      model: { name: 'lenet5', granularity: 'neuron' },
      data: { dataset: 'mnist' },
      batchSize: 8,
      phases: [{ phase: 'prune', steps: 1, weights: { lr: 0.01 }, aux: { lr: 0.1 } }],
    },
    'export test',
  );
  const runDir = join(root, 'run');
  let reference: Float32Array;
  const images = join(root, 'images.nchw.f32');

  /** A run directory as a pruning run leaves it: config, a checkpoint of a pruned LeNet-5, report.json. */
  before(async () => {
    const network = randomlyPrunedNetwork('lenet5', { inputShape: [28, 28, 1], numClasses: 10, seed: 21 });
    const batch = randomImages(BATCH, [28, 28, 1], 3);
    try {
      reference = maskedLogits(network, batch);
      writeFileSync(images, batch.dataSync() as Float32Array); // one channel: NHWC and NCHW agree
      const runDirectory = await RunDirectory.create(runDir, config);
      const position = { phase: 'prune', phaseIndex: 0, step: 1, epoch: 0, configHash: configHash(config), model: 'lenet5' };
      await runDirectory.saveCheckpoint(await captureCheckpoint(network.parameters, new Map(), position), {});
      await runDirectory.writeResults(network, true, 'cpu', [{ name: 'prune', steps: 1, seconds: 1, testAccuracy: 0.1 }]);
    } finally {
      batch.dispose();
      disposeNetwork(network);
    }
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  it("writes the thin ONNX model of the newest checkpoint, prints and records both models' figures", async () => {
    const result = await new CliProcess(['export', runDir, '--thin', '--format', 'onnx', '--backend', 'cpu', '--timing-runs', '1']).waitForExit();
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /export: thin onnx \(model\.onnx\)/);
    const session = await ort.InferenceSession.create(readFileSync(join(runDir, 'export-thin-onnx', ONNX_FILE)));
    try {
      const output = await session.run({ input: new ort.Tensor('float32', floats(images), [BATCH, 1, 28, 28]) });
      assert.ok(relativeError(output.logits!.data as Float32Array, reference) < TOLERANCE);
    } finally {
      await session.release();
    }
    const report = await readReport(runDir);
    assert.ok(report.export, 'report.json has the export');
    assert.ok(report.export.thinModel.params < report.export.denseModel.params);
    assert.ok(report.export.thinModel.msPerImage! > 0 && report.export.denseModel.msPerImage! > 0);
    assert.match(formatReport(report), /thin +\S+ +\S+ +[\d.]+ ms/);
  });

  it('refuses a run directory without a checkpoint and an unknown format, saying what is wrong', async () => {
    const empty = join(root, 'no-checkpoint');
    await RunDirectory.create(empty, config);
    const missing = await new CliProcess(['export', empty, '--thin', '--format', 'tfjs']).waitForExit();
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /holds no checkpoint to export/);
    const unknown = await new CliProcess(['export', runDir, '--thin', '--format', 'pickle']).waitForExit();
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /--format: is not an export format; expected onnx, tfjs, safetensors; found "pickle"/);
  });
});

function floats(path: string): Float32Array {
  const bytes = readFileSync(path);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/** Runs a program to its end (bounded) and resolves with its stdout; rejects with its stderr when it fails. */
function runProgram(program: string, args: readonly string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(program, args, { timeout: 300_000, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${program} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
      else resolvePromise(stdout);
    });
  });
}
