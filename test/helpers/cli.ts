import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

/**
 * The autoprune CLI as a real process (`node dist/cli/main.js ...`) for integration tests: its output
 * collected, its exit awaited with a deadline, and the lines of its JSON log waited for by their `event`.
 */

const CLI = join('dist', 'cli', 'main.js');

/** How long a wait lasts unless told otherwise: generous, since the machine may be shared and slow. */
export const DEFAULT_WAIT_MS = 300_000;

export interface CliResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The lines of stderr that are JSON log lines, parsed. */
  readonly log: readonly LogLine[];
}

/** One line of a process's pino log (JSON on stderr); the program's own lines carry an `event`. */
export type LogLine = Readonly<Record<string, unknown>>;

export interface CliOptions {
  /** Added to this process's environment; AUTOPRUNE_LOG_LEVEL is info unless set here. */
  readonly env?: NodeJS.ProcessEnv;
  /** A command that runs node for us, e.g. `['ip', 'netns', 'exec', 'ns1']`. */
  readonly wrapper?: readonly string[];
}

/** Children still running, killed if the test process exits first, so that a crash leaves none behind. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export class CliProcess {
  private readonly child: ChildProcess;
  /** `autoprune <args>`, for messages. */
  readonly command: string;
  private out = '';
  private err = '';
  private unparsed = '';
  private readonly lines: LogLine[] = [];
  private readonly listeners = new Set<() => void>();
  private result: CliResult | undefined;
  /** Resolves once the process has exited and its output is read; tests wait with waitForExit, which has a deadline. */
  readonly exit: Promise<CliResult>;

  constructor(args: readonly string[], options: CliOptions = {}) {
    this.command = `autoprune ${args.join(' ')}`;
    const [program, ...before] = options.wrapper ?? [];
    const node = [process.execPath, CLI, ...args];
    this.child = spawn(program ?? node[0]!, program ? [...before, ...node] : node.slice(1), {
      env: { ...process.env, AUTOPRUNE_LOG_LEVEL: 'info', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(this.child);
    this.child.stdout!.setEncoding('utf8').on('data', (text: string) => (this.out += text));
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => this.readLog(text));
    this.exit = new Promise((resolve) => {
      const finish = (status: number | null, signal: NodeJS.Signals | null) => {
        if (this.result) return;
        running.delete(this.child);
        this.parseLine(this.unparsed);
        this.result = { status, signal, stdout: this.out, stderr: this.err, log: this.lines };
        resolve(this.result);
        this.notify();
      };
      // 'close' comes after the output streams ended, so the result holds all of it.
      this.child.once('close', finish);
      this.child.on('error', (error) => {
        if (this.child.pid !== undefined) return; // it runs; only a failed start ends it here
        this.err += `cannot start ${program ?? 'node'}: ${error.message}\n`;
        finish(null, null);
      });
    });
  }

  /** The log lines so far with this `event`, in order. */
  logLines(event: string): LogLine[] {
    return this.lines.filter((line) => line.event === event);
  }

  /** The first log line with this `event` that `match` accepts; fails when the process exits or time runs out first. */
  waitForLogLine(event: string, match: (line: LogLine) => boolean = () => true, timeoutMs = DEFAULT_WAIT_MS): Promise<LogLine> {
    const what = `a log line with event ${event}`;
    return new Promise((resolve, reject) => {
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        outcome();
      };
      const listener = () => {
        try {
          const found = this.lines.find((line) => line.event === event && match(line));
          if (found) settle(() => resolve(found));
          else if (this.result) settle(() => reject(new Error(`${this.command} ${this.describeExit()} before ${what}; its stderr ends:\n${this.tail()}`)));
        } catch (error) {
          settle(() => reject(error));
        }
      };
      const timer = setTimeout(
        () => settle(() => reject(new Error(`${this.command}: no ${what} within ${timeoutMs / 1000} s; its stderr ends:\n${this.tail()}`))),
        timeoutMs,
      );
      this.listeners.add(listener);
      listener();
    });
  }

  /** Resolves with the process's result; past the deadline it is killed, and the wait fails saying so. */
  async waitForExit(timeoutMs = DEFAULT_WAIT_MS): Promise<CliResult> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
    const outcome = await Promise.race([this.exit, late]);
    clearTimeout(timer);
    if (outcome !== 'late') return outcome;
    this.kill();
    await this.exit;
    throw new Error(`${this.command} did not exit within ${timeoutMs / 1000} s, so it was killed; its stderr ends:\n${this.tail()}`);
  }

  /** Sends `signal` unless the process has already exited. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.result) this.child.kill(signal);
  }

  /** The last part of stderr, for messages. */
  tail(characters = 3000): string {
    return this.err.slice(-characters);
  }

  private describeExit(): string {
    return this.result?.signal ? `was killed by ${this.result.signal}` : `exited with status ${this.result?.status}`;
  }

  private readLog(text: string): void {
    this.err += text;
    const parts = (this.unparsed + text).split('\n');
    this.unparsed = parts.pop()!;
    for (const part of parts) this.parseLine(part);
    this.notify();
  }

  private parseLine(line: string): void {
    // Lines that are not JSON (a crash's stack, a tool's warning) stay in stderr only.
    if (!line.startsWith('{')) return;
    try {
      this.lines.push(JSON.parse(line) as LogLine);
    } catch {
      // not JSON after all
    }
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

export function startCli(args: readonly string[], options: CliOptions = {}): CliProcess {
  return new CliProcess(args, options);
}

/** Runs the CLI to its end; killed and reported if it runs past `timeoutMs`. */
export function runCli(args: readonly string[], options: CliOptions & { timeoutMs?: number } = {}): Promise<CliResult> {
  return startCli(args, options).waitForExit(options.timeoutMs);
}
