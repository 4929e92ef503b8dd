import { parseArgs } from 'node:util';
import { addonFile } from '../engine/tensorflow-addon.js';
import { InputError } from '../shared/errors.js';
import { setupTensorflow } from './tensorflow-build.js';
import { wheelRequirement } from './tensorflow-source.js';

export const SETUP_USAGE = `  autoprune setup tensorflow [--wheel FILE|DIR] [--gpu] [--force]
      builds the native binding of the installed @tensorflow/tfjs-node (--gpu: @tensorflow/tfjs-node-gpu) against
      libtensorflow from a TensorFlow wheel, checks that it computes, and makes it the tensorflow backend's
      --wheel FILE|DIR  a tensorflow*.whl, a directory holding one, an unpacked libtensorflow tarball or an installed
                        tensorflow package directory (default: pip downloads ${wheelRequirement(false)}, with --gpu ${wheelRequirement(true)})
      --gpu             build @tensorflow/tfjs-node-gpu, against a CUDA build of TensorFlow (default: off)
      --force           build again even when the cache holds this build (default: off)
      builds are cached by the wheel's sha256 in $XDG_CACHE_HOME/autoprune, else node_modules/.cache/autoprune`;

/** `autoprune setup <what>`: prepares an optional part on this machine; today, the tensorflow backend. */
export async function setup(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { wheel: { type: 'string' }, gpu: { type: 'boolean', default: false }, force: { type: 'boolean', default: false } },
  });
  if (positionals.length !== 1 || positionals[0] !== 'tensorflow')
    throw new InputError('autoprune setup', 'sets up one thing', { expected: 'tensorflow', found: positionals.join(' ') || 'nothing' });
  const started = Date.now();
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const { addon, reused } = await setupTensorflow({ wheel: values.wheel, gpu: values.gpu, force: values.force }, say);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(
    `${addon.package} ${addon.packageVersion} on TensorFlow ${addon.tensorflowVersion}: ${addonFile(addon)} (${reused ? 'reused' : 'built'} in ${seconds} s)\n` +
      `the tensorflow backend (--backend tensorflow, and first under auto) now loads it\n`,
  );
}
