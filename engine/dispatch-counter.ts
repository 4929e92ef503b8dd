import * as tf from '@tensorflow/tfjs';
import { dispatcherFor } from './kernels/webgpu/dispatcher.js';

/**
 * Counts what the webgpu backend dispatches: compute passes per program and the bytes their bindings
 * (inputs and outputs) span, the package's kernels' and autoprune's own (engine/kernels/webgpu/). Counts need no GPU and no clock, so they are the same on lavapipe as on a
 * data-centre card: the figures a change to the kernels must move (docs/gpu-notes.md).
 *
 * It observes tfjs-backend-webgpu 4.22's WebGPUBackend: every program's dispatch goes through
 * `runWebGPUProgram`, which allocates the output's buffer, compiles the pipeline and calls `recordAndSubmit`.
 * Running, it counts in `recordAndSubmit`. With `execute: false` (a dry run) it takes `runWebGPUProgram`'s
 * place and only counts: no buffer, no pipeline, no dispatch, so a big net's step at full size is counted
 * on a software adapter in seconds and without its memory. Its outputs then hold nothing; they and its
 * inputs count as on the device where the backend decides whether small ops run on the CPU
 * (`shouldExecuteOnCPU`), as a run's would be, for as long as the counter is attached: run no real work on
 * a dry run's tensors. A dry run's values mean nothing; test/unit/dispatch-counter.test.ts checks that its
 * counts are those of running.
 *
 * autoprune's kernels record their dispatches themselves, not through `recordAndSubmit`: their dispatcher
 * (kernels/webgpu/dispatcher.ts) tells the counter of each dispatch and buffer copy, and in a dry run
 * allocates, compiles and records nothing.
 */

/** One step's (or any span's) dispatches. */
export interface DispatchTally {
  readonly dispatches: number;
  /** Buffer-to-buffer copies (autoprune's fused optimizer gathers and scatters its flat buffers so). */
  readonly copies: number;
  /** Bytes of every binding of every dispatch, inputs and outputs, and those each copy reads and writes (4 bytes an element). */
  readonly bytes: number;
  /** The part of `bytes` in bindings (and copies) of at least `activationElements` elements. */
  readonly activationBytes: number;
  /**
   * Dispatches by program, most first: the package's by class name (e.g. Conv2DMMProgram), autoprune's by
   * kernel name without its variant (e.g. AutoPruneGateGrad).
   */
  readonly byProgram: ReadonlyArray<readonly [string, number]>;
}

export interface DispatchCounterOptions {
  /** A binding this large or larger counts as activation-sized traffic. */
  readonly activationElements: number;
  /** false: count without recording the dispatch (a dry run). */
  readonly execute: boolean;
}

interface TensorShape {
  readonly shape: readonly number[];
}

interface TensorInfoLike extends TensorShape {
  readonly dataId: object;
  readonly dtype: string;
}

/** The part of tfjs-backend-webgpu's WebGPUBackend this relies on. */
interface ObservableBackend {
  runWebGPUProgram(program: ProgramLike, inputs: readonly TensorInfoLike[], outputDtype: string, uniforms?: unknown, output?: TensorInfoLike): TensorInfoLike;
  recordAndSubmit(program: ProgramLike, output: TensorShape, inputs: readonly TensorShape[], uniforms?: unknown): void;
  shouldExecuteOnCPU(inputs: readonly TensorInfoLike[], threshold?: number): boolean;
  makeTensorInfo(shape: readonly number[], dtype: string): TensorInfoLike;
}

interface ProgramLike {
  readonly outputShape: readonly number[];
}

/** Elements of a shape. */
function sizeOf(shape: readonly number[]): number {
  return shape.reduce((product, length) => product * length, 1);
}

export class DispatchCounter {
  private dispatches = 0;
  private copies = 0;
  private bytes = 0;
  private activationBytes = 0;
  private byProgram = new Map<string, number>();
  /** In a dry run, the tensors a program has written or read: a run would have them on the device. */
  private readonly onDevice = new WeakSet<object>();
  private readonly restore: Array<() => void> = [];

  private constructor(private readonly options: DispatchCounterOptions) {}

