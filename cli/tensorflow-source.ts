/**
 * Where `autoprune setup tensorflow` takes libtensorflow from: a TensorFlow wheel (given, or fetched by
 * pip from the package index pip is configured with), an unpacked libtensorflow tarball, or an installed
 * `tensorflow` package directory (site-packages/tensorflow). Each is recognised by the files it holds.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { sha256File } from '../shared/atomic-file.js';
import { InputError } from '../shared/errors.js';

/** The TensorFlow release the binding is built and tested against (its C API is what tfjs-node 4.22 calls). */
export const TENSORFLOW_VERSION = '2.21.0';

/** A wheel to unpack, or a directory whose library and headers are linked in place. */
export type TensorflowSource =
  | { readonly kind: 'wheel'; readonly file: string }
  | { readonly kind: 'directory'; readonly directory: string; readonly library: string; readonly framework: string; readonly include: string };

/** Generous for pip over a slow line; a local index answers in seconds. */
const PIP_TIMEOUT_MS = 20 * 60_000;

const WHERE = 'autoprune setup tensorflow --wheel';

/** The source `given` names (a .whl, a directory holding one, or an unpacked library). */
export function recogniseSource(given: string): TensorflowSource {
  const path = resolve(given);
  if (!existsSync(path)) throw new InputError(WHERE, 'no such file or directory', { found: path });
  if (statSync(path).isFile()) {
    if (!path.endsWith('.whl')) throw new InputError(WHERE, 'is neither a wheel nor a directory', { expected: 'a tensorflow*.whl file', found: path });
    return { kind: 'wheel', file: path };
  }
  const layouts = [
    // An unpacked libtensorflow tarball (libtensorflow-cpu-linux-x86_64.tar.gz and the like).
    { library: 'lib/libtensorflow.so.2', framework: 'lib/libtensorflow_framework.so.2', include: 'include' },
    // An installed wheel: the `tensorflow` package directory.
    { library: 'libtensorflow_cc.so.2', framework: 'libtensorflow_framework.so.2', include: 'include' },
  ];
  for (const layout of layouts) {
    const [library, framework, include] = [layout.library, layout.framework, layout.include].map((file) => join(path, file)) as [string, string, string];
    if (existsSync(library) && existsSync(framework) && existsSync(join(include, 'tensorflow', 'c', 'c_api.h')))
      return { kind: 'directory', directory: path, library, framework, include };
  }
  const wheels = readdirSync(path).filter((name) => /^tensorflow.*\.whl$/.test(name));
  if (wheels.length === 1) return { kind: 'wheel', file: join(path, wheels[0]!) };
  throw new InputError(WHERE, 'holds no TensorFlow library that can be used', {
    expected:
      'exactly one tensorflow*.whl, an unpacked libtensorflow tarball (lib/libtensorflow.so.2, include/), or an installed tensorflow package (libtensorflow_cc.so.2, include/)',
    found: wheels.length > 1 ? `${wheels.length} wheels: ${wheels.join(', ')}` : path,
  });
}

/** The name pip knows the wheel by: the CPU build, or the full one (CUDA 12) for a GPU binding. */
export function wheelRequirement(gpu: boolean): string {
  return `${gpu ? 'tensorflow' : 'tensorflow-cpu'}==${TENSORFLOW_VERSION}`;
}

/** Fetches the wheel with pip (no dependencies: only the library and headers are used) into `directory`. */
export async function downloadWheel(gpu: boolean, directory: string): Promise<TensorflowSource> {
  const requirement = wheelRequirement(gpu);
  const args = ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--disable-pip-version-check', '--retries', '0', '--dest', directory, requirement];
  try {
    await promisify(execFile)('python3', args, { timeout: PIP_TIMEOUT_MS, maxBuffer: 16 << 20 });
  } catch (error) {
    const said = String((error as { stderr?: string }).stderr ?? (error as Error).message)
      .trim()
      .split('\n')
      .slice(-3)
      .join(' ');
    throw new InputError('autoprune setup tensorflow', `pip could not fetch ${requirement} (python3 -m pip ${args.slice(2).join(' ')})`, {
      expected: 'the wheel on a package index pip can reach (PIP_FIND_LINKS, PIP_INDEX_URL), or one given with --wheel FILE|DIR',
      found: said,
    });
  }
  const name = requirement.split('==')[0]!.replace('-', '_');
  const wheels = readdirSync(directory).filter((file) => file.startsWith(`${name}-${TENSORFLOW_VERSION}-`) && file.endsWith('.whl'));
  if (wheels.length === 0) throw new Error(`pip reported success but left no ${name} wheel in ${directory}`);
  return { kind: 'wheel', file: join(directory, wheels.sort().at(-1)!) };
}

/** What a build is keyed by: the wheel's sha256, or the library's for a directory. */
export function sourceFingerprint(source: TensorflowSource): Promise<string> {
  return sha256File(source.kind === 'wheel' ? source.file : source.library);
}

export function describeSource(source: TensorflowSource): string {
  return source.kind === 'wheel' ? basename(source.file) : source.directory;
}
