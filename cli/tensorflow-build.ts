/**
 * Builds tfjs-node's native binding (binding.gyp, binding/*.cc of the installed package) against the
 * libtensorflow of a TensorFlow wheel or directory, with node-gyp as npm bundles it, into a directory of
 * the cache keyed by what the build depends on; checks it in a fresh process; records it as the one the
 * tensorflow backend loads (engine/tensorflow-addon.ts). A second setup with the same inputs reuses the
 * build. Nothing is downloaded except the wheel, through pip.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { addonCacheRoot, autopruneCacheRoot, type BuiltAddon, installedPackage, type TfjsNodePackage } from '../engine/tensorflow-addon.js';
import { writeFileAtomic } from '../shared/atomic-file.js';
import { InputError } from '../shared/errors.js';
import { describeSource, downloadWheel, recogniseSource, sourceFingerprint, type TensorflowSource } from './tensorflow-source.js';

export interface SetupOptions {
  /** A wheel, a directory holding one, or an unpacked library; default: pip fetches the wheel. */
  readonly wheel?: string | undefined;
  /** Build @tensorflow/tfjs-node-gpu against a CUDA build of TensorFlow. */
  readonly gpu: boolean;
  /** Build again even when the cache holds a build of the same inputs. */
  readonly force: boolean;
}

export interface SetupOutcome {
  readonly addon: BuiltAddon;
  /** Whether the cache already held this build. */
  readonly reused: boolean;
}

/** Compiling two files and linking takes ~30 s on two loaded cores; this only bounds a hung compiler. */
const BUILD_TIMEOUT_MS = 20 * 60_000;
const CHECK_TIMEOUT_MS = 2 * 60_000;
const WHERE = 'autoprune setup tensorflow';
/** Written last into a build directory that was checked. */
const DONE_FILE = 'addon.json';

interface Toolchain {
  readonly nodeGyp: string;
  readonly nodeDir: string;
}

export async function setupTensorflow(options: SetupOptions, say: (line: string) => void): Promise<SetupOutcome> {
  const packageName: TfjsNodePackage = options.gpu ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
  const installed = installedPackage(packageName);
  const toolchain = await findToolchain(packageName, installed?.directory);
  const napiVersion = Math.max(0, ...(installed?.napiVersions ?? []).filter((v) => v <= Number(process.versions.napi)));
  if (!installed || napiVersion === 0) throw new Error(`unreachable: findToolchain checks ${packageName}`);

  const source = options.wheel ? recogniseSource(options.wheel) : await fetchWheel(options.gpu, say);
  say(`hashing ${describeSource(source)}`);
  const sourceSha256 = await sourceFingerprint(source);
  const key = createHash('sha256')
    .update(JSON.stringify([sourceSha256, packageName, installed.version, napiVersion, process.arch, process.platform]))
    .digest('hex')
    .slice(0, 16);
  const directory = join(addonCacheRoot(), key);
  const reused = existsSync(join(directory, DONE_FILE)) && !options.force;
  if (!reused) {
    rmSync(directory, { recursive: true, force: true });
    await build({ packageDirectory: installed.directory, source, toolchain, napiVersion, directory }, say);
  } else {
    say(`reusing the build in ${directory}`);
  }
  const candidate = {
    package: packageName,
    packageVersion: installed.version,
    directory,
    napiVersion,
    tensorflowVersion: 'unknown',
    source: source.kind === 'wheel' ? source.file : source.directory,
    sourceSha256,
  } satisfies BuiltAddon;
  say('checking that it loads and computes a known convolution');
  const { tensorflowVersion } = await check(candidate, directory);
  const addon: BuiltAddon = { ...candidate, tensorflowVersion };
  const record = `${JSON.stringify(addon, null, 2)}\n`;
  await writeFileAtomic(join(directory, DONE_FILE), record);
  await writeFileAtomic(join(addonCacheRoot(), 'current.json'), record);
  return { addon, reused };
}

