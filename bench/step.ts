import { type BackendName, initBackend } from '../engine/backend.js';
import { runAnchor } from './anchors.js';
import { StepWorkload } from './workloads.js';

/**
 * npm run bench:step — one training step per backend for LeNet-300-100 (batch 128) and LeNet-5 (batch 64),
 * beside PyTorch CPU on the same machine in the same run (../shared/anchors/torch_cpu_ref.py).
 * Two figures per net: a plain dense SGD step (what the PyTorch anchor times) and a full AutoPrune
 * iteration (W step and M step, gates and both Adam updates).
 */

const NETS = [
  { model: 'lenet300', batch: 128 },
  { model: 'lenet5', batch: 64 },
] as const;

/** `node dist/bench/step.js [backend ...]`: the backends to time (default all that start here, webgpu excepted: bench:gpu). */
const BACKENDS: BackendName[] = process.argv.length > 2 ? (process.argv.slice(2) as BackendName[]) : ['tensorflow', 'wasm', 'cpu'];

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
  for (const { model, batch } of NETS) {
    const workload = new StepWorkload({ model, batch });
    const slow = backend === 'cpu' && model === 'lenet5';
    const budget = slow ? 1 : 3000;
    const maxSteps = slow ? 3 : 50;
    // The CPU backends compute as the ops are issued: no wait for a device is needed.
    const dense = timeSteps(() => workload.dense(), budget, maxSteps);
    const autoprune = timeSteps(() => workload.iteration(), budget, maxSteps);
    results.set(model, { dense, autoprune });
    workload.dispose();
  }
  return results;
}

async function main(): Promise<void> {
  const rows: string[][] = [];
  const torch = runAnchor('torch_cpu_ref.py', ['2'], 600_000);
  const torchMs = new Map<string, number>();
  if (torch.ok) {
    for (const match of torch.stdout.matchAll(/(lenet300|lenet5) batch\d+ step ([\d.]+) ms/g)) torchMs.set(match[1]!, Number(match[2]));
  } else {
    console.log(`PyTorch CPU anchor not run: ${torch.reason}`);
  }
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
  console.log('\nLeNet-300-100 at batch 128, LeNet-5 at batch 64; medians. An AutoPrune iteration is one W step and one M step (Adam, gates, L1/L2, R+/R-).');
}

await main();
