import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext } from 'playwright-core';
import { stringify as toYaml } from 'yaml';
import type { RunStatus } from '../../cli/status.js';
import { isGzipFile, type ScannedRecord, scanRecords } from '../../engine/data/imagenet/tfrecord.js';
import { ensureChromium, launchChromium } from '../helpers/chromium.js';
import { runCli, startCli } from '../helpers/cli.js';
import { pythonVenv, TENSORBOARD_REQUIREMENTS } from '../helpers/python-venv.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * Watching a run, end to end: a 2-worker `autoprune run` stopped mid-way and killed, then resumed; what
 * `status` says of it while it runs and once it finished; its TensorBoard files read by TensorBoard's own
 * EventAccumulator; its HTML report (while running and finished) loaded in headless Chromium.
 */

const CONFIG = smallMnistRun(3, 60, {
  data: { dataset: 'mnist', trainSubset: 900, testSubset: 200 },
  evaluation: { every: 10, batchSize: 200 },
  checkpoint: { every: 10, keep: 2 },
});
const TOTAL_STEPS = 70;

/** TensorBoard's reader over a folder or one file: every scalar and histogram tag with its steps, as JSON. */
const READ_EVENTS = `
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
accumulator = EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'histograms': 0})
accumulator.Reload()
tags = accumulator.Tags()
print(json.dumps({
  'scalars': {t: [e.step for e in accumulator.Scalars(t)] for t in tags['scalars']},
  'histograms': {t: [e.step for e in accumulator.Histograms(t)] for t in tags['histograms']},
}))
`;

import { smallMnistRun } from '../helpers/small-mnist-run.js';

type TensorBoardTags = { scalars: Record<string, number[]>; histograms: Record<string, number[]> };

function readWithTensorBoard(python: string, path: string): Promise<TensorBoardTags> {
  return new Promise((resolve, reject) => {
    execFile(python, ['-c', READ_EVENTS, path], { timeout: 120_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      error ? reject(new Error(`EventAccumulator failed on ${path}: ${stderr || error.message}`)) : resolve(JSON.parse(stdout) as TensorBoardTags),
    );
  });
}

async function statusOf(runDir: string): Promise<RunStatus> {
  const result = await runCli(['status', runDir, '--json']);
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout) as RunStatus;
}

/** Loads a report page: the console errors it caused, and for each chart's canvas whether anything was drawn on it. */
async function loadReport(browser: BrowserContext, file: string, screenshot?: string): Promise<{ errors: string[]; drawn: boolean[] }> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(String(error)));
  // Nothing may be fetched: the page is self-contained.
  await page.route(/^(?!file:)/, (route) => {
    errors.push(`the page requested ${route.request().url()}`);
    return route.abort();
  });
  await page.goto(`file://${file}`);
  const drawn = await page.$$eval('#charts canvas', (canvases) =>
    canvases.map((canvas) => {
      const { data } = (canvas as HTMLCanvasElement)
        .getContext('2d')!
        .getImageData(0, 0, (canvas as HTMLCanvasElement).width, (canvas as HTMLCanvasElement).height);
      for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
      return false;
    }),
  );
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  await page.close();
  return { errors, drawn };
}

