/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs';
import { AS_FLOAT, storedAsI32 } from './as-float.js';
import { bufferOf, type WebGpuInternals, webGpuInternals } from './backend-internals.js';
import { elementwiseGrid } from './elementwise.js';
import { inputTypes, packUniforms, type ShaderProgram, shaderSource } from './program.js';

/** What a dispatcher has done: dispatches recorded and the objects it had to create for them. */
export interface DispatchStatistics {
  dispatches: number;
  pipelines: number;
  uniformBuffers: number;
  bindGroups: number;
  bindGroupHits: number;
}

/**
 * Told of every dispatch and buffer copy the dispatcher records (engine/dispatch-counter.ts, which also
 * counts the package's own dispatches). `execute` false is a dry run: the dispatcher only tells, and
 * allocates no GPU buffer, compiles nothing and records nothing.
 */
export interface DispatchObserver {
  readonly execute: boolean;
  dispatched(program: string, outputs: readonly tf.TensorInfo[], inputs: readonly tf.TensorInfo[]): void;
  /** `from` undefined: a copy from the dispatcher's buffer of 1.0s. */
  copied(elements: number, from: tf.TensorInfo | undefined, to: tf.TensorInfo): void;
}

/** Bind groups kept per backend: enough for every distinct binding of a few training steps. */
const BIND_GROUP_CACHE_SIZE = 4096;
/** Uniform buffers kept: one per distinct (program, shape, attributes) in use. */
const UNIFORM_CACHE_SIZE = 1024;

interface CompiledProgram {
  readonly id: number;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

/**
 * Records autoprune's compute shaders into the webgpu backend's command stream. Unlike the package,
 * which writes a new uniform buffer and creates a new bind group for every dispatch, it keeps one
 * immutable uniform buffer per distinct uniform contents (they depend only on shapes and
 * attributes) and reuses a bind group whenever the same buffers meet the same pipeline again,
 * which the backend's buffer pool makes common from one training step to the next.
 */
export class KernelDispatcher {
  readonly statistics: DispatchStatistics = { dispatches: 0, pipelines: 0, uniformBuffers: 0, bindGroups: 0, bindGroupHits: 0 };
  readonly features: ReadonlySet<string>;
  /** Set while a DispatchCounter is attached. */
  observer: DispatchObserver | undefined;
  private readonly programs = new Map<string, CompiledProgram>();
  private readonly uniformBuffers = new Map<string, GPUBuffer>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  /** Programs whose WGSL the device rejected, with its messages (known a moment after compiling). */
  private readonly rejected = new Map<string, string>();
  private nextId = 1;

  constructor(private readonly backend: WebGpuInternals) {
    this.features = new Set(backend.device.features as unknown as Iterable<string>);
  }

  /** A float32 tensor whose GPU buffer the caller's dispatches fill completely. */
  allocate(shape: number[]): tf.TensorInfo {
    const info = this.backend.makeTensorInfo(shape, 'float32');
    if (this.observer?.execute !== false) this.backend.uploadToGPU(info.dataId);
    return info;
  }

  /** Releases a scratch tensor; its buffer returns to the pool once the commands using it are submitted. */
  release(info: tf.TensorInfo): void {
    this.backend.disposeData(info.dataId);
  }

