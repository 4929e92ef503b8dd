import * as net from 'node:net';
import * as tls from 'node:tls';
import { InputError } from '../shared/errors.js';
import type { TlsMaterial } from '../shared/rpc/security.js';
import { parseHostPort } from '../shared/rpc/server.js';
import type { CollectiveEndpoint } from './endpoint.js';
import { RefusalError } from './errors.js';
import { encodeAccepted, encodeRefusal, HelloReader, senderProof } from './tcp-frames.js';

/**
 * The listening side of the bulk TCP channel. The successor connects here to receive this worker's
 * chunks: its hello (worker id, generation, session key) is admitted through the endpoint, answered with
 * this worker's proof of the same key, and the connection waits in the generation's dock for the
 * all-reducer to send on it. Refusals are answered with a reply that says why, and the connection closes.
 */

export interface BulkListenerOptions {
  /** host:port to bind; port 0 picks a free one. */
  readonly bind: string;
  readonly tls?: TlsMaterial;
  /** Largest frame this worker's all-reducers accept from their predecessors (their own maxMessageBytes may be lower). */
  readonly maxFrameBytes: number;
}

export interface BulkListener {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A connection is closed unless its hello has arrived this long after it was accepted; with TLS, its
 * handshake must finish within the same time first. Both are deadlines, not idle timers, so a peer that
 * trickles bytes is closed as surely as one that sends nothing.
 */
export const HELLO_TIMEOUT_MS = 30_000;

export async function startBulkListener(endpoint: CollectiveEndpoint, options: BulkListenerOptions): Promise<BulkListener> {
  const { host, port } = parseHostPort(options.bind, 'bulk listener address');
  endpoint.limitBulkFrames(options.maxFrameBytes);
  const sockets = new Set<net.Socket>();
  const onSocket = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    greet(endpoint, socket);
  };
  const server = options.tls
    ? tls.createServer(
        {
          cert: options.tls.cert,
          key: options.tls.key,
          ca: options.tls.ca,
          requestCert: options.tls.ca !== undefined,
          rejectUnauthorized: options.tls.ca !== undefined,
          handshakeTimeout: HELLO_TIMEOUT_MS,
        },
        onSocket,
      )
    : net.createServer(onSocket);
  // Node leaves the connection open once a listener takes this error (a handshake that timed out included).
  server.on('tlsClientError', (error: Error, socket: tls.TLSSocket) => {
    endpoint.logger?.warn({ peer: socket.remoteAddress, err: error.message }, 'bulk channel: TLS handshake failed');
    socket.destroy();
  });
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', (error) => reject(new InputError(`bulk listener address ${options.bind}`, `cannot bind: ${error.message}`)));
    server.listen({ host, port }, () => resolve((server.address() as net.AddressInfo).port));
  });
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** Reads the successor's hello, admits it and answers; an admitted connection goes to the dock. */
function greet(endpoint: CollectiveEndpoint, socket: net.Socket): void {
  socket.setNoDelay(true);
  const hellos = new HelloReader();
  const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
  const stop = () => {
    clearTimeout(timer);
    socket.off('data', onData);
  };
  const onData = (data: Buffer) => {
    try {
      const done = hellos.push(data);
      if (done === undefined) return;
      stop();
      if (done.rest.length > 0) throw new RefusalError('protocol', 'bytes after the hello before it was answered');
      const { hello } = done;
      const dock = endpoint.admitSuccessor(hello);
      socket.write(encodeAccepted(senderProof(hello.sessionKey, hello.generation, endpoint.workerId, hello.workerId, hello.nonce)));
      dock.offer(socket);
    } catch (error) {
      stop();
      const refusal = error instanceof RefusalError ? error : new RefusalError('protocol', (error as Error).message);
      endpoint.logger?.warn({ peer: socket.remoteAddress, reason: refusal.reason, err: refusal.message }, 'bulk channel: refused');
      socket.end(encodeRefusal(refusal));
      setTimeout(() => socket.destroy(), 1000).unref();
    }
  };
  socket.on('data', onData);
  socket.on('error', (error) => endpoint.logger?.debug({ peer: socket.remoteAddress, err: error.message }, 'bulk channel: connection error'));
  socket.once('close', () => clearTimeout(timer));
}
