import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { secretsEqual, type TlsMaterial } from '../shared/rpc/security.js';
import { parseHostPort } from '../shared/rpc/server.js';
import { CollectiveError, CollectiveTimeoutError, RefusalError } from './errors.js';
import { describeMember, type RingGroup, type RingMember } from './group.js';
import type { ChunkInbox } from './inbox.js';
import { closeGracefully } from './socket-close.js';
import { encodeHello, encodeRefusal, FrameReader, NONCE_BYTES, ReplyReader, senderProof } from './tcp-frames.js';

/**
 * The receiving side of the bulk TCP channel: `streams` connections to the predecessor's listener. The
 * hello presents this worker; the predecessor must answer with proof of the session key. Then its chunk
 * frames are parsed straight into the generation's inbox. Without TLS, reads go into a reused buffer
 * that stays in cache, or, for all-gather payloads, straight into their destination (Node's `onread`),
 * instead of a fresh buffer per read.
 */

export interface TcpInboundOptions {
  readonly group: RingGroup;
  readonly predecessor: RingMember;
  readonly streams: number;
  readonly timeoutMs: number;
  readonly maxFrameBytes: number;
  readonly tls: TlsMaterial | undefined;
  readonly inbox: ChunkInbox;
  /** Gives up (the all-reducer's other half failed). */
  readonly signal: AbortSignal;
  /** The reused read buffer of connection `index` (not used with TLS). */
  readonly readBuffer: (index: number) => Buffer;
}

/** Pause between attempts while the predecessor is not listening yet or has not reached the generation. */
const RETRY_MS = 50;

/** Waiting this long for the predecessor to end its connections on close, before cutting them. */

export class TcpInbound {
  private closing = false;

  constructor(private readonly connections: readonly InboundConnection[]) {
    for (const connection of connections) {
      const events = connection.inbox.connectionOpened();
      connection.onEnd = (problem, failed) => {
        if (this.closing) return;
        if (failed) events.failed(problem);
        else events.ended(problem);
      };
    }
  }

  /**
   * Waits (briefly) for the predecessor to end its side first, then frees the connections: cutting a
   * connection the predecessor is still finishing a write on would fail its last all-reduce.
   */
  async close(): Promise<void> {
    this.closing = true;
    await closeGracefully(
      this.connections.map(({ socket }) => socket),
      false,
    );
  }

  /** Cuts the connections now: after a failure, nothing may land in the arrays any more. */
  destroy(): void {
    this.closing = true;
    for (const connection of this.connections) connection.socket.destroy();
  }
}

export async function openTcpInbound(options: TcpInboundOptions): Promise<TcpInbound> {
  const deadline = Date.now() + options.timeoutMs;
  // One connection refused: the others stop trying, and its error is the one reported.
  const giveUp = new AbortController();
  const signal = AbortSignal.any([options.signal, giveUp.signal]);
  let firstFailure: unknown;
  const opened = await Promise.allSettled(
    Array.from({ length: options.streams }, (_, index) =>
      connectWithRetries({ ...options, signal }, index, deadline).catch((error: unknown) => {
        firstFailure ??= error;
        giveUp.abort();
        throw error;
      }),
    ),
  );
  const connections = opened.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  if (connections.length < options.streams) {
    for (const connection of connections) connection.socket.destroy();
    throw firstFailure;
  }
  return new TcpInbound(connections);
}

async function connectWithRetries(options: TcpInboundOptions, index: number, deadline: number): Promise<InboundConnection> {
  const { group, predecessor } = options;
  const who = `predecessor ${describeMember(group, predecessor, predecessor.dataAddress)}`;
  let lastProblem = 'no answer';
  while (Date.now() < deadline && !options.signal.aborted) {
    const connection = new InboundConnection(options, index, deadline);
    try {
      await connection.opened;
      return connection;
    } catch (error) {
      connection.socket.destroy();
      if (error instanceof RefusalError && !error.retryable) throw new CollectiveError(`${who} refused the bulk connection: ${error.message}`, predecessor);
      if (error instanceof CollectiveError) throw error;
      if (error instanceof HelloTimeout || options.signal.aborted) break;
      lastProblem = error instanceof Error ? error.message : String(error);
      await new Promise((resolve) => setTimeout(resolve, Math.min(RETRY_MS, Math.max(0, deadline - Date.now()))));
    }
  }
  if (options.signal.aborted) throw new CollectiveError(`gave up connecting to ${who}`, predecessor);
  throw new CollectiveTimeoutError(`${who} did not answer a bulk connection within ${options.timeoutMs} ms (last: ${lastProblem})`, predecessor);
}

class HelloTimeout extends Error {}

/** One connection: hello, then frames; `opened` settles when the predecessor has answered. */
class InboundConnection {
  readonly socket: net.Socket;
  readonly inbox: ChunkInbox;
  readonly opened: Promise<void>;
  /** Set once open: told why the connection ended, and whether in failure (chunks may be lost) or in order. */
  onEnd: ((problem: string, failed: boolean) => void) | undefined;
  private readonly replies = new ReplyReader();
  private readonly frames: FrameReader;
  private readonly nonce = randomBytes(NONCE_BYTES);
  private readingDirectly = false;
  private state: 'hello' | 'frames' | 'ended' = 'hello';
  private settle!: (error?: Error) => void;

