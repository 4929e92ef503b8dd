import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalWorkers } from '../coordinator/local-workers.js';
import { RunDirectory } from '../coordinator/run-directory.js';
import { serveCoordinator } from '../coordinator/serve.js';
import { validateConfig } from '../shared/config.js';
import { InProcessEventBus } from '../shared/events/in-process-bus.js';
import { createLogger } from '../shared/logging.js';

/**
 * npm run bench:scaling [-- --workers 1,2 --steps 60 --batch 64 --transport tcp]
 * Training throughput of LeNet-5 on real MNIST with 1, 2, ... workers on this machine (the embedded
 * launcher: coordinator here, workers as processes on loopback), and the scaling efficiency
 * images/s(N) / (N · images/s(1)). Each worker keeps the same share of the batch (`--batch` per
 * worker), so the work per worker is constant: the compute-bound case. The 1-worker figure, measured in
 * the same run, is the anchor.
 */

const { values } = parseArgs({
  options: {
    workers: { type: 'string' },
    steps: { type: 'string', default: '60' },
    batch: { type: 'string', default: '64' },
    transport: { type: 'string', default: 'tcp' },
    model: { type: 'string', default: 'lenet5' },
  },
});
const counts = (values.workers ?? [1, 2, 4, 8].filter((n) => n <= cpus().length).join(',')).split(',').map(Number);
const steps = Number(values.steps);
const perWorker = Number(values.batch);
const logger = createLogger({ name: 'bench-scaling', level: process.env.AUTOPRUNE_LOG_LEVEL ?? 'warn' });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');

/** Images per second over the steps after the first logging window (which includes warm-up). */
async function measure(workers: number): Promise<number> {
  const config = validateConfig(
    {
      seed: 1,
      backend: 'wasm',
      model: { name: values.model },
      data: { dataset: 'mnist', testSubset: 1000 },
      batchSize: perWorker * workers,
      phases: [{ phase: 'dense', steps, weights: { lr: 1e-3 } }],
      evaluation: { every: 0, batchSize: 1000 },
      logging: { every: Math.max(1, Math.floor(steps / 6)) },
      distributed: { collective: { transport: values.transport } },
    },
    'bench config',
  );
  const runId = `bench-scaling-${workers}-${stamp}`;
  const bus = new InProcessEventBus();
  const subscription = await bus.subscribe(runId);
  const joinToken = randomBytes(24).toString('hex');
  const serving = await serveCoordinator({
    config,
    runId,
    joinToken,
    workers,
    runDirectory: await RunDirectory.create(join('runs', runId), config, logger),
    events: bus.publisher(runId),
    logger,
    listen: '127.0.0.1:0',
    tls: undefined,
    maxMessageBytes: 64 << 20,
  });
  // A measurement with a worker lost is no measurement: no replacements, the run fails.
  const local = new LocalWorkers({
    count: workers,
    coordinator: `127.0.0.1:${serving.port}`,
    joinToken,
    maxRestarts: 0,
    env: { AUTOPRUNE_LOG_LEVEL: 'warn' },
    logger,
    runOver: () => serving.coordinator.lifecycle.finished,
    onLost: (id, how) => serving.coordinator.workerLost(id, how, 0),
    onGiveUp: (reason) => serving.coordinator.fail(reason),
  });
  const windows: number[] = [];
  try {
    for await (const event of subscription) {
      if (event.event === 'step') windows.push(event.data.imagesPerSecond);
      if (event.event === 'run.finished') break;
      if (event.event === 'run.failed') throw new Error(event.data.reason);
    }
  } finally {
    await local.stop();
    await serving.close();
  }
  const measured = windows.slice(1);
  return measured.reduce((a, b) => a + b, 0) / measured.length;
}

console.log(`LeNet-5 training throughput, ${perWorker} images per worker per step, ${steps} steps, transport ${values.transport}, ${cpus().length} cores`);
const results: Array<{ workers: number; imagesPerSecond: number }> = [];
for (const workers of counts) {
  const imagesPerSecond = await measure(workers);
  results.push({ workers, imagesPerSecond });
  console.log(`  ${workers} worker(s): ${imagesPerSecond.toFixed(0)} images/s`);
}
const base = results.find((r) => r.workers === 1)?.imagesPerSecond;
console.log('\n| workers | images/s | speed-up | scaling efficiency |\n| --- | --- | --- | --- |');
for (const { workers, imagesPerSecond } of results) {
  const speedUp = base ? imagesPerSecond / base : NaN;
  console.log(`| ${workers} | ${imagesPerSecond.toFixed(0)} | ${speedUp.toFixed(2)}x | ${((100 * speedUp) / workers).toFixed(1)}% |`);
}
process.exit(0);