describe('watching a run: status, TensorBoard files and the HTML report', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-observe-'));
  const config = join(root, 'run.yaml');
  writeFileSync(config, toYaml(CONFIG));
  const runDir = join(root, 'run');
  let whileRunning: RunStatus;
  let killedFiles: string[];

  let killed: Promise<unknown>;

  before(async () => {
    // Stopped (SIGSTOP) right after its checkpoint at prune step 10, so that it is caught mid-run, then killed.
    const first = startCli(['run', config, '--workers', '2', '--out', runDir]);
    try {
      await first.waitForLogLine('checkpoint.saved', (line) => line.phase === 'prune' && line.step === 10);
      first.kill('SIGSTOP');
      whileRunning = await statusOf(runDir);
      const html = await runCli(['report', runDir, '--html', '--out', join(root, 'running.html')]);
      assert.equal(html.status, 0, html.stderr);
    } finally {
      first.kill();
    }
    // Its workers keep its output open until they give up on it; the resumed run need not wait for that.
    killed = first.waitForExit();
    killedFiles = readdirSync(join(runDir, 'tensorboard'));
    const resumed = await runCli(['run', '--resume', runDir, '--workers', '2']);
    assert.equal(resumed.status, 0, resumed.stderr);
  });
  after(async () => {
    await killed;
  });

  it('status: a running run, then the finished one', async () => {
    assert.equal(whileRunning.state, 'running');
    assert.equal(whileRunning.workers, 2);
    assert.equal(whileRunning.generation, 1);
    assert.ok(whileRunning.step >= 20 && whileRunning.step < TOTAL_STEPS, `step ${whileRunning.step}`);
    assert.equal(whileRunning.steps, TOTAL_STEPS);
    assert.deepEqual([whileRunning.lastCheckpoint?.phaseIndex, whileRunning.lastCheckpoint?.step], [1, 10]);
    assert.ok(whileRunning.lastCheckpoint!.ageSeconds >= 0);
    assert.equal(whileRunning.failures, 0);

    const finished = await statusOf(runDir);
    assert.equal(finished.state, 'finished');
    assert.equal(finished.step, TOTAL_STEPS);
    assert.deepEqual(finished.phase, { name: 'prune', index: 1, step: 60, steps: 60 });
    assert.deepEqual([finished.lastEvaluation?.phase, finished.lastEvaluation?.step], ['prune', 60]);
    assert.deepEqual([finished.lastCheckpoint?.phaseIndex, finished.lastCheckpoint?.step], [1, 60]);
    assert.ok(finished.kept! > 0 && finished.kept! <= 1);
    const text = await runCli(['status', runDir]);
    assert.match(text.stdout, /^run +.*: finished$/m);
    assert.match(text.stdout, /^steps +70 of 70 in all \(100%\)$/m);
    assert.match(text.stdout, /^test accuracy +\d+\.\d\d% \(prune step 60\)$/m);
  });

  describe('TensorBoard', () => {
    let python: string;
    before(async function () {
      const venv = await pythonVenv(TENSORBOARD_REQUIREMENTS);
      if ('missing' in venv) skipBecause(this, venv.missing);
      python = venv.python;
    });

    it("TensorBoard's EventAccumulator lists the scalars and histograms at each step, the resumed run's file continuing without duplicates", async () => {
      const files = readdirSync(join(runDir, 'tensorboard'));
      assert.equal(killedFiles.length, 1);
      assert.equal(files.length, 2, 'a new file for the resumed process');
      const tags = await readWithTensorBoard(python, join(runDir, 'tensorboard'));
      const everyLog = Array.from({ length: TOTAL_STEPS / 5 }, (_, i) => 5 * (i + 1));
      const prune = everyLog.filter((s) => s > 10);
      const evaluations = [10, 20, 30, 40, 50, 60, 70];
      for (const tag of ['loss/W', 'accuracy/train', 'kept/total', 'learning_rate/W', 'throughput/images_per_second', 'time/all_reduce_seconds', 'workers'])
        assert.deepEqual(tags.scalars[tag], everyLog, tag);
      for (const tag of ['loss/M', 'learning_rate/M']) assert.deepEqual(tags.scalars[tag], prune, tag);
      for (const tag of ['accuracy/test', 'kept/layer/fc1', 'kept/layer/fc3', 'kept/group/fc', 'flops/kept'])
        assert.deepEqual(tags.scalars[tag], evaluations, tag);
      assert.deepEqual(Object.keys(tags.histograms).sort(), ['M/fc1', 'M/fc2', 'M/fc3']);
      assert.deepEqual(tags.histograms['M/fc1'], evaluations);
    });

    it('a reader stops cleanly at a truncated last record', async () => {
      const killed = join(runDir, 'tensorboard', killedFiles[0]!);
      const cut = join(root, 'truncated');
      mkdirSync(cut);
      const copy = join(cut, killedFiles[0]!);
      copyFileSync(killed, copy);
      // Cut into the last record, as a process killed while appending it leaves it.
      truncateSync(copy, statSync(copy).size - 7);
      const records: ScannedRecord[] = [];
      for await (const record of scanRecords(copy, await isGzipFile(copy))) records.push(record);
      assert.ok(records.slice(0, -1).every((r) => 'data' in r));
      const last = records.at(-1)!;
      assert.ok('final' in last && last.final, 'the truncated record ends the scan');
      const whole = await readWithTensorBoard(python, killed);
      const truncated = await readWithTensorBoard(python, copy);
      assert.ok(truncated.scalars['loss/W']!.length > 0);
      assert.deepEqual(truncated.scalars['loss/W'], whole.scalars['loss/W']!.slice(0, truncated.scalars['loss/W']!.length));
    });
  });

  describe('the HTML report in headless Chromium', () => {
    let browser: BrowserContext;
    before(async function () {
      const missing = await ensureChromium();
      if (missing) skipBecause(this, missing);
      browser = await launchChromium();
    });
    after(async () => browser?.close());

    it('draws every chart of a finished run without console errors or requests, and takes a screenshot', async () => {
      const page = join(root, 'report.html');
      const result = await runCli(['report', runDir, '--html', '--out', page]);
      assert.equal(result.status, 0, result.stderr);
      const screenshot = join(root, 'report.png');
      const { errors, drawn } = await loadReport(browser, page, screenshot);
      assert.deepEqual(errors, []);
      // Loss, accuracy, kept fraction; weights and MACs per layer (LeNet-300-100 has weight gates: no channel chart).
      assert.deepEqual(drawn, [true, true, true, true, true]);
      assert.ok(statSync(screenshot).size > 10_000);
    });

    it('draws the page of a run still going (no report.json yet) from its events so far', async () => {
      const { errors, drawn } = await loadReport(browser, join(root, 'running.html'));
      assert.deepEqual(errors, []);
      assert.ok(drawn.length >= 3, `${drawn.length} charts`);
      assert.ok(drawn.every(Boolean));
    });
  });
});
