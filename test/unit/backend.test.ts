import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { type BackendName, initBackend } from '../../engine/backend.js';
import { InputError } from '../../shared/errors.js';

const AUTO_ORDER = ['tensorflow', 'webgpu', 'wasm', 'cpu'];
const backendModule = new URL('../../engine/backend.js', import.meta.url).href;
// The same tfjs as this program's (the snippets run from a directory without node_modules).
const tfjsModule = pathToFileURL(createRequire(import.meta.url).resolve('@tensorflow/tfjs')).href;

function isInstalled(specifier: string): boolean {
  try {
    createRequire(import.meta.url).resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

/** Runs an ES module snippet in a fresh node (its first tfjs use), from another working directory. */
async function runInFreshNode(source: string): Promise<string> {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', source], { cwd: tmpdir() });
  return stdout + stderr;
}

describe('initBackend', () => {
  let previousBackend: string | undefined;
  const tfjsNodeInstalled = isInstalled('@tensorflow/tfjs-node') || isInstalled('@tensorflow/tfjs-node-gpu');

  before(() => {
    previousBackend = tf.getBackend();
  });

  after(async () => {
    if (previousBackend) await tf.setBackend(previousBackend);
  });

  it('auto takes the first backend that works and notifies one line per skipped one', async () => {
    const notices: string[] = [];
    const used = await initBackend('auto', (message) => notices.push(message));
    assert.equal(tf.getBackend(), used);
    // Here (no tfjs-node, no GPU) that is wasm; elsewhere a faster one may come first.
    assert.ok(['tensorflow', 'webgpu', 'wasm'].includes(used), `auto chose ${used}`);
    const skipped = AUTO_ORDER.slice(0, AUTO_ORDER.indexOf(used));
    assert.equal(notices.length, skipped.length, notices.join('\n'));
    skipped.forEach((name, i) => {
      assert.match(notices[i]!, new RegExp(`'${name}'`));
      assert.ok(!notices[i]!.includes('\n'), 'a notice is one line');
    });
    if (!tfjsNodeInstalled) assert.match(notices[0]!, /npm install @tensorflow\/tfjs-node@/);
  });

  it('cpu: activates the cpu backend', async () => {
    assert.equal(await initBackend('cpu', assert.fail), 'cpu');
    assert.equal(tf.getBackend(), 'cpu');
    assert.deepEqual(Array.from(tf.add(tf.ones([2]), 1).dataSync()), [2, 2]);
  });

  it('cpu: no "install tfjs-node" banner on the console', async () => {
    const output = await runInFreshNode(`
      import * as tf from '${tfjsModule}';
      import { initBackend } from '${backendModule}';
      await initBackend('cpu', () => {});
      tf.add(tf.ones([2]), 1).dataSync();
      console.log('done');`);
    assert.match(output, /done/);
    assert.doesNotMatch(output, /running TensorFlow\.js in Node\.js/);
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
    const output = await runInFreshNode(`
      import * as tf from '${tfjsModule}';
      import { initBackend } from '${backendModule}';
      console.log(await initBackend('wasm', () => {}), tf.sum(tf.ones([3])).dataSync()[0]);`);
    assert.match(output, /wasm 3/);
  });

  it('tensorflow: a clear InputError that says how to install tfjs-node when it is absent', async function () {
    if (tfjsNodeInstalled) this.skip();
    await assert.rejects(initBackend('tensorflow', assert.fail), (error: unknown) => {
      assert.ok(error instanceof InputError);
      assert.match(error.message, /^backend: 'tensorflow' cannot be used here: .*not installed.*npm install @tensorflow\/tfjs-node@/);
      return true;
    });
  });

  it('webgpu: activates it, or fails fast with an InputError where there is no GPU', async () => {
    const start = Date.now();
    try {
      assert.equal(await initBackend('webgpu', assert.fail), 'webgpu');
    } catch (error) {
      assert.ok(error instanceof InputError, String(error));
      assert.match(error.message, /^backend: 'webgpu' cannot be used here: /);
    }
    assert.ok(Date.now() - start < 5000, `took ${Date.now() - start} ms`);
  });

  it('rejects an unknown backend name', async () => {
    await assert.rejects(initBackend('gpu' as BackendName, assert.fail), (error: unknown) => {
      assert.ok(error instanceof InputError);
      assert.match(error.message, /unknown backend; expected one of auto, tensorflow, webgpu, wasm, cpu; found "gpu"/);
      return true;
    });
  });
});
