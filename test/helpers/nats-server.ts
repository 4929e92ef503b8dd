import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { connect, createServer } from 'node:net';
import { delimiter, join } from 'node:path';

/**
 * A real nats-server for tests. test/run.sh installs it when missing; when it is still not there the
 * tests fail with instructions rather than skip, since a skipped NATS test proves nothing.
 */

export interface NatsServer {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** The server named by AUTOPRUNE_TEST_NATS_URL when set (then stop() leaves it running), else a fresh one. */
export async function natsServerForTests(): Promise<NatsServer> {
  const shared = process.env.AUTOPRUNE_TEST_NATS_URL;
  if (!shared) return startNatsServer();
  return { url: shared, port: Number(new URL(shared).port), stop: async () => {} };
}

/** Starts nats-server on 127.0.0.1 (a free port unless `port` is given) and waits until it accepts connections. */
export async function startNatsServer(options: { port?: number } = {}): Promise<NatsServer> {
  const binary = findNatsServer();
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    try {
      return await launch(binary, port);
    } catch (error) {
      // Another process may take the free port between our probe and the server's bind.
      if (options.port !== undefined || attempt === 3 || !/address already in use/i.test((error as Error).message)) throw error;
    }
  }
}

async function launch(binary: string, port: number): Promise<NatsServer> {
  const child = spawn(binary, ['-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<never>((_, reject) => {
    child.once('error', (error) => reject(new Error(`cannot start ${binary}: ${error.message}`)));
    child.once('exit', (code, signal) =>
      reject(new Error(`nats-server on port ${port} exited (${signal ?? `status ${code}`}) before accepting connections:\n${output}`)),
    );
  });
  exited.catch(() => {});
  // A crashed test run must not leave servers behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  try {
    await Promise.race([waitUntilAccepting(port, 10_000), exited]);
  } catch (error) {
    process.off('exit', killOnExit);
    child.kill('SIGKILL');
    throw error;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    stop: async () => {
      process.off('exit', killOnExit);
      await stopProcess(child);
    },
  };
}

function findNatsServer(): string {
  // Debian installs it in /usr/sbin, which is not on every user's PATH.
  const directories = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin'];
  for (const directory of directories) {
    const candidate = join(directory, 'nats-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next directory
    }
  }
  throw new Error(
    'nats-server is not installed (looked on PATH, /usr/sbin and /usr/local/sbin); the NATS tests need a real server. ' +
      'Run the tests with `npm test` (test/run.sh installs it), or install it yourself: `sudo apt-get install nats-server` ' +
      'on Debian/Ubuntu, or a release from https://github.com/nats-io/nats-server/releases on PATH.',
  );
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('could not find a free port');
  return address.port;
}

async function waitUntilAccepting(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(port))) {
    if (Date.now() > deadline) throw new Error(`nats-server did not accept connections on port ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const forceKill = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(forceKill);
}
