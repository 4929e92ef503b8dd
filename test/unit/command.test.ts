import assert from 'node:assert/strict';
import { defineCommand, formatHelp, parseCommand } from '../../cli/command.js';
import { COMMAND_SPECS } from '../../cli/command-list.js';
import { editDistance, nearest } from '../../cli/nearest.js';
import { InputError } from '../../shared/errors.js';

const SPEC = defineCommand({
  name: 'demo',
  summary: 'a command for the tests',
  usage: ['demo <file> [--out DIR]'],
  description: 'Does nothing.',
  options: {
    out: { type: 'string', value: 'DIR', description: 'where', default: 'runs' },
    port: { type: 'string', value: 'N', description: 'which port', env: 'DEMO_PORT' },
    verbose: { type: 'boolean', description: 'says more', env: 'DEMO_VERBOSE' },
    set: { type: 'string', multiple: true, description: 'overrides' },
  },
  examples: ['demo a.yaml --out b'],
});

describe('command definitions (cli/command.ts)', () => {
  it('takes a flag first, then its environment variable, then its default', () => {
    const parse = (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const parsed = parseCommand(SPEC, args, env);
      assert.equal(parsed.help, false);
      return parsed.help ? undefined : parsed;
    };
    assert.deepEqual(parse(['x'])!.values, { out: 'runs', port: undefined, verbose: false, set: [] });
    assert.deepEqual(parse(['x'], { DEMO_PORT: '7', DEMO_VERBOSE: 'yes' })!.values, { out: 'runs', port: '7', verbose: true, set: [] });
    const given = parse(['x', '--port', '9', '--out', 'o', '--set', 'a=1', '--set', 'b=2'], { DEMO_PORT: '7' })!;
    assert.deepEqual(given.values, { out: 'o', port: '9', verbose: false, set: ['a=1', 'b=2'] });
    assert.deepEqual(given.positionals, ['x']);
    assert.deepEqual([...given.given].sort(), ['out', 'port', 'set']);
    assert.throws(() => parseCommand(SPEC, [], { DEMO_VERBOSE: 'maybe' }), /DEMO_VERBOSE: is not a yes or no/);
  });

  it('answers --help and -h, but not after --', () => {
    assert.equal(parseCommand(SPEC, ['x', '--help']).help, true);
    assert.equal(parseCommand(SPEC, ['-h']).help, true);
    assert.equal(parseCommand(SPEC, ['--', '--help']).help, false);
  });

  it('names the nearest valid option for an unknown one, and refuses a missing value as bad input', () => {
    assert.throws(
      () => parseCommand(SPEC, ['x', '--outt', 'd']),
      (error: unknown) => error instanceof InputError && /^--outt: is not an option of autoprune demo; expected --out, the nearest option/.test(error.message),
    );
    assert.throws(() => parseCommand(SPEC, ['x', '--verbos']), /expected --verbose, the nearest/);
    assert.throws(
      () => parseCommand(SPEC, ['x', '--out']),
      (error: unknown) => error instanceof InputError && /--out/.test(error.message),
    );
  });

  it('edit distance counts insertions, deletions, substitutions and swaps', () => {
    assert.equal(editDistance('workers', 'workers'), 0);
    assert.equal(editDistance('wokrers', 'workers'), 1);
    assert.equal(editDistance('worker', 'workers'), 1);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(nearest('stauts', ['train', 'status', 'report']), 'status');
    assert.equal(nearest('x', []), undefined);
  });

  const every = COMMAND_SPECS;
  for (const spec of every) {
    it(`autoprune ${spec.name} --help: a usage line, every option with its default and variable, an example`, () => {
      const help = formatHelp(spec);
      assert.ok(help.startsWith(`usage: autoprune ${spec.name} `), help);
      for (const [name, option] of Object.entries(spec.options)) {
        const line = help.split('\n').find((l) => l.trimStart().startsWith(`--${name}`));
        assert.ok(line, `--${name} is listed`);
        // A long option name puts its description on the next line.
        const text = `${line} ${help.split('\n')[help.split('\n').indexOf(line!) + 1]}`;
        assert.ok(option.description.length > 0 && text.includes(option.description), `--${name} has its description`);
        const fallback = option.default ?? option.defaultText;
        if (fallback !== undefined) assert.ok(text.includes(`(default: ${fallback})`), `--${name} shows its default`);
        if (option.env !== undefined) assert.ok(text.includes(`[env ${option.env}]`), `--${name} shows ${option.env}`);
      }
      assert.match(help, /\nexamples?:\n {2}autoprune /);
      for (const example of spec.examples) assert.ok(example.startsWith(spec.name), `the example runs ${spec.name}: ${example}`);
    });
  }
});