/** What the build needs from the machine; every missing piece is named at once, with how to get it. */
async function findToolchain(packageName: TfjsNodePackage, packageDirectory: string | undefined): Promise<Toolchain> {
  const missing: string[] = [];
  if (!packageDirectory) {
    missing.push(`${packageName} (npm install --ignore-scripts ${packageName}@${tf.version_core}, the version of @tensorflow/tfjs)`);
  } else if (!existsSync(join(packageDirectory, 'binding.gyp')) || !existsSync(join(packageDirectory, 'binding'))) {
    missing.push(`the binding sources in ${packageDirectory} (binding.gyp, binding/): reinstall ${packageName}`);
  } else if (!(installedPackage(packageName)?.napiVersions ?? []).some((v) => v <= Number(process.versions.napi))) {
    missing.push(`an N-API version this Node (${process.versions.napi}) offers among those ${packageName} builds for`);
  }
  const compiler = process.env.CXX ?? 'c++';
  if (!(await runs(compiler, ['--version']))) missing.push(`a C++ compiler (${compiler}; Debian: apt-get install g++)`);
  if (!(await runs('make', ['--version']))) missing.push('make (Debian: apt-get install make)');
  if (!(await runs('python3', ['--version']))) missing.push('python3, which node-gyp and pip run on (Debian: apt-get install python3)');
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) missing.push("node-gyp (npm bundles it: reinstall npm, or set npm_config_node_gyp to node-gyp's bin/node-gyp.js)");
  const nodeDir = findNodeHeaders();
  if (!nodeDir)
    missing.push(
      `Node's C headers (include/node/node_api.h under ${dirname(dirname(process.execPath))}, or npm_config_nodedir; Debian: apt-get install libnode-dev)`,
    );
  if (missing.length > 0 || !nodeGyp || !nodeDir) throw new InputError(WHERE, `cannot build the binding; missing: ${missing.join('; ')}`);
  return { nodeGyp, nodeDir };
}

function runs(program: string, args: string[]): Promise<boolean> {
  return new Promise((resolveRuns) => execFile(program, args, { timeout: 30_000 }, (error) => resolveRuns(!error)));
}

