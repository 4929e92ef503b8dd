import { parseArgs } from 'node:util';
import { describeValue, InputError } from '../shared/errors.js';
import { nearest } from './nearest.js';

/**
 * A command's whole surface in one declaration: its usage lines, arguments, options (each with its
 * description, default and environment variable) and an example. The same declaration parses the
 * command line (a flag, else its environment variable, else its default) and writes `--help`, so the
 * help can never disagree with what the command accepts. An unknown option names the nearest valid one.
 */

export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  /** May be given more than once (values collect in order). */
  readonly multiple?: boolean;
  /** The value's placeholder in the help, e.g. `DIR`. */
  readonly value?: string;
  readonly description: string;
  /** Used when neither the flag nor its variable is given; shown in the help. */
  readonly default?: string;
  /** A default the command works out itself (e.g. "the machine's cores"): shown, never applied here. */
  readonly defaultText?: string;
  /** Read when the flag is not given. */
  readonly env?: string;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

export interface CommandSpec<O extends OptionSpecs = OptionSpecs> {
  /** As typed after `autoprune`, e.g. `train` or `data check`. */
  readonly name: string;
  /** One line for the command list of `autoprune --help`. */
  readonly summary: string;
  /** Usage lines without the leading `autoprune `; several when the command has several forms. */
  readonly usage: readonly string[];
  /** What the command does, in a few lines. */
  readonly description: string;
  readonly arguments?: readonly { readonly name: string; readonly description: string }[];
  readonly options: O;
  /** Environment variables read besides the options' own (e.g. a secret that has no flag). */
  readonly environment?: readonly { readonly name: string; readonly description: string }[];
  /** At least one full command line, without the leading `autoprune `. */
  readonly examples: readonly string[];
}

type ValueOf<S extends OptionSpec> = S['type'] extends 'boolean' ? boolean : S['multiple'] extends true ? string[] : string;

/** Booleans and repeatable options always have a value; a string option has one when it has a default. */
export type OptionValues<O extends OptionSpecs> = {
  readonly [K in keyof O]: O[K] extends { type: 'boolean' } | { multiple: true } | { default: string } ? ValueOf<O[K]> : ValueOf<O[K]> | undefined;
};

export type Parsed<O extends OptionSpecs> =
  | { readonly help: true }
  | { readonly help: false; readonly values: OptionValues<O>; readonly positionals: string[]; readonly given: ReadonlySet<keyof O & string> };

export function defineCommand<const O extends OptionSpecs>(spec: CommandSpec<O>): CommandSpec<O> {
  return spec;
}

/** Parses `args` against `spec`; `{ help: true }` when they ask for the help. Bad options throw an InputError. */
export function parseCommand<O extends OptionSpecs>(spec: CommandSpec<O>, args: readonly string[], env: NodeJS.ProcessEnv = process.env): Parsed<O> {
  const options = Object.fromEntries(
    Object.entries(spec.options).map(([name, option]) => [name, { type: option.type, ...(option.multiple ? { multiple: true } : {}) }]),
  );
  if (args.some((arg, i) => (arg === '--help' || arg === '-h') && !args.slice(0, i).includes('--'))) return { help: true };
  const known = new Set(Object.keys(spec.options));
  for (const token of parseArgs({ args: [...args], options, strict: false, allowPositionals: true, tokens: true }).tokens) {
    if (token.kind !== 'option' || known.has(token.name)) continue;
    const guess = nearest(token.name, [...known]);
    throw new InputError(token.rawName, `is not an option of autoprune ${spec.name}`, {
      expected: guess === undefined ? 'no options' : `--${guess}, the nearest option (autoprune ${spec.name} --help lists them all)`,
    });
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...args], options, strict: true, allowPositionals: true });
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    throw new InputError(`autoprune ${spec.name}`, error.message.replace(/\. To specify .*$/s, ''));
  }
  const values: Record<string, unknown> = {};
  const given = new Set<string>();
  for (const [name, option] of Object.entries(spec.options)) {
    const flag = parsed.values[name];
    if (flag !== undefined) given.add(name);
    if (option.type === 'boolean') values[name] = flag ?? booleanFromEnv(option, env) ?? false;
    else if (option.multiple) values[name] = flag ?? [];
    else values[name] = flag ?? (option.env === undefined ? undefined : env[option.env]) ?? option.default;
  }
  return { help: false, values: values as OptionValues<O>, positionals: parsed.positionals, given: given as ReadonlySet<keyof O & string> };
}

function booleanFromEnv(option: OptionSpec, env: NodeJS.ProcessEnv): boolean | undefined {
  const text = option.env === undefined ? undefined : env[option.env];
  if (text === undefined || text === '') return undefined;
  if (/^(1|true|yes)$/i.test(text)) return true;
  if (/^(0|false|no)$/i.test(text)) return false;
  throw new InputError(option.env!, 'is not a yes or no', { expected: '1, true, yes, 0, false or no', found: describeValue(text) });
}

/** The command's `--help`: usage, what it does, arguments, options with defaults and variables, examples. */
export function formatHelp(spec: CommandSpec): string {
  const lines = spec.usage.map((usage, i) => `${i === 0 ? 'usage: ' : '       '}autoprune ${usage}`);
  lines.push('', ...spec.description.split('\n'));
  const table = (title: string, rows: [string, string][]) => {
    if (rows.length === 0) return;
    const width = Math.min(28, Math.max(...rows.map(([left]) => left.length)));
    lines.push('', `${title}:`);
    for (const [left, right] of rows) {
      if (left.length > width) lines.push(`  ${left}`, `  ${' '.repeat(width)}  ${right}`);
      else lines.push(`  ${left.padEnd(width)}  ${right}`);
    }
  };
  table(
    'arguments',
    (spec.arguments ?? []).map((a) => [a.name, a.description]),
  );
  const options: [string, string][] = Object.entries(spec.options).map(([name, option]) => [
    `--${name}${option.type === 'string' ? ` ${option.value ?? 'VALUE'}` : ''}`,
    optionNotes(option),
  ]);
  options.push(['-h, --help', 'prints this help']);
  table('options', options);
  table(
    'environment',
    (spec.environment ?? []).map((v) => [v.name, v.description]),
  );
  lines.push('', spec.examples.length > 1 ? 'examples:' : 'example:', ...spec.examples.map((example) => `  autoprune ${example}`));
  return lines.join('\n');
}

function optionNotes(option: OptionSpec): string {
  const notes = [option.description];
  const fallback = option.default ?? option.defaultText;
  if (fallback !== undefined) notes.push(`(default: ${fallback})`);
  if (option.multiple) notes.push('(repeatable)');
  if (option.env !== undefined) notes.push(`[env ${option.env}]`);
  return notes.join(' ');
}

/** The command list of `autoprune --help` (or of a command's subcommands, `parent` `data`). */
export function formatCommandList(specs: readonly CommandSpec[], parent?: string): string {
  const width = Math.max(...specs.map((s) => s.name.length));
  const command = parent === undefined ? 'autoprune <command>' : `autoprune ${parent} <subcommand>`;
  return [
    `usage: ${command} [arguments] [options]`,
    '',
    parent === undefined ? 'commands:' : 'subcommands:',
    ...specs.map((s) => `  ${s.name.padEnd(width)}  ${s.summary}`),
    '',
    `\`${command} --help\` shows its options, their defaults and environment variables, and an example.`,
  ].join('\n');
}

/** Prints the command's help on stdout; undefined, so that a command can `return printHelp(...)` as its success. */
export function printHelp(spec: CommandSpec): undefined {
  process.stdout.write(`${formatHelp(spec)}\n`);
  return undefined;
}
