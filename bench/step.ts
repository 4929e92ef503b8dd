import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type BackendName, initBackend } from '../engine/backend.js';
import type { ModelName } from '../engine/models/index.js';
import { python, runAnchor } from './anchors.js';
import { StepWorkload } from './workloads.js';

/**
 * npm run bench:step [-- --backend NAME ...] — one training step per backend (default: tensorflow, wasm and cpu,
 * each where it loads; webgpu has bench:gpu) for LeNet-300-100 (batch 128), LeNet-5 (batch 64), ResNet-50 and
 * MobileNetV2 (batch 8 of 64x64 images, 1000 classes), beside PyTorch CPU on the same machine in the same run
 * (../shared/anchors/torch_cpu_ref.py for the LeNets, bench/torch_imagenet_step.py with torchvision's networks
 * for the others). Two figures per net: a plain dense SGD step (what the PyTorch anchor times) and a full
 * AutoPrune iteration (W step and M step, gates and both Adam updates).
 */

const IMAGENET_BATCH = 8;
const IMAGENET_SIZE = 64;

const NETS: readonly { model: ModelName; batch: number; inputShape?: [number, number, number] }[] = [
  { model: 'lenet300', batch: 128 },
  { model: 'lenet5', batch: 64 },
  { model: 'resnet50', batch: IMAGENET_BATCH, inputShape: [IMAGENET_SIZE, IMAGENET_SIZE, 3] },
  { model: 'mobilenetv2', batch: IMAGENET_BATCH, inputShape: [IMAGENET_SIZE, IMAGENET_SIZE, 3] },
];

/**
 * Why a net is not measured on a backend: cpu takes minutes a step on the ImageNet nets, and ResNet-50's
 * parameters with the gates' and Adam's state overflow the wasm heap (the module aborts).
 */
function notMeasured(backend: string, model: ModelName): string | undefined {
  if (backend === 'cpu' && (model === 'resnet50' || model === 'mobilenetv2')) return 'minutes a step';
  if (backend === 'wasm' && model === 'resnet50') return 'exceeds the wasm heap';
  return undefined;
}

const ALL_BACKENDS: BackendName[] = ['tensorflow', 'wasm', 'cpu'];
const chosen = parseArgs({ options: { backend: { type: 'string', multiple: true } } }).values.backend;
const BACKENDS = (chosen ?? ALL_BACKENDS) as BackendName[];
const unknown = BACKENDS.filter((name) => !ALL_BACKENDS.includes(name));
if (unknown.length > 0) throw new Error(`unknown --backend ${unknown.join(', ')}; expected some of ${ALL_BACKENDS.join(', ')} (webgpu: npm run bench:gpu)`);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function timeSteps(step: () => void, budgetMs: number, maxSteps: number): number {
  step();
  step(); // warm-up: kernel compilation and first allocations
  const times: number[] = [];
  const start = performance.now();
  while (times.length < maxSteps && (times.length < 3 || performance.now() - start < budgetMs)) {
    const t = performance.now();
    step();
    times.push(performance.now() - t);
  }
  return median(times);
}

async function measure(backend: string): Promise<Map<string, { dense: number; autoprune: number }>> {
  const results = new Map<string, { dense: number; autoprune: number }>();
  for (const { model, batch, inputShape } of NETS) {
    const skipped = notMeasured(backend, model);
    if (skipped) {
      console.log(`${backend} ${model}: not measured (${skipped})`);
      continue;
    }
    const workload = new StepWorkload({ model, batch, ...(inputShape ? { inputShape } : {}) });
    // Seconds a step: the two warm-up steps and three timed ones.
    const slow = (backend === 'cpu' && model === 'lenet5') || (backend !== 'tensorflow' && inputShape !== undefined);
    const budget = slow ? 1 : 3000;
    const maxSteps = slow ? 3 : 50;
    // The CPU backends compute as the ops are issued: no wait for a device is needed.
    const dense = timeSteps(() => workload.dense(), budget, maxSteps);
    const autoprune = timeSteps(() => workload.iteration(), budget, maxSteps);
    results.set(model, { dense, autoprune });
    workload.dispose();
    console.log(`${backend} ${model}: dense ${dense.toFixed(1)} ms, AutoPrune iteration ${autoprune.toFixed(1)} ms`);
  }
  return results;
}

/** PyTorch CPU's dense step per net, from both anchors run now on this machine. */
function torchSteps(): Map<string, number> {
  const torchMs = new Map<string, number>();
  const torch = runAnchor('torch_cpu_ref.py', ['2'], 600_000);
  const imagenetScript = fileURLToPath(new URL('../../bench/torch_imagenet_step.py', import.meta.url));
  const torchImagenet = spawnSync(python(), [imagenetScript, '2', String(IMAGENET_BATCH), String(IMAGENET_SIZE)], { encoding: 'utf8', timeout: 1_200_000 });
  for (const [name, result, reason] of [
    ['torch_cpu_ref.py', torch.ok ? torch.stdout : undefined, torch.ok ? '' : torch.reason],
    ['torch_imagenet_step.py', torchImagenet.status === 0 ? torchImagenet.stdout : undefined, torchImagenet.stderr?.trim().split('\n').pop()],
  ] as const) {
    if (result === undefined) console.log(`PyTorch CPU anchor ${name} not run: ${reason}`);
    for (const match of (result ?? '').matchAll(/(\w+) batch\d+ step ([\d.]+) ms/g)) torchMs.set(match[1]!, Number(match[2]));
  }
  return torchMs;
}

async function main(): Promise<void> {
  const rows: string[][] = [];
  const torchMs = torchSteps();
  for (const backend of BACKENDS) {
    let active: string;
    try {
      active = await initBackend(backend, () => {});
    } catch (error) {
      console.log(`${backend}: not available (${(error as Error).message.split('\n')[0]})`);
      continue;
    }
    if (active !== backend) continue;
    for (const [model, r] of await measure(backend)) {
      const anchor = torchMs.get(model);
      rows.push([
        backend,
        model,
        r.dense.toFixed(1),
        r.autoprune.toFixed(1),
        (r.autoprune / r.dense).toFixed(2),
        anchor === undefined ? '-' : anchor.toFixed(1),
        anchor === undefined ? '-' : (r.dense / anchor).toFixed(2),
      ]);
    }
  }
  const header = ['backend', 'net', 'dense SGD step ms', 'AutoPrune iteration ms', 'iteration / dense', 'PyTorch CPU step ms', 'dense / PyTorch'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  console.log(['', line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
  console.log(
    `\nLeNet-300-100 at batch 128, LeNet-5 at batch 64, ResNet-50 and MobileNetV2 at batch ${IMAGENET_BATCH} of ${IMAGENET_SIZE}x${IMAGENET_SIZE}; medians. An AutoPrune iteration is one W step and one M step (Adam, gates, L1/L2, R+/R-).`,
  );
}

await main();
