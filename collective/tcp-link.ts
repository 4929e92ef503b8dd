import type * as net from 'node:net';
import type { ChunkTag } from './chunk.js';
import type { SuccessorDock } from './dock.js';
import { CollectiveError, CollectiveTimeoutError } from './errors.js';
import { describeMember, type RingGroup, type RingMember } from './group.js';
import { leastLoaded, type OutboundLink } from './link.js';
import { closeGracefully } from './socket-close.js';
import { encodeChunkHeader, ReplyReader } from './tcp-frames.js';

/**
 * The sending side of the bulk TCP channel: the `streams` connections the successor opened to this
 * worker's listener. Chunks go out as a header and the payload in one writev, on the connection with
 * the least in flight; the successor only ever writes back to refuse something.
 */

export interface TcpLinkOptions {
  readonly group: RingGroup;
  readonly successor: RingMember;
  readonly streams: number;
  readonly timeoutMs: number;
  /** Bytes a connection may have in flight before the link stops taking chunks. */
  readonly inFlightLimit: number;
  readonly dock: SuccessorDock;
  /** Gives up waiting (the all-reducer's other half failed). */
  readonly signal: AbortSignal;
}

interface Connection {
  readonly socket: net.Socket;
  inFlightBytes: number;
}

/** Waits for the successor's connections (it opens them as it opens its own all-reducer). */
export async function openTcpLink(options: TcpLinkOptions): Promise<TcpLink> {
  const { group, successor } = options;
  const who = `successor ${describeMember(group, successor, successor.dataAddress)}`;
  let sockets: net.Socket[] | undefined;
  try {
    sockets = await options.dock.take(options.streams, options.timeoutMs, options.signal);
  } catch (error) {
    throw new CollectiveError(`${who} refused this worker's bulk connection: ${(error as Error).message}`, successor);
  }
  if (sockets === undefined && options.signal.aborted) throw new CollectiveError(`gave up waiting for ${who}`, successor);
  if (sockets === undefined)
    throw new CollectiveTimeoutError(`${who} did not open its ${options.streams} bulk connection(s) within ${options.timeoutMs} ms`, successor);
  return new TcpLink(options, sockets);
}

export class TcpLink implements OutboundLink {
  private readonly connections: Connection[];
  private failureListener: ((error: CollectiveError) => void) | undefined;
  private failure: CollectiveError | undefined;
  private closing = false;

  constructor(
    private readonly options: TcpLinkOptions,
    sockets: readonly net.Socket[],
  ) {
    this.connections = sockets.map((socket) => ({ socket, inFlightBytes: 0 }));
    for (const { socket } of this.connections) this.watch(socket);
  }

  get ready(): boolean {
    return this.failure === undefined && leastLoaded(this.connections, this.options.inFlightLimit) !== undefined;
  }

  send(tag: ChunkTag, payload: Uint8Array, written: () => void): void {
    const connection = leastLoaded(this.connections, Infinity)!;
    const { socket } = connection;
    const bytes = payload.length;
    connection.inFlightBytes += bytes;
    socket.cork();
    socket.write(encodeChunkHeader(tag, bytes));
    socket.write(payload, (error) => {
      connection.inFlightBytes -= bytes;
      if (!error) written();
    });
    socket.uncork();
  }

  onFailure(listener: (error: CollectiveError) => void): void {
    this.failureListener = listener;
    if (this.failure !== undefined) listener(this.failure);
  }

  async close(): Promise<void> {
    this.closing = true;
    await closeGracefully(
      this.connections.map(({ socket }) => socket),
      true,
    );
  }

  destroy(): void {
    this.closing = true;
    for (const { socket } of this.connections) socket.destroy();
  }

  private watch(socket: net.Socket): void {
    const replies = new ReplyReader();
    const { group, successor } = this.options;
    const who = `successor ${describeMember(group, successor, successor.dataAddress)}`;
    socket.on('data', (data: Buffer) => {
      try {
        const done = replies.push(data);
        if (done === undefined) return;
        this.failed(
          new CollectiveError(`${who} ${done.reply.accepted ? 'sent an unexpected reply' : `refused data: ${done.reply.refusal.message}`}`, successor),
        );
      } catch (error) {
        this.failed(new CollectiveError(`${who} sent a malformed reply: ${(error as Error).message}`, successor));
      }
    });
    socket.on('error', (error) => this.failed(new CollectiveError(`bulk connection to ${who} failed: ${error.message}`, successor, { cause: error })));
    socket.on('close', () => this.failed(new CollectiveError(`${who} closed its bulk connection`, successor)));
  }

  private failed(error: CollectiveError): void {
    if (this.closing || this.failure !== undefined) return;
    this.failure = error;
    for (const { socket } of this.connections) socket.destroy();
    this.failureListener?.(error);
  }
}