  /** Starts counting on the active backend, which must be webgpu; `detach` stops. */
  static attach(options: DispatchCounterOptions): DispatchCounter {
    if (tf.getBackend() !== 'webgpu') throw new Error(`dispatches are counted on the webgpu backend, not on ${tf.getBackend()}`);
    const backend = tf.backend() as unknown as ObservableBackend;
    for (const method of ['runWebGPUProgram', 'recordAndSubmit', 'shouldExecuteOnCPU', 'makeTensorInfo'] as const)
      if (typeof backend[method] !== 'function') throw new Error(`this tfjs-backend-webgpu has no ${method} to observe (written for 4.22)`);
    const counter = new DispatchCounter(options);
    const dispatcher = dispatcherFor(backend);
    dispatcher.observer = {
      execute: options.execute,
      dispatched: (program, outputs, inputs) => {
        counter.record(program.split('(')[0]!, [...inputs, ...outputs]);
        if (!options.execute) for (const tensor of [...inputs, ...outputs]) counter.onDevice.add(tensor.dataId);
      },
      copied: (elements, from, to) => {
        counter.copies += 1;
        counter.addBytes(elements);
        counter.addBytes(elements);
        if (!options.execute) for (const tensor of from ? [from, to] : [to]) counter.onDevice.add(tensor.dataId);
      },
    };
    counter.restore.push(() => {
      dispatcher.observer = undefined;
    });
    if (options.execute) {
      counter.replace(backend, 'recordAndSubmit', (original) => (program, output, inputs, uniforms) => {
        counter.record(program.constructor.name, [...inputs, output]);
        original.call(backend, program, output, inputs, uniforms);
      });
    } else {
      counter.replace(backend, 'runWebGPUProgram', (original) => (program, inputs, outputDtype, uniforms, output) => {
        const out = output ?? backend.makeTensorInfo(program.outputShape, outputDtype);
        // Empty outputs never reach a dispatch.
        if (sizeOf(out.shape) === 0) return original.call(backend, program, inputs, outputDtype, uniforms, out);
        counter.record(program.constructor.name, [...inputs, out]);
        // A run uploads a program's inputs (and drops their host copies) and writes its output on the device.
        for (const tensor of [...inputs, out]) counter.onDevice.add(tensor.dataId);
        return out;
      });
      counter.replace(
        backend,
        'shouldExecuteOnCPU',
        (original) => (inputs, threshold) => (inputs.some((input) => counter.onDevice.has(input.dataId)) ? false : original.call(backend, inputs, threshold)),
      );
    }
    return counter;
  }

  private replace<K extends 'runWebGPUProgram' | 'recordAndSubmit' | 'shouldExecuteOnCPU'>(
    backend: ObservableBackend,
    method: K,
    wrap: (original: ObservableBackend[K]) => ObservableBackend[K],
  ): void {
    const original = backend[method];
    backend[method] = wrap(original);
    this.restore.push(() => {
      backend[method] = original;
    });
  }

  private record(name: string, bindings: readonly TensorShape[]): void {
    this.dispatches += 1;
    this.byProgram.set(name, (this.byProgram.get(name) ?? 0) + 1);
    for (const binding of bindings) this.addBytes(sizeOf(binding.shape));
  }

  /** One binding's (or one side of a copy's) float32 elements. */
  private addBytes(elements: number): void {
    this.bytes += 4 * elements;
    if (elements >= this.options.activationElements) this.activationBytes += 4 * elements;
  }

  /** The counts since the last `take` (or `attach`), and a fresh start. */
  take(): DispatchTally {
    const tally: DispatchTally = {
      dispatches: this.dispatches,
      copies: this.copies,
      bytes: this.bytes,
      activationBytes: this.activationBytes,
      byProgram: [...this.byProgram].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)),
    };
    this.dispatches = 0;
    this.copies = 0;
    this.bytes = 0;
    this.activationBytes = 0;
    this.byProgram = new Map();
    return tally;
  }

  /** Restores the backend's own methods. */
  detach(): void {
    while (this.restore.length > 0) this.restore.pop()!();
  }
}
