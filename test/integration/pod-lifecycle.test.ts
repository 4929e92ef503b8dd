import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { newestCheckpoint } from '../helpers/checkpoints.js';
import { type CliProcess, runCli, startCli } from '../helpers/cli.js';
import { pythonVenv } from '../helpers/python-venv.js';
import { skipBecause } from '../helpers/skip.js';

/**
 * Pods that restart into the same run, with real processes on loopback: SIGTERM writes a final checkpoint
 * and exits 143, `--resume-or-start` (the same command line on every start) finishes the run with the
 * bytes of an uninterrupted one, workers wait for a restarted coordinator and rejoin it, and the
 * Prometheus endpoints of a 2-worker run are scraped over HTTP and parsed with prometheus_client.
 */

// Checkpoints only at phase ends: a checkpoint inside the prune phase can only be the final one a SIGTERM wrote.
const CONFIG = smallMnistRun(7, 40, { checkpoint: { every: 0, keep: 3 } });

/** Parses Prometheus exposition text with the reference parser, into families with their samples. */
const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
print(json.dumps([{"name": f.name, "type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
                  for f in text_string_to_metric_families(sys.stdin.read())]))
`;

import { smallMnistRun } from '../helpers/small-mnist-run.js';

interface Family {
  readonly name: string;
  readonly type: string;
  readonly samples: ReadonlyArray<readonly [string, Readonly<Record<string, string>>, number]>;
}

function parseExposition(python: string, text: string): Promise<Family[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(python, ['-c', PARSE], { maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      error ? reject(new Error(`prometheus_client could not parse the exposition: ${stderr}`)) : resolve(JSON.parse(stdout) as Family[]),
    );
    child.stdin!.end(text);
  });
}

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return response.text();
}

/** The port a process announced in its log line `event`. */
async function announcedPort(process: CliProcess, event: string): Promise<number> {
  return (await process.waitForLogLine(event)).port as number;
}

/** report.json without the wall-clock seconds of its phases, which no two runs share. */
function reportWithoutTimes(runDir: string): unknown {
  const report = JSON.parse(readFileSync(join(runDir, 'report.json'), 'utf8')) as { phases: Array<Record<string, unknown>> };
  return { ...report, phases: report.phases.map(({ seconds: _seconds, ...phase }) => phase) };
}

describe('pods that restart into the same run', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-pods-'));
  const config = join(root, 'run.yaml');
  writeFileSync(config, toYaml(CONFIG));
  const token = { AUTOPRUNE_JOIN_TOKEN: 'pod-lifecycle-test-token-0123456789' };

  it('train: SIGTERM mid-run leaves a final checkpoint and exits 143; --resume-or-start finishes with the bytes of an uninterrupted run', async () => {
    const reference = await runCli(['train', config, '--out', join(root, 'train-reference')]);
    assert.equal(reference.status, 0, reference.stderr);

    const runDir = join(root, 'train-interrupted');
    const first = startCli(['train', config, '--out', runDir, '--resume-or-start']);
    await first.waitForLogLine('step', (line) => line.phase === 'prune' && (line.step as number) >= 15);
    first.kill('SIGTERM');
    const stopped = await first.waitForExit();
    assert.equal(stopped.status, 143, stopped.stderr);
    assert.match(stopped.stderr, /interrupted \(SIGTERM received\).*resume it with --resume or --resume-or-start/);
    const final = await newestCheckpoint(runDir);
    assert.equal(final.checkpoint.position.phase, 'prune', 'the final checkpoint is the one the SIGTERM wrote, inside the prune phase');
    assert.ok(final.checkpoint.position.step >= 15 && final.checkpoint.position.step < 40, `final checkpoint at ${final.checkpoint.position.step}`);

    const resumed = await runCli(['train', config, '--out', runDir, '--resume-or-start']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.deepEqual(
      resumed.log.filter((line) => line.event === 'run.resumed').map((line) => line.step),
      [final.checkpoint.position.step],
    );
    assert.ok(readFileSync(join(runDir, 'pruned.safetensors')).equals(readFileSync(join(root, 'train-reference', 'pruned.safetensors'))), 'pruned.safetensors');
    assert.deepEqual(reportWithoutTimes(runDir), reportWithoutTimes(join(root, 'train-reference')));

    const again = await runCli(['train', config, '--out', runDir, '--resume-or-start']);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /already completed; nothing to do/);
    const other = await runCli(['train', config, '--out', runDir, '--resume-or-start', '--set', 'seed=8']);
    assert.equal(other.status, 2);
    assert.match(other.stderr, /holds a run of another config.*expected config hash [0-9a-f]{64} \(the config given\); found config hash [0-9a-f]{64}/);
  });

  it('a coordinator pod restarted on SIGTERM: its workers wait, rejoin, and the run ends with the bytes of an uninterrupted one; both roles serve metrics', async function () {
    const venv = await pythonVenv(['prometheus-client']);
    if ('missing' in venv) skipBecause(this, `the Prometheus exposition is parsed with prometheus_client: ${venv.missing}`);
    const reference = await runCli(['run', config, '--workers', '2', '--out', join(root, 'run-reference')]);
    assert.equal(reference.status, 0, reference.stderr);

    const runDir = join(root, 'restarted');
    const coordinatorArgs = (port: number) =>
      ['coordinator', config, '--resume-or-start', '--out', runDir, '--workers', '2', '--listen', `127.0.0.1:${port}`, '--metrics-port', '0'] as const;
    const first = startCli(coordinatorArgs(0), { env: token });
    const port = await announcedPort(first, 'coordinator.listening');
    const metricsPort = await announcedPort(first, 'metrics.listening');
    const workers = ['w0', 'w1'].map((id) =>
      startCli(['worker', '--coordinator', `127.0.0.1:${port}`, '--id', id, '--connect-timeout', '5m', '--metrics-port', '0'], { env: token }),
    );
    try {
      const workerPorts = await Promise.all(workers.map((w) => announcedPort(w, 'metrics.listening')));
      // Scrape until the run is well into pruning; the series carry the run id (and on workers the rank).
      let families: Family[] = [];
      const prune = () => families.find((f) => f.name === 'autoprune_run_step')?.samples.find(([, labels]) => labels.phase === 'prune')?.[2] ?? 0;
      for (let scrapes = 0; prune() < 10; scrapes++) {
        assert.ok(scrapes < 600, 'the run reached prune step 10 within 600 scrapes');
        await new Promise((resolve) => setTimeout(resolve, 200));
        families = await parseExposition(venv.python, await scrape(metricsPort));
      }
      const runId = 'restarted';
      const byName = (list: Family[], name: string) => list.find((f) => f.name === name);
      for (const [name, type] of [
        ['autoprune_run_generation', 'gauge'],
        ['autoprune_run_step_seconds', 'gauge'],
        ['autoprune_run_images_per_second', 'gauge'],
        ['autoprune_run_input_wait_seconds', 'gauge'],
        ['autoprune_run_kept_fraction', 'gauge'],
        ['autoprune_run_test_accuracy', 'gauge'],
        ['autoprune_run_failures_detected', 'counter'],
        ['autoprune_run_recovery_seconds', 'histogram'],
      ] as const) {
        const family = byName(families, name);
        assert.equal(family?.type, type, `${name} is a ${type}`);
        for (const [, labels] of family!.samples) assert.equal(labels.run_id, runId, `${name} carries the run id`);
      }
      assert.equal(byName(families, 'autoprune_run_generation')!.samples[0]![2], 1);
      assert.equal(byName(families, 'autoprune_run_workers')!.samples[0]![2], 2);
      assert.equal(byName(families, 'autoprune_run_test_accuracy')!.samples.find(([, l]) => l.phase === 'dense')?.[1].run_id, runId);

      for (const [index, workerPort] of workerPorts.entries()) {
        const worker = await parseExposition(venv.python, await scrape(workerPort));
        for (const [name, type] of [
          ['autoprune_worker_step_seconds', 'histogram'],
          ['autoprune_worker_images_per_second', 'gauge'],
          ['autoprune_worker_allreduce_seconds', 'histogram'],
          ['autoprune_worker_allreduce_bus_bandwidth_bytes_per_second', 'gauge'],
          ['autoprune_worker_input_wait_seconds', 'counter'],
          ['autoprune_worker_kept_fraction', 'gauge'],
          ['autoprune_worker_generation', 'gauge'],
        ] as const) {
          const family = byName(worker, name);
          assert.equal(family?.type, type, `worker ${index}: ${name} is a ${type}`);
          for (const [, labels] of family!.samples) {
            assert.equal(labels.run_id, runId);
            assert.equal(labels.worker_id, `w${index}`);
            assert.match(labels.rank ?? '', /^[01]$/);
          }
        }
        const kept = byName(worker, 'autoprune_worker_kept_fraction')!
          .samples.map(([, l]) => l.group)
          .sort();
        assert.deepEqual(kept, ['all', 'fc'], 'LeNet-300-100 has one layer group, fc');
        const allReduces = byName(worker, 'autoprune_worker_allreduce_seconds')!.samples.find(([name]) => name.endsWith('_count'))![2];
        assert.ok(allReduces > 0, 'the worker all-reduced');
      }
      // The log lines carry where the process stands.
      const line = workers[0]!.logLines('worker.rendezvous')[0]!;
      assert.deepEqual([line.runId, line.generation, line.rank], [runId, 1, line.rank]);

      first.kill('SIGTERM');
      const stopped = await first.waitForExit();
      assert.equal(stopped.status, 143, stopped.stderr);
      const final = await newestCheckpoint(runDir);
      assert.equal(final.checkpoint.position.phase, 'prune');
      assert.ok(final.checkpoint.position.step >= 10, `the final checkpoint is at prune step ${final.checkpoint.position.step}`);
      for (const worker of workers) await worker.waitForLogLine('generation.left', (l) => l.interrupt === 'CoordinatorStopping');

      // The pod comes back with the same command line, on the same address.
      const second = await runCli(coordinatorArgs(port), { env: token });
      assert.equal(second.status, 0, second.stderr);
      for (const worker of workers) {
        const exit = await worker.waitForExit();
        assert.equal(exit.status, 0, `${worker.command}: ${worker.tail()}`);
      }
      assert.ok(readFileSync(join(runDir, 'pruned.safetensors')).equals(readFileSync(join(root, 'run-reference', 'pruned.safetensors'))), 'pruned.safetensors');
      assert.deepEqual(reportWithoutTimes(runDir), reportWithoutTimes(join(root, 'run-reference')));
    } finally {
      first.kill();
      for (const worker of workers) worker.kill();
    }
  });
});
