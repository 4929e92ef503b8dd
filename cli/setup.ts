import { addonFile } from '../engine/tensorflow-addon.js';
import { InputError } from '../shared/errors.js';
import { defineCommand, formatCommandList, parseCommand, printHelp } from './command.js';
import { setupTensorflow } from './tensorflow-build.js';
import { wheelRequirement } from './tensorflow-source.js';

export const SETUP_COMMAND = defineCommand({
  name: 'setup tensorflow',
  summary: "builds tfjs-node's binding against libtensorflow from a TensorFlow wheel: the tensorflow backend",
  usage: ['setup tensorflow [--wheel FILE|DIR] [--gpu] [--force]'],
  description:
    'Builds the native binding of the installed @tensorflow/tfjs-node (--gpu: @tensorflow/tfjs-node-gpu) against\n' +
    'libtensorflow from a TensorFlow wheel, checks that it computes a known convolution, and makes it the tensorflow\n' +
    "backend's. Builds are cached by the wheel's sha256 in $XDG_CACHE_HOME/autoprune, else node_modules/.cache/autoprune.",
  options: {
    wheel: {
      type: 'string',
      value: 'FILE|DIR',
      description: 'a tensorflow*.whl, a directory holding one, an unpacked libtensorflow tarball or an installed tensorflow package directory',
      defaultText: `pip downloads ${wheelRequirement(false)}, with --gpu ${wheelRequirement(true)}`,
    },
    gpu: { type: 'boolean', description: 'build @tensorflow/tfjs-node-gpu, against a CUDA build of TensorFlow' },
    force: { type: 'boolean', description: 'build again even when the cache holds this build' },
  },
  examples: ['setup tensorflow', 'setup tensorflow --wheel ~/wheels/tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl'],
});

/** `autoprune setup <what>`: prepares an optional part on this machine; today, the tensorflow backend. */
export async function setup(args: string[]): Promise<void> {
  const [what, ...rest] = args;
  if (what === undefined || what === '--help' || what === '-h') {
    process.stdout.write(`${formatCommandList([SETUP_COMMAND], 'setup')}\n`);
    return;
  }
  if (what !== 'tensorflow') throw new InputError('autoprune setup', 'sets up one thing', { expected: 'tensorflow', found: what });
  const parsed = parseCommand(SETUP_COMMAND, rest);
  if (parsed.help) return printHelp(SETUP_COMMAND);
  const { values, positionals } = parsed;
  if (positionals.length > 0) throw new InputError('autoprune setup tensorflow', 'takes no arguments, only options', { found: positionals.join(' ') });
  const started = Date.now();
  const say = (line: string) => process.stderr.write(`${line}\n`);
  const { addon, reused } = await setupTensorflow({ wheel: values.wheel, gpu: values.gpu, force: values.force }, say);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(
    `${addon.package} ${addon.packageVersion} on TensorFlow ${addon.tensorflowVersion}: ${addonFile(addon)} (${reused ? 'reused' : 'built'} in ${seconds} s)\n` +
      `the tensorflow backend (--backend tensorflow, and first under auto) now loads it\n`,
  );
}
