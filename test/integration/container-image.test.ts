import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skipBecause } from '../helpers/skip.js';

/**
 * The container images, built here offline by deploy/image/build.sh (a Debian trixie base from mmdebstrap,
 * cached by its recipe's hash; podman build with chroot isolation) and run the way a restricted pod runs
 * them: read-only root, every capability dropped, no network, as the image's own non-root user.
 */

/** The cold build fetches the base's packages; a warm one reuses the cached base (about 10 s). */
const BUILD_TIMEOUT_MS = 10 * 60_000;
const RUN_TIMEOUT_MS = 5 * 60_000;
const PREFIX = 'localhost/autoprune-test';
/** The uid the Containerfile gives the program's user. */
const IMAGE_UID = 10001;

interface Ran {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

function execute(program: string, args: readonly string[], timeout: number): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(program, args, { timeout, maxBuffer: 64 << 20 }, (error, stdout, stderr) =>
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr: stderr || (error?.message ?? '') }),
    );
  });
}

/** `podman run` as a restricted pod runs: the flags this sandbox needs (runc, explicit ulimits) included. */
function podmanRun(image: string, args: readonly string[], extra: readonly string[] = []): Promise<Ran> {
  const restricted = ['--read-only', '--cap-drop=ALL', '--network=none', '--security-opt=no-new-privileges'];
  const limits = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
  return execute('podman', ['--runtime', 'runc', 'run', '--rm', ...restricted, ...limits, ...extra, image, ...args], RUN_TIMEOUT_MS);
}

function onPath(program: string): boolean {
  return (process.env.PATH ?? '').split(':').some((directory) => directory && existsSync(join(directory, program)));
}

describe('container images (deploy/image)', function () {
  this.timeout(BUILD_TIMEOUT_MS + RUN_TIMEOUT_MS);

  before(async function () {
    // What the machine allows, found before anything is built: build.sh installs the tools when it can.
    const root = process.getuid?.() === 0;
    const tools = ['podman', 'mmdebstrap', 'runc'].every(onPath);
    if (!root) skipBecause(this, 'building images needs root (mmdebstrap, podman storage), and the tests do not run as root');
    if (!tools && !onPath('apt-get')) skipBecause(this, 'podman, mmdebstrap or runc is missing and apt-get is not here to install them');
    const built = await execute('bash', ['deploy/image/build.sh', '--tag-prefix', PREFIX], BUILD_TIMEOUT_MS);
    assert.equal(built.status, 0, `deploy/image/build.sh failed:\n${built.stdout}\n${built.stderr}`);
    process.stdout.write(`      ${built.stdout.trim().split('\n').join('\n      ')}\n`);
  });

  it('runs autoprune --help as its own non-root user on a read-only root', async () => {
    const user = await execute('podman', ['image', 'inspect', '--format', '{{.Config.User}}', `${PREFIX}:cpu`], RUN_TIMEOUT_MS);
    assert.equal(user.stdout.trim(), `${IMAGE_UID}:${IMAGE_UID}`);
    const help = await podmanRun(`${PREFIX}:cpu`, ['--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^usage: autoprune <command> \[arguments\] \[options\]\n\ncommands:\n {2}train /);
    const id = await podmanRun(`${PREFIX}:cpu`, ['-u'], ['--entrypoint', 'id']);
    assert.equal(id.stdout.trim(), String(IMAGE_UID));
  });

  it('holds Node >= 20 and none of the development dependencies', async () => {
    // A development dependency that a production package also needs (@types/node, for protobufjs) belongs.
    const production = await execute('npm', ['ls', '--omit=dev', '--all', '--parseable'], RUN_TIMEOUT_MS);
    const needed = new Set(production.stdout.split('\n').map((path) => path.replace(/^.*?\/node_modules\//, '')));
    const manifest = JSON.parse(readFileSync('package.json', 'utf8')) as { devDependencies: Record<string, string> };
    const devDependencies = Object.keys(manifest.devDependencies).filter((name) => !needed.has(name));
    assert.ok(devDependencies.includes('typescript') && devDependencies.includes('mocha'), `development-only: ${devDependencies.join(', ')}`);
    const script = `const fs = require('node:fs');
      console.log(JSON.stringify({ node: process.versions.node, present: ${JSON.stringify(devDependencies)}.filter((name) => fs.existsSync('/app/node_modules/' + name)) }));`;
    const ran = await podmanRun(`${PREFIX}:cpu`, ['-e', script], ['--entrypoint', 'node']);
    assert.equal(ran.status, 0, ran.stderr);
    const found = JSON.parse(ran.stdout) as { node: string; present: string[] };
    assert.ok(Number(found.node.split('.')[0]) >= 20, `Node ${found.node}`);
    assert.deepEqual(found.present, []);
  });

  it('trains the shipped MNIST, writing only its run directory on the mounted volume', async () => {
    const volume = mkdtempSync(join(tmpdir(), 'autoprune-image-run-'));
    try {
      chownSync(volume, IMAGE_UID, IMAGE_UID);
      const short = ['phases.0.steps=10', 'phases.1.steps=10', 'phases.2.steps=5', 'data.trainSubset=1000', 'data.testSubset=200', 'evaluation.every=0'];
      const ran = await podmanRun(
        `${PREFIX}:cpu`,
        ['train', '/app/examples/quickstart-mnist.yaml', '--out', '/runs/mnist', ...short.flatMap((s) => ['--set', s])],
        ['--volume', `${volume}:/runs`],
      );
      assert.equal(ran.status, 0, ran.stderr);
      assert.match(ran.stdout, /run directory: \/runs\/mnist/);
      const report = JSON.parse(readFileSync(join(volume, 'mnist', 'report.json'), 'utf8')) as { phases: { name: string; steps: number }[] };
      assert.deepEqual(
        report.phases.map((phase) => [phase.name, phase.steps]),
        [
          ['dense', 10],
          ['prune', 10],
          ['finetune', 5],
        ],
      );
      assert.equal(statSync(join(volume, 'mnist', 'pruned.safetensors')).uid, IMAGE_UID);
    } finally {
      rmSync(volume, { recursive: true, force: true });
    }
  });

  it('gpu: loads Dawn against libvulkan1 and asks the NVIDIA runtime for the graphics driver', async () => {
    // No GPU here: Dawn's Vulkan instance finds no driver and the adapter is null, which proves that dawn.node
    // and libvulkan.so.1 load in the image (a missing library or too old a glibc fails the import instead).
    const script = `const { create } = await import('/app/node_modules/webgpu/index.js');
      const adapter = await create([]).requestAdapter();
      console.log(JSON.stringify({ adapter: adapter === null ? null : 'found', capabilities: process.env.NVIDIA_DRIVER_CAPABILITIES }));`;
    const ran = await podmanRun(`${PREFIX}:gpu`, ['--input-type=module', '-e', script], ['--entrypoint', 'node']);
    assert.equal(ran.status, 0, ran.stderr);
    const found = JSON.parse(ran.stdout.trim().split('\n').at(-1)!) as { adapter: string | null; capabilities: string };
    assert.equal(found.capabilities, 'compute,utility,graphics');
    assert.equal(found.adapter, null);
  });
});
