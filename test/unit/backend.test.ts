import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { type BackendName, initBackend } from '../../engine/backend.js';
import { InputError } from '../../shared/errors.js';
import { skipBecause } from '../helpers/skip.js';
import { ensureTensorflowAddon, type TensorflowAddon } from '../helpers/tensorflow-addon.js';
import { assertSameStep, trainStep } from '../helpers/train-steps.js';

const AUTO_ORDER = ['tensorflow', 'webgpu', 'wasm', 'cpu'];
const backendModule = new URL('../../engine/backend.js', import.meta.url).href;
// The same tfjs and webgpu as this program's (the snippets run from a directory without node_modules).
const tfjsModule = pathToFileURL(createRequire(import.meta.url).resolve('@tensorflow/tfjs')).href;
const webgpuModule = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;

function isInstalled(specifier: string): boolean {
  try {
    createRequire(import.meta.url).resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

/** Runs an ES module snippet in a fresh node (its first tfjs use), from another working directory. */
async function runInFreshNode(source: string, env: NodeJS.ProcessEnv = process.env): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ['--input-type=module', '-e', source], { cwd: tmpdir(), timeout: 60_000, env });
}

/**
 * What Dawn offers on this machine, asked directly rather than through initBackend, which is under test:
 * a hardware adapter, only a software one, none, or Dawn does not even start (the webgpu package fails to
 * load or to ask). Asked in a fresh node, since a process that has found a GPU stays alive. A probe that
 * hangs fails the test.
 */
type Adapter = { kind: 'hardware' | 'software' | 'none' | 'broken'; detail: string };
let adapterProbe: Promise<Adapter> | undefined;
function webGpuAdapter(): Promise<Adapter> {
  adapterProbe ??= runInFreshNode(`
    let answer;
    try {
      const webgpu = await import('${webgpuModule}');
      const adapter = await webgpu.create([]).requestAdapter({ powerPreference: 'high-performance' });
      if (adapter === null) answer = { kind: 'none', detail: 'Dawn found no adapter' };
      else answer = { kind: adapter.info?.isFallbackAdapter ? 'software' : 'hardware', detail: adapter.info?.description || adapter.info?.vendor || 'unnamed' };
    } catch (error) {
      answer = { kind: 'broken', detail: 'Dawn does not start: ' + String(error?.message ?? error).split('\\n')[0] };
    }
    console.log(JSON.stringify(answer));
    process.exit(0);`).then(({ stdout, stderr }) => {
    const answer = JSON.parse(stdout.trim().split('\n').pop()!) as Adapter;
    // Dawn says on stderr why it found nothing (e.g. "Couldn't load Vulkan: libvulkan.so.1 ...").
    const why = stderr.split('\n').find((line) => /warning|error/i.test(line));
    return answer.kind === 'none' && why ? { kind: 'none', detail: `${answer.detail}: ${why.trim()}` } : answer;
  });
  return adapterProbe;
}