/** node-gyp as npm bundles it (npm names it in npm_config_node_gyp when it runs a script). */
function findNodeGyp(): string | undefined {
  const prefix = dirname(dirname(process.execPath));
  const candidates = [
    process.env.npm_config_node_gyp,
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(prefix, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((candidate): candidate is string => candidate !== undefined && existsSync(candidate));
}

/** The installation prefix whose include/node has this Node's headers (node-gyp would download them otherwise). */
function findNodeHeaders(): string | undefined {
  const candidates = [process.env.npm_config_nodedir, dirname(dirname(process.execPath))];
  return candidates.find(
    (candidate): candidate is string =>
      candidate !== undefined && existsSync(join(candidate, 'include', 'node', 'node_api.h')) && existsSync(join(candidate, 'include', 'node', 'common.gypi')),
  );
}

async function fetchWheel(gpu: boolean, say: (line: string) => void): Promise<TensorflowSource> {
  const wheels = join(autopruneCacheRoot(), 'wheels');
  mkdirSync(wheels, { recursive: true });
  say(`fetching the TensorFlow wheel with pip into ${wheels}`);
  return downloadWheel(gpu, wheels);
}

interface BuildPlan {
  readonly packageDirectory: string;
  readonly source: TensorflowSource;
  readonly toolchain: Toolchain;
  readonly napiVersion: number;
  readonly directory: string;
}

/** Builds in a staging directory renamed into place at the end: a build that stopped halfway is never taken for one. */
async function build(plan: BuildPlan, say: (line: string) => void): Promise<void> {
  const staging = `${plan.directory}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    mkdirSync(join(staging, 'deps', 'lib'), { recursive: true });
    cpSync(join(plan.packageDirectory, 'binding.gyp'), join(staging, 'binding.gyp'));
    cpSync(join(plan.packageDirectory, 'binding'), join(staging, 'binding'), { recursive: true });
    const { library, framework, include } = await libraryFiles(plan.source, staging, say);
    // The names binding.gyp links against (-ltensorflow -ltensorflow_framework) and the sonames the libraries carry.
    const links: Record<string, string> = {
      'libtensorflow.so': library,
      'libtensorflow.so.2': library,
      'libtensorflow_cc.so.2': library,
      'libtensorflow_framework.so': framework,
      'libtensorflow_framework.so.2': framework,
    };
    for (const [name, target] of Object.entries(links)) symlinkSync(target, join(staging, 'deps', 'lib', name));
    symlinkSync(include, join(staging, 'deps', 'include'));
    say(`compiling the binding with node-gyp (${plan.toolchain.nodeGyp})`);
    const args = [
      plan.toolchain.nodeGyp,
      'rebuild',
      `--nodedir=${plan.toolchain.nodeDir}`,
      '--module_name=tfjs_binding',
      `--module_path=${join(staging, 'lib', `napi-v${plan.napiVersion}`)}`,
      `--napi_build_version=${plan.napiVersion}`,
      `--jobs=${availableParallelism()}`,
    ];
    try {
      await promisify(execFile)(process.execPath, args, { cwd: staging, timeout: BUILD_TIMEOUT_MS, maxBuffer: 64 << 20 });
    } catch (error) {
      const output = `${(error as { stdout?: string }).stdout ?? ''}\n${(error as { stderr?: string }).stderr ?? ''}`;
      const errors = output.split('\n').filter((line) => /error|not found|cannot/i.test(line));
      throw new InputError(WHERE, `node-gyp could not build the binding (node ${args.join(' ')}, in ${staging})`, {
        found: (errors.length > 0 ? errors : output.split('\n')).slice(-8).join('\n'),
      });
    }
    // Objects and makefiles: only the addon and its links are used from here on.
    rmSync(join(staging, 'build'), { recursive: true, force: true });
    mkdirSync(dirname(plan.directory), { recursive: true });
    try {
      renameSync(staging, plan.directory);
    } catch (error) {
      // Another setup built the same inputs at the same time: its build is as good as this one.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/**
 * The library, its framework and the header tree, as link targets from deps/lib and deps/ of `staging`: a wheel's are
 * unpacked into the build directory (linked relatively, so that the directory can be renamed); a directory's are linked
 * where they are.
 */
async function libraryFiles(
  source: TensorflowSource,
  staging: string,
  say: (line: string) => void,
): Promise<{ library: string; framework: string; include: string }> {
  if (source.kind === 'directory') return { library: source.library, framework: source.framework, include: source.include };
  say(`unpacking the library and the C API headers from ${describeSource(source)}`);
  await unpackWheel(source.file, staging);
  const unpacked = join(staging, 'tensorflow');
  const fromLib = (file: string) => relative(join(staging, 'deps', 'lib'), join(unpacked, file));
  return {
    library: fromLib('libtensorflow_cc.so.2'),
    framework: fromLib('libtensorflow_framework.so.2'),
    include: relative(join(staging, 'deps'), join(unpacked, 'include')),
  };
}

/** The members a binding build needs: the two libraries and the header trees the C API includes (tensorflow/c, tsl, xla/tsl). */
const UNPACK_SCRIPT = `
import sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
libraries = {'tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'}
headers = ('tensorflow/include/tensorflow/c/', 'tensorflow/include/tensorflow/core/platform/', 'tensorflow/include/tsl/', 'tensorflow/include/xla/tsl/')
with zipfile.ZipFile(wheel) as archive:
    members = [name for name in archive.namelist() if name in libraries or name.startswith(headers)]
    missing = sorted(libraries - set(members))
    if missing or not any(name.endswith('/c/c_api.h') for name in members):
        sys.exit('not a TensorFlow wheel with the C API: lacks ' + ', '.join(missing or ['tensorflow/include/tensorflow/c/c_api.h']))
    archive.extractall(target, members)
`;

async function unpackWheel(wheel: string, target: string): Promise<void> {
  try {
    await promisify(execFile)('python3', ['-c', UNPACK_SCRIPT, wheel, target], { timeout: BUILD_TIMEOUT_MS });
  } catch (error) {
    const said = String((error as { stderr?: string }).stderr || (error as Error).message).trim();
    throw new InputError(wheel, 'cannot be unpacked for the binding build', { found: said.split('\n').slice(-2).join(' ') });
  }
}

/** Loads the build in a fresh node, as the backend will, and has it compute a known convolution. */
async function check(candidate: BuiltAddon, directory: string): Promise<{ tensorflowVersion: string }> {
  const recordFile = join(directory, 'check.json');
  await writeFileAtomic(recordFile, JSON.stringify(candidate));
  const script = fileURLToPath(new URL('./tensorflow-check.js', import.meta.url));
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [script, recordFile], { timeout: CHECK_TIMEOUT_MS });
    return JSON.parse(stdout) as { tensorflowVersion: string };
  } catch (error) {
    const said = String((error as { stderr?: string }).stderr || (error as Error).message).trim();
    throw new InputError(WHERE, `the binding built in ${directory} does not work`, { found: said.split('\n').slice(-4).join(' ') });
  } finally {
    rmSync(recordFile, { force: true });
  }
}