  constructor(
    private readonly options: TcpInboundOptions,
    index: number,
    deadline: number,
  ) {
    this.inbox = options.inbox;
    this.frames = new FrameReader(options.maxFrameBytes, (tag, payloadBytes) => this.inbox.begin(tag, payloadBytes));
    const { host, port } = parseHostPort(options.predecessor.dataAddress, `data address of worker ${options.predecessor.workerId}`);
    if (options.tls) {
      // TLS decrypts into buffers of its own: no choosing where reads go.
      this.socket = tls.connect({ host, port, cert: options.tls.cert, key: options.tls.key, ca: options.tls.ca });
      this.socket.on('data', (data: Buffer) => this.consume(data));
    } else {
      const readBuffer = options.readBuffer(index);
      const onread = {
        buffer: () => this.nextReadBuffer(readBuffer),
        callback: (bytes: number) => {
          this.onRead(bytes, readBuffer);
          return true;
        },
      };
      this.socket = net.connect({ host, port, onread });
    }
    this.socket.setNoDelay(true);
    this.opened = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(new HelloTimeout('no answer to the hello')), Math.max(0, deadline - Date.now()));
      this.settle = (error) => {
        clearTimeout(timer);
        this.settle = () => {};
        options.signal.removeEventListener('abort', abort);
        if (error) reject(error);
        else resolve();
      };
      const abort = () => this.settle(new Error('gave up'));
      options.signal.addEventListener('abort', abort);
    });
    this.socket.once(options.tls ? 'secureConnect' : 'connect', () => {
      const { group } = options;
      this.socket.write(
        encodeHello({ workerId: group.ring[group.rank]!.workerId, generation: group.generation, sessionKey: group.sessionKey, nonce: this.nonce }),
      );
    });
    this.socket.on('error', (error) => this.ended(`bulk connection failed: ${error.message}`, error));
    this.socket.on('close', (hadError: boolean) =>
      this.ended(hadError ? 'bulk connection failed' : 'closed its bulk connections', hadError ? new Error('connection failed') : undefined),
    );
  }

  /**
   * Where the next read goes: straight into the destination when it is an all-gather payload; otherwise
   * into the reused buffer, but no further than the end of the current header or payload, so that the
   * next payload can again go straight to where it belongs (one more read per chunk, one copy less).
   */
  private nextReadBuffer(readBuffer: Buffer): Uint8Array {
    if (this.state !== 'frames') return readBuffer;
    const direct = this.frames.readTarget();
    this.readingDirectly = direct !== undefined;
    return direct ?? readBuffer.subarray(0, Math.min(readBuffer.length, this.frames.bytesToBoundary()));
  }

  private onRead(bytes: number, readBuffer: Buffer): void {
    if (this.state === 'ended') return;
    if (this.readingDirectly) this.guard(() => this.frames.pushedDirectly(bytes));
    else this.consume(readBuffer.subarray(0, bytes));
  }

  private consume(data: Buffer): void {
    if (this.state === 'frames') {
      this.guard(() => this.frames.push(data));
      return;
    }
    if (this.state !== 'hello') return;
    try {
      const done = this.replies.push(data);
      if (done === undefined) return;
      if (!done.reply.accepted) {
        this.fail(done.reply.refusal);
        return;
      }
      const { group, predecessor } = this.options;
      const expected = senderProof(group.sessionKey, group.generation, predecessor.workerId, group.ring[group.rank]!.workerId, this.nonce);
      if (!secretsEqual(done.reply.proof, expected)) {
        const refusal = new RefusalError(
          'unauthenticated',
          `worker ${predecessor.workerId} did not prove it holds generation ${group.generation}'s session key`,
        );
        this.socket.end(encodeRefusal(refusal));
        this.fail(new CollectiveError(`predecessor ${describeMember(group, predecessor, predecessor.dataAddress)} refused: ${refusal.message}`, predecessor));
        return;
      }
      this.state = 'frames';
      this.settle();
      if (done.rest.length > 0) this.guard(() => this.frames.push(done.rest));
    } catch (error) {
      this.fail(error as Error);
    }
  }

  /** Runs frame parsing; a refused frame is answered with the reason, and the connection ends. */
  private guard(parse: () => void): void {
    try {
      parse();
    } catch (error) {
      const refusal = error instanceof RefusalError ? error : new RefusalError('protocol', (error as Error).message);
      this.state = 'ended';
      this.socket.end(encodeRefusal(refusal));
      setTimeout(() => this.socket.destroy(), 1000).unref();
      this.onEnd?.(`sent a chunk that was refused: ${refusal.message}`, true);
    }
  }

  private fail(error: Error): void {
    this.state = 'ended';
    this.settle(error);
  }

  private ended(problem: string, error?: Error): void {
    if (this.state === 'hello') {
      this.fail(error ?? new Error(problem));
      return;
    }
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.onEnd?.(problem, error !== undefined);
  }
}
