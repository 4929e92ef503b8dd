import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BackendName } from '../../engine/backend.js';
import { buildNetwork } from '../../engine/models/index.js';
import type { Network, NetworkOptions } from '../../engine/network.js';
import { SmallResNet } from './small-resnet.js';

/**
 * One AutoPrune iteration on a backend, in a process of its own (test/helpers/train-step.ts), and the
 * comparison of two such iterations: how the tests check an accelerated backend against cpu.
 */

interface StepNetSpec {
  readonly build: (options: NetworkOptions) => Network;
  readonly batch: number;
  /** Amplitude of the made-up weights. */
  readonly weightScale: number;
}

/** The nets an iteration is compared on: LeNet-5 as it is, and a small ResNet (test/helpers/small-resnet.ts). */
export const STEP_NETS = {
  lenet5: { build: (options) => buildNetwork('lenet5', options), batch: 8, weightScale: 0.1 },
  'small-resnet': { build: (options) => new SmallResNet(options), batch: 4, weightScale: 0.2 },
} as const satisfies Record<string, StepNetSpec>;

export type StepNet = keyof typeof STEP_NETS;

export interface TrainStepResult {
  readonly backend: string;
  /** The W step's loss and the M step's (cross-entropy plus R⁺/R⁻). */
  readonly losses: readonly [number, number];
  readonly before: Record<string, number[]>;
  readonly after: Record<string, number[]>;
}

const trainStepScript = fileURLToPath(new URL('./train-step.js', import.meta.url));

/** One AutoPrune iteration of `net` on `backend`, in a fresh node with `env` added to this one's. */
export async function trainStep(backend: BackendName, net: StepNet, env: NodeJS.ProcessEnv = {}): Promise<TrainStepResult> {
  const { stdout } = await promisify(execFile)(process.execPath, [trainStepScript, backend, net], {
    timeout: 300_000,
    maxBuffer: 1 << 30,
    env: { ...process.env, ...env },
  });
  // Dawn reports a WebGPU validation error (an op that then computed nothing) on stdout, before the result.
  const lines = stdout.trim().split('\n');
  assert.deepEqual(
    lines.slice(0, -1).filter((line) => /validation|error/i.test(line)),
    [],
    `the ${backend} device reported errors:\n${lines.slice(0, -1).join('\n')}`,
  );
  return JSON.parse(lines[lines.length - 1]!) as TrainStepResult;
}

/**
 * Asserts that `other` took the step `cpu` took: both started from the same parameters, their losses agree,
 * every parameter
 * trained on cpu, and each one's difference is within `tolerance` of cpu's step, give or take
 * the rounding of the values.
 */
export function assertSameStep(other: TrainStepResult, cpu: TrainStepResult, tolerance = 1e-2): void {
  assert.deepEqual(other.before, cpu.before, 'both started from the same parameters');
  other.losses.forEach((loss, i) => {
    assert.ok(
      Math.abs(loss - cpu.losses[i]!) <= 1e-4 * Math.abs(cpu.losses[i]!),
      `${['W', 'M'][i]} step's loss: ${loss} on ${other.backend}, ${cpu.losses[i]} on cpu`,
    );
  });
  for (const [name, after] of Object.entries(cpu.after)) {
    const before = cpu.before[name]!;
    const theirs = other.after[name]!;
    let step = 0;
    let scale = 0;
    let difference = 0;
    for (let i = 0; i < after.length; i++) {
      step = Math.max(step, Math.abs(after[i]! - before[i]!));
      scale = Math.max(scale, Math.abs(after[i]!));
      difference = Math.max(difference, Math.abs(theirs[i]! - after[i]!));
    }
    assert.ok(step > 0, `${name} did not train on cpu`);
    assert.ok(difference <= tolerance * step + 1e-6 * scale, `${name}: the ${other.backend} step differs from cpu's by ${difference} (cpu's step: ${step})`);
  }
}
