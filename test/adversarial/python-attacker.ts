import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

/**
 * test/adversarial/coordinator_attacks.py as a process: the lines it prints (JSON), awaited by their
 * `event`, and the line on stdin that starts the attacks.
 */

const SCRIPT = join('test', 'adversarial', 'coordinator_attacks.py');

/** How one attack ended, as grpcio saw it. */
export interface AttackOutcome {
  readonly attack: string;
  /** The gRPC status code's name, e.g. UNAUTHENTICATED; OK when the call was accepted. */
  readonly code: string;
  readonly details: string;
  readonly trailing: Readonly<Record<string, string>>;
}

interface Line {
  readonly event: string;
}

export class PythonAttacker {
  private readonly child: ChildProcess;
  private readonly lines: Line[] = [];
  private output = '';
  private unparsed = '';
  private exited: number | null | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(python: string, coordinator: string, protocolVersion: number, joinToken: string) {
    this.child = spawn(python, [SCRIPT, coordinator, '--protocol-version', String(protocolVersion)], {
      env: { ...process.env, AUTOPRUNE_JOIN_TOKEN: joinToken },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout!.setEncoding('utf8').on('data', (text: string) => this.read(text));
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => (this.output += text));
    this.child.once('exit', (code) => {
      this.exited = code;
      this.notify();
    });
    this.child.once('error', (error) => {
      this.output += `cannot run ${python}: ${error.message}\n`;
      this.exited = null;
      this.notify();
    });
  }

  /** The attacks' outcomes so far, by name. */
  get outcomes(): ReadonlyMap<string, AttackOutcome> {
    const attacks = this.lines.filter((line) => line.event === 'attack') as unknown as AttackOutcome[];
    return new Map(attacks.map((outcome) => [outcome.attack, outcome]));
  }

  /** Resolves once the script has printed a line with this `event`; fails if it exits first or time runs out. */
  waitFor(event: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        outcome();
      };
      const listener = () => {
        if (this.lines.some((line) => line.event === event)) settle(resolve);
        else if (this.exited !== undefined) settle(() => reject(new Error(`the attack client exited (${this.exited}) before "${event}":\n${this.output}`)));
      };
      const timer = setTimeout(
        () => settle(() => reject(new Error(`the attack client printed no "${event}" within ${timeoutMs / 1000} s:\n${this.output}`))),
        timeoutMs,
      );
      this.listeners.add(listener);
      listener();
    });
  }

  /** Starts the attacks. */
  attack(): void {
    this.child.stdin!.write('attack\n');
  }

  /** Ends its heartbeats and waits for it to exit; resolves with its exit code and what it wrote to stderr. */
  async finish(): Promise<{ code: number | null; stderr: string }> {
    this.child.stdin!.end();
    if (this.exited === undefined) await new Promise((resolve) => this.child.once('close', resolve));
    return { code: this.exited ?? null, stderr: this.output };
  }

  kill(): void {
    if (this.exited === undefined) this.child.kill('SIGKILL');
  }

  private read(text: string): void {
    const parts = (this.unparsed + text).split('\n');
    this.unparsed = parts.pop()!;
    for (const part of parts) if (part.trim()) this.lines.push(JSON.parse(part) as Line);
    this.notify();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}