  /**
   * Records one dispatch of `program` over `grid` workgroups. An input the program reads as f32 whose
   * buffer holds i32 (a bool or int32 tensor cast to float32: as-float.ts) is converted first.
   */
  dispatch(
    program: ShaderProgram,
    grid: readonly [number, number, number],
    outputs: readonly tf.TensorInfo[],
    inputs: readonly tf.TensorInfo[],
    uniforms: readonly number[],
  ): void {
    if (outputs.length !== program.outputs.length || inputs.length !== program.inputs.length) {
      throw new Error(
        `${program.name}: bound ${outputs.length} outputs and ${inputs.length} inputs, declared ${program.outputs.length} and ${program.inputs.length}`,
      );
    }
    const scratch: tf.TensorInfo[] = [];
    const types = inputTypes(program);
    const read = inputs.map((info, i) => (types[i] === 'f32' ? this.asFloat(info, scratch) : info));
    this.observer?.dispatched(program.name, outputs, read);
    if (this.observer?.execute === false) {
      for (const info of scratch) this.release(info);
      return;
    }
    const compiled = this.compile(program);
    const buffers = [...outputs, ...read].map((info) => bufferOf(this.backend, info));
    const uniformBuffer = program.uniforms.length > 0 ? this.uniformBuffer(packUniforms(program, uniforms)) : undefined;
    const group = this.bindGroup(compiled, uniformBuffer === undefined ? buffers : [...buffers, uniformBuffer]);

    const backend = this.backend;
    backend.ensureCommandEncoderReady();
    backend.computePassEncoder ??= backend.commandEncoder!.beginComputePass({});
    const pass = backend.computePassEncoder;
    pass.setPipeline(compiled.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    for (const info of [...outputs, ...read]) backend.commandQueueOwnedIds.add(info.dataId);
    backend.dispatchCountInPass += 1;
    this.statistics.dispatches += 1;
    // The package's submit policy: a batch of dispatches per submit, or each one alone while timing.
    if (backend.activeTimers != null || (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number) <= backend.dispatchCountInPass) {
      backend.endComputePassEncoder();
      backend.submitQueue();
    }
    for (const info of scratch) this.release(info);
  }

  /** `info` where its buffer holds float32; else a float32 copy (AsFloat, one more dispatch), added to `scratch`. */
  private asFloat(info: tf.TensorInfo, scratch: tf.TensorInfo[]): tf.TensorInfo {
    if (!storedAsI32(this.backend.tensorMap.get(info.dataId).dtype)) return info;
    const converted = this.allocate([...info.shape]);
    const size = info.shape.reduce((a, b) => a * b, 1);
    if (size > 0) this.dispatch(AS_FLOAT, elementwiseGrid(size), [converted], [info], [size]);
    scratch.push(converted);
    return converted;
  }

  /**
   * Records a copy of `elements` float32 values between tensors' buffers (offsets in elements), in
   * order with the dispatches around it. `from: 'ones'` copies from a buffer of 1.0s; a `from` whose
   * buffer holds i32 is converted to float32 first (as-float.ts).
   */
  copy(from: tf.TensorInfo | 'ones', fromOffset: number, to: tf.TensorInfo, toOffset: number, elements: number): void {
    if (elements === 0) return;
    const scratch: tf.TensorInfo[] = [];
    const read = from === 'ones' ? from : this.asFloat(from, scratch);
    this.observer?.copied(elements, read === 'ones' ? undefined : read, to);
    if (this.observer?.execute === false) {
      for (const info of scratch) this.release(info);
      return;
    }
    const source = read === 'ones' ? this.ones(elements) : bufferOf(this.backend, read);
    const target = bufferOf(this.backend, to);
    const backend = this.backend;
    backend.endComputePassEncoder();
    backend.ensureCommandEncoderReady();
    backend.commandEncoder!.copyBufferToBuffer(source, fromOffset * 4, target, toOffset * 4, elements * 4);
    if (read !== 'ones') backend.commandQueueOwnedIds.add(read.dataId);
    backend.commandQueueOwnedIds.add(to.dataId);
    for (const info of scratch) this.release(info);
  }

  private onesBuffer: GPUBuffer | undefined;

  /** A buffer of at least `elements` 1.0s, grown (never rewritten) as needed. */
  private ones(elements: number): GPUBuffer {
    if (this.onesBuffer === undefined || this.onesBuffer.size < elements * 4) {
      const size = Math.max(elements, 1024) * 4;
      const buffer = this.backend.device.createBuffer({ size, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
      new Float32Array(buffer.getMappedRange()).fill(1);
      buffer.unmap();
      this.onesBuffer = buffer;
    }
    return this.onesBuffer;
  }

  private compile(program: ShaderProgram): CompiledProgram {
    const code = shaderSource(program);
    const rejection = this.rejected.get(code);
    if (rejection !== undefined) throw new Error(`webgpu kernel ${program.name}: the device rejected its WGSL: ${rejection}`);
    const cached = this.programs.get(code);
    if (cached !== undefined) return cached;
    const device = this.backend.device;
    const module = device.createShaderModule({ label: program.name, code });
    // Compilation errors arrive asynchronously; until then the dispatches of a broken shader are
    // dropped by the device, after it every dispatch of it throws.
    void module.getCompilationInfo().then((info) => {
      const errors = info.messages.filter((message) => message.type === 'error');
      if (errors.length > 0) this.rejected.set(code, errors.map((error) => `${error.lineNum}:${error.linePos} ${error.message}`).join('; '));
    });
    const storage = (type: GPUBufferBindingType, offset: number) => (_: string, i: number) => ({
      binding: offset + i,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type },
    });
    const entries: GPUBindGroupLayoutEntry[] = [
      ...program.outputs.map(storage('storage', 0)),
      ...program.inputs.map(storage('read-only-storage', program.outputs.length)),
    ];
    if (program.uniforms.length > 0) entries.push({ binding: entries.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
    const layout = device.createBindGroupLayout({ label: program.name, entries });
    const pipeline = device.createComputePipeline({
      label: program.name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    const compiled = { id: this.nextId++, pipeline, layout };
    this.programs.set(code, compiled);
    this.statistics.pipelines += 1;
    return compiled;
  }

  private uniformBuffer(bytes: ArrayBuffer): GPUBuffer {
    const key = Buffer.from(bytes).toString('base64');
    const cached = touch(this.uniformBuffers, key);
    if (cached !== undefined) return cached;
    // Written once at creation and never again: a dispatch still waiting in the encoder keeps its values.
    const buffer = this.backend.device.createBuffer({ size: bytes.byteLength, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(bytes));
    buffer.unmap();
    insertBounded(this.uniformBuffers, key, buffer, UNIFORM_CACHE_SIZE);
    this.statistics.uniformBuffers += 1;
    return buffer;
  }

  private bindGroup(compiled: CompiledProgram, buffers: readonly GPUBuffer[]): GPUBindGroup {
    const key = `${compiled.id}:${buffers.map((buffer) => this.bufferId(buffer)).join(',')}`;
    const cached = touch(this.bindGroups, key);
    if (cached !== undefined) {
      this.statistics.bindGroupHits += 1;
      return cached;
    }
    const group = this.backend.device.createBindGroup({
      layout: compiled.layout,
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    insertBounded(this.bindGroups, key, group, BIND_GROUP_CACHE_SIZE);
    this.statistics.bindGroups += 1;
    return group;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) {
      id = this.nextId++;
      this.bufferIds.set(buffer, id);
    }
    return id;
  }
}

/** A cached value, moved to the recent end of the map's order (least recently used first). */
function touch<V>(cache: Map<string, V>, key: string): V | undefined {
  const value = cache.get(key);
  if (value !== undefined) {
    cache.delete(key);
    cache.set(key, value);
  }
  return value;
}

/**
 * Adds an entry and drops the least recently used beyond `limit`. Dropped GPU objects are left to
 * the garbage collector, not destroyed: a dispatch not yet submitted may still use them.
 */
function insertBounded<V>(cache: Map<string, V>, key: string, value: V, limit: number): void {
  cache.set(key, value);
  if (cache.size > limit) cache.delete(cache.keys().next().value!);
}

/** One dispatcher per backend instance (a new backend after re-initialisation gets a new one). */
const dispatchers = new WeakMap<object, KernelDispatcher>();

export function dispatcherFor(backend: unknown): KernelDispatcher {
  const key = backend as object;
  let dispatcher = dispatchers.get(key);
  if (dispatcher === undefined) {
    dispatcher = new KernelDispatcher(webGpuInternals(backend));
    dispatchers.set(key, dispatcher);
  }
  return dispatcher;
}