describe('initBackend', () => {
  let previousBackend: string | undefined;
  const tfjsNodeInstalled = isInstalled('@tensorflow/tfjs-node') || isInstalled('@tensorflow/tfjs-node-gpu');
  let tensorflow: TensorflowAddon | undefined;

  before(async function () {
    this.timeout(30 * 60_000);
    previousBackend = tf.getBackend();
    // Built where it can be (as test/run.sh does before the suite), so that auto's choice is known.
    if (tfjsNodeInstalled) tensorflow = await ensureTensorflowAddon();
  });

  after(async () => {
    if (previousBackend) await tf.setBackend(previousBackend);
  });

  it('auto takes the first backend that works and notifies one line per skipped one', async () => {
    const notices: string[] = [];
    const used = await initBackend('auto', (message) => notices.push(message));
    assert.equal(tf.getBackend(), used);
    // Without a tensorflow binding: webgpu where a GPU adapter is present, else wasm.
    const tensorflowReady = tensorflow !== undefined && 'ready' in tensorflow;
    const expected = tensorflowReady ? 'tensorflow' : (await webGpuAdapter()).kind === 'hardware' ? 'webgpu' : 'wasm';
    assert.equal(used, expected, notices.join('\n'));
    const skipped = AUTO_ORDER.slice(0, AUTO_ORDER.indexOf(used));
    assert.equal(notices.length, skipped.length, notices.join('\n'));
    skipped.forEach((name, i) => {
      assert.match(notices[i]!, new RegExp(`'${name}'`));
      assert.ok(!notices[i]!.includes('\n'), 'a notice is one line');
    });
    if (!tfjsNodeInstalled) assert.match(notices[0]!, /npm install @tensorflow\/tfjs-node@.*autoprune setup tensorflow/);
    else if (!tensorflowReady) assert.match(notices[0]!, /autoprune setup tensorflow/);
  });

  it('cpu: activates the cpu backend', async () => {
    assert.equal(await initBackend('cpu', assert.fail), 'cpu');
    assert.equal(tf.getBackend(), 'cpu');
    assert.deepEqual(Array.from(tf.add(tf.ones([2]), 1).dataSync()), [2, 2]);
  });

  it('cpu: no "install tfjs-node" banner on the console', async () => {
    const { stdout, stderr } = await runInFreshNode(`
      import * as tf from '${tfjsModule}';
      import { initBackend } from '${backendModule}';
      await initBackend('cpu', () => {});
      tf.add(tf.ones([2]), 1).dataSync();
      console.log('done');`);
    assert.match(stdout, /done/);
    assert.doesNotMatch(stdout + stderr, /running TensorFlow\.js in Node\.js/);
  });

  it('wasm: activates wasm with the training kernels registered', async () => {
    assert.equal(await initBackend('wasm', assert.fail), 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'));
    const grad = tf.grad((filter: tf.Tensor) => tf.sum(tf.conv2d(tf.ones([1, 4, 4, 1]) as tf.Tensor4D, filter as tf.Tensor4D, 1, 'valid')))(
      tf.ones([3, 3, 1, 1]),
    );
    assert.deepEqual(Array.from(grad.dataSync()), Array(9).fill(4));
  });

  it('wasm: finds its .wasm files wherever the program runs from', async () => {
    const { stdout } = await runInFreshNode(`
      import * as tf from '${tfjsModule}';
      import { initBackend } from '${backendModule}';
      console.log(await initBackend('wasm', () => {}), tf.sum(tf.ones([3])).dataSync()[0]);`);
    assert.match(stdout, /wasm 3/);
  });

  it('tensorflow: a clear InputError that says how to install tfjs-node when it is absent', async function () {
    if (tfjsNodeInstalled) skipBecause(this, '@tensorflow/tfjs-node is installed, so its absence cannot be tested');
    await assert.rejects(initBackend('tensorflow', assert.fail), (error: unknown) => {
      assert.ok(error instanceof InputError);
      assert.match(error.message, /^backend: 'tensorflow' cannot be used here: .*not installed.*npm install @tensorflow\/tfjs-node@/);
      return true;
    });
  });

  /** initBackend('tensorflow') in a fresh node whose cache is `cacheHome` (XDG_CACHE_HOME): its message when it fails. */
  async function tensorflowRefusal(cacheHome: string): Promise<string> {
    const { stdout } = await runInFreshNode(
      `
      import { initBackend } from '${backendModule}';
      try { await initBackend('tensorflow', () => {}); console.log('loaded'); } catch (error) { console.log(error.name + ': ' + error.message); }
      process.exit(0);`,
      { ...process.env, XDG_CACHE_HOME: cacheHome },
    );
    return stdout.trim();
  }

  it('tensorflow: installed but never set up, a clear InputError that points at `autoprune setup tensorflow`', async function () {
    const packages = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'].filter(isInstalled);
    if (packages.length === 0) skipBecause(this, '@tensorflow/tfjs-node is not installed; the test before covers that case');
    // A package whose own install script put an addon inside it loads without setup.
    const withOwnAddon = packages.filter((name) => existsSync(join(dirname(createRequire(import.meta.url).resolve(`${name}/package.json`)), 'lib')));
    if (withOwnAddon.length > 0) skipBecause(this, `${withOwnAddon[0]} came with its own addon, so it loads without setup`);
    const message = await tensorflowRefusal(mkdtempSync(join(tmpdir(), 'autoprune-no-addon-')));
    assert.match(
      message,
      /^InputError: backend: 'tensorflow' cannot be used here: .* is installed without its native binding; build it with `autoprune setup tensorflow`/,
    );
  });

  it('tensorflow: a setup made for another tfjs-node version, or a damaged record, is refused with the reason, not loaded', async function () {
    if (!isInstalled('@tensorflow/tfjs-node')) skipBecause(this, '@tensorflow/tfjs-node is not installed');
    const cacheHome = mkdtempSync(join(tmpdir(), 'autoprune-stale-addon-'));
    mkdirSync(join(cacheHome, 'autoprune', 'tensorflow-addon'), { recursive: true });
    const record = {
      package: '@tensorflow/tfjs-node',
      packageVersion: '0.0.1',
      directory: join(cacheHome, 'gone'),
      napiVersion: 8,
      tensorflowVersion: '2.21.0',
      source: 'tensorflow_cpu-2.21.0.whl',
      sourceSha256: '0'.repeat(64),
    };
    writeFileSync(join(cacheHome, 'autoprune', 'tensorflow-addon', 'current.json'), JSON.stringify(record));
    const message = await tensorflowRefusal(cacheHome);
    assert.match(
      message,
      /cannot be used here: the binding set up earlier cannot be used: it was built for @tensorflow\/tfjs-node 0\.0\.1, but .* is installed; build it with `autoprune setup tensorflow`/,
    );
    writeFileSync(join(cacheHome, 'autoprune', 'tensorflow-addon', 'current.json'), '{"package": "@tensor');
    assert.match(await tensorflowRefusal(cacheHome), /current\.json: cannot be read as JSON; run `autoprune setup tensorflow` again/);
  });

  describe('tensorflow, set up', () => {
    before(function () {
      if (tensorflow === undefined) skipBecause(this, '@tensorflow/tfjs-node is not installed');
      if ('missing' in tensorflow) skipBecause(this, `the tensorflow backend cannot be built here: ${tensorflow.missing}`);
    });

    it('trains an AutoPrune iteration (W step, M step, gates) as cpu does', async () => {
      const [onTensorflow, cpu] = await Promise.all([trainStep('tensorflow', 'lenet5'), trainStep('cpu', 'lenet5')]);
      assert.equal(onTensorflow.backend, 'tensorflow', 'the step ran on tensorflow, not on a fallback');
      assertSameStep(onTensorflow, cpu);
    });

    it("takes the thread counts it is given, and TF_NUM_*_THREADS over them, for TensorFlow's pools", async () => {
      /** TensorFlow names its inter-op threads tf_Compute; the intra-op pool's threads are the others it starts. */
      const threads = async (env: NodeJS.ProcessEnv, intraOp: number, interOp: number) => {
        const { stdout } = await runInFreshNode(
          `
          import { readdirSync, readFileSync } from 'node:fs';
          import * as tf from '${tfjsModule}';
          import { initBackend } from '${backendModule}';
          const names = () => readdirSync('/proc/self/task').map((task) => readFileSync('/proc/self/task/' + task + '/comm', 'utf8').trim());
          const before = names().length;
          await initBackend('tensorflow', () => {}, { tensorflowThreads: { intraOp: ${intraOp}, interOp: ${interOp} } });
          // Independent operations in flight (inter-op) and one large enough to split (intra-op).
          const a = tf.randomNormal([256, 256]);
          await Promise.all([0, 1, 2, 3].map(() => tf.matMul(a, a).data()));
          const after = names();
          const interOp = after.filter((name) => name === 'tf_Compute').length;
          console.log(JSON.stringify({ interOp, intraOp: after.length - before - interOp }));
          process.exit(0);`,
          env,
        );
        return JSON.parse(stdout.trim().split('\n').pop()!) as { interOp: number; intraOp: number };
      };
      const { TF_NUM_INTRAOP_THREADS: _intra, TF_NUM_INTEROP_THREADS: _inter, ...clean } = process.env;
      assert.deepEqual(await threads(clean, 3, 2), { intraOp: 3, interOp: 2 });
      assert.deepEqual(await threads({ ...clean, TF_NUM_INTEROP_THREADS: '1', TF_NUM_INTRAOP_THREADS: '2' }, 3, 3), { intraOp: 2, interOp: 1 });
    });
  });

  it('webgpu: without a hardware adapter, refuses at once with an InputError that says why', async function () {
    const adapter = await webGpuAdapter();
    if (adapter.kind === 'hardware') skipBecause(this, `a hardware WebGPU adapter is present (${adapter.detail}); the next test trains on it`);
    const why = { software: /only a software WebGPU adapter was found/, none: /no WebGPU adapter found/, broken: /failed to start/ }[adapter.kind];
    const start = Date.now();
    await assert.rejects(initBackend('webgpu', assert.fail), (error: unknown) => {
      assert.ok(error instanceof InputError, String(error));
      assert.match(error.message, /^backend: 'webgpu' cannot be used here: /);
      assert.match(error.message, why);
      return true;
    });
    assert.ok(Date.now() - start < 5000, `took ${Date.now() - start} ms`);
  });

  it('webgpu: with a hardware adapter, trains an AutoPrune iteration on the GPU as cpu does', async function () {
    const adapter = await webGpuAdapter();
    if (adapter.kind !== 'hardware') skipBecause(this, `no hardware WebGPU adapter here (${adapter.detail})`);
    const gpu = await trainStep('webgpu', 'lenet5');
    const cpu = await trainStep('cpu', 'lenet5');
    assert.equal(gpu.backend, 'webgpu', 'the step ran on webgpu, not on a fallback');
    assertSameStep(gpu, cpu);
  });

  it('rejects an unknown backend name', async () => {
    await assert.rejects(initBackend('gpu' as BackendName, assert.fail), (error: unknown) => {
      assert.ok(error instanceof InputError);
      assert.match(error.message, /unknown backend; expected one of auto, tensorflow, webgpu, wasm, cpu; found "gpu"/);
      return true;
    });
  });
});
