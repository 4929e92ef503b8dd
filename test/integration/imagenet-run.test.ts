import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import type { RunReport } from '../../coordinator/report.js';
import { openCatalog } from '../../engine/data/imagenet/catalog.js';
import { auditSamples, readAuditLogs, samplesOutsideOwnShards } from '../../engine/sample-audit.js';
import { runCli } from '../helpers/cli.js';
import { wnid, writeGeneratedImageNet } from '../helpers/imagenet-generated.js';

/**
 * `autoprune run --workers 2` on ImageNet-layout data written for the test: LeNet-5 at 32x32 through
 * dense, prune and finetune, each worker reading and decoding its share. The workers' sample logs prove
 * that every planned sample was used once (the audit) and, on TFRecord shards, that each worker kept to
 * its own shards; report.json counts the bad samples a `skip` run left out.
 */

const phases = [
  { phase: 'dense', steps: 4, weights: { lr: 0.002 } },
  { phase: 'prune', steps: 6, weights: { lr: 0.001 }, aux: { lr: 0.2 } },
  { phase: 'finetune', steps: 2, weights: { lr: 0.001 } },
];
const batchSize = 8;

describe('autoprune run on ImageNet-layout data, two workers', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-imagenet-run-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  function writeConfig(name: string, data: Record<string, unknown>): string {
    const path = join(root, `${name}.yaml`);
    writeFileSync(
      path,
      toYaml({
        seed: 3,
        backend: 'cpu',
        model: { name: 'lenet5' },
        data: { dataset: 'imagenet', imageSize: 32, classes: 4, decodeThreads: 1, cacheDir: join(root, 'cache'), ...data },
        batchSize,
        phases,
        evaluation: { batchSize: 8 },
        logging: { every: 2 },
      }),
    );
    return path;
  }

  async function run(name: string, config: string) {
    const sampleLog = join(root, `${name}.samples.jsonl`);
    const result = await runCli(['run', config, '--workers', '2', '--out', join(root, 'runs', name)], {
      env: { AUTOPRUNE_LOG_LEVEL: 'warn', AUTOPRUNE_SAMPLE_LOG: sampleLog },
    });
    return { result, sampleLog };
  }

  it('trains on TFRecord shards, each worker reading only its own shards, every sample once', async () => {
    const dir = await writeGeneratedImageNet(join(root, 'shards'), { format: 'tfrecord', classes: 4, perClass: 12, valPerClass: 2, shards: 6 });
    const { result, sampleLog } = await run('shards', writeConfig('shards', { dir }));
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(readFileSync(join(root, 'runs', 'shards', 'report.json'), 'utf8')) as RunReport;
    assert.deepEqual(
      report.phases.map((p) => [p.name, p.steps]),
      [
        ['dense', 4],
        ['prune', 6],
        ['finetune', 2],
      ],
    );
    assert.ok(report.phases.every((p) => p.testAccuracy >= 0 && p.testAccuracy <= 1));
    assert.deepEqual(report.data, { badSamples: 0, skipped: [] });

    const entries = readAuditLogs([sampleLog]);
    assert.deepEqual(new Set(entries.map((e) => e.rank)), new Set([0, 1]));
    const { train } = await openCatalog(dir, { badSamples: 'fail' });
    assert.deepEqual(auditSamples(entries, { seed: 3, trainSamples: train.count, batchSize, phases, shards: train.shards }), {
      lost: 0,
      repeated: 0,
      wrongSteps: [],
    });
    assert.equal(samplesOutsideOwnShards(entries, train.shards), 0);
  });

  describe('image folders with an image that does not decode', () => {
    let dir: string;
    let victim: string;

    before(async () => {
      dir = await writeGeneratedImageNet(join(root, 'folders'), { format: 'folders', classes: 4, perClass: 10, valPerClass: 2, size: 40 });
      victim = join(dir, 'train', wnid(2), `${wnid(2)}_4.JPEG`);
      writeFileSync(victim, readFileSync(victim).subarray(0, 300));
    });

    it('leaves it out under data.badSamples: skip, counts it in report.json, and uses every other sample as planned', async () => {
      const { result, sampleLog } = await run('skip', writeConfig('skip', { dir, badSamples: 'skip', maxBadFraction: 0.05 }));
      assert.equal(result.status, 0, result.stderr);
      const report = JSON.parse(readFileSync(join(root, 'runs', 'skip', 'report.json'), 'utf8')) as RunReport;
      assert.equal(report.data?.badSamples, 1);
      assert.equal(report.data?.skipped[0]?.file, victim);
      assert.equal(report.data?.skipped[0]?.split, 'train');
      const audit = auditSamples(readAuditLogs([sampleLog]), { seed: 3, trainSamples: 40, batchSize, phases });
      assert.deepEqual(audit, { lost: 0, repeated: 0, wrongSteps: [] });
    });

    it('fails the run naming the file under data.badSamples: fail', async () => {
      const { result } = await run('fail', writeConfig('fail', { dir }));
      assert.notEqual(result.status, 0);
      assert.ok(result.stderr.includes(victim), result.stderr);
    });

    it('fails the run once more than data.maxBadFraction of a split is bad', async () => {
      const worse = join(root, 'worse');
      cpSync(dir, worse, { recursive: true });
      const second = join(worse, 'train', wnid(0), `${wnid(0)}_1.JPEG`);
      writeFileSync(second, readFileSync(second).subarray(0, 300));
      const { result } = await run('too-many', writeConfig('too-many', { dir: worse, badSamples: 'skip', maxBadFraction: 0.03 }));
      assert.notEqual(result.status, 0);
      assert.match(result.stderr, /2 of the 40 train samples are bad, more than data\.maxBadFraction \(0\.03\) allows/);
    });
  });
});
