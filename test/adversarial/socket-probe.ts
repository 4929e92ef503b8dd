import * as http2 from 'node:http2';
import * as net from 'node:net';

/**
 * Hostile clients of a listening port on loopback, each one connection: one that sends bytes and waits,
 * one that never sends, one that trickles bytes (slowloris), and a gRPC call whose length prefix announces
 * a message far over any limit. Each reports when the listener closed the connection, or fails when it
 * was still open after a limit.
 */

/** What a probe saw: the listener closed its connection `afterMs` after it connected. */
export interface ProbeOutcome {
  readonly afterMs: number;
  /** What the listener sent before closing. */
  readonly received: Buffer;
  /** Bytes the probe had sent by then. */
  readonly sent: number;
}

export type ProbeBehaviour =
  /** Sends `bytes` once, then waits. */
  | { readonly kind: 'send'; readonly bytes: Buffer }
  /** Connects and sends nothing: a half-open connection. */
  | { readonly kind: 'silent' }
  /** Sends `bytes` one byte every `everyMs`. */
  | { readonly kind: 'trickle'; readonly bytes: Buffer; readonly everyMs: number };

/** Connects to 127.0.0.1:`port`, behaves as told, and resolves once the listener closes the connection. */
export function probe(port: number, behaviour: ProbeBehaviour, limitMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let sent = 0;
    let connectedAt = Date.now();
    let trickle: NodeJS.Timeout | undefined;
    const limit = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${describe(behaviour)} to port ${port}: the connection was still open ${limitMs} ms after it was accepted`));
    }, limitMs);
    socket.on('data', (data: Buffer) => received.push(data));
    // A reset is the listener closing too; only the moment matters.
    socket.on('error', () => {});
    socket.once('connect', () => {
      connectedAt = Date.now();
      if (behaviour.kind === 'send') {
        socket.write(behaviour.bytes);
        sent = behaviour.bytes.length;
      } else if (behaviour.kind === 'trickle') {
        trickle = setInterval(() => {
          if (sent < behaviour.bytes.length && !socket.destroyed) socket.write(behaviour.bytes.subarray(sent, ++sent));
        }, behaviour.everyMs);
      }
    });
    socket.once('close', () => {
      clearTimeout(limit);
      clearInterval(trickle);
      resolve({ afterMs: Date.now() - connectedAt, received: Buffer.concat(received), sent });
    });
  });
}

function describe(behaviour: ProbeBehaviour): string {
  if (behaviour.kind === 'send') return `a probe that sent ${behaviour.bytes.length} bytes`;
  if (behaviour.kind === 'silent') return 'a silent probe';
  return `a probe trickling a byte every ${behaviour.everyMs} ms`;
}

/** The status a gRPC call ended with, as the raw HTTP/2 response carried it. */
export interface GrpcOutcome {
  readonly status: number;
  readonly message: string;
}

/**
 * Calls `path` on the gRPC server at 127.0.0.1:`port` with a message whose 5-byte gRPC prefix announces
 * `announcedBytes`, followed by `sentBytes` bytes of it, and resolves with the status the server answers.
 */
export function announceOversizedMessage(port: number, path: string, announcedBytes: number, sentBytes: number, limitMs: number): Promise<GrpcOutcome> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const finish = (outcome: () => void) => {
      clearTimeout(limit);
      session.destroy();
      outcome();
    };
    const limit = setTimeout(() => finish(() => reject(new Error(`${path}: no status within ${limitMs} ms of announcing ${announcedBytes} bytes`))), limitMs);
    session.on('error', (error) => finish(() => reject(error)));
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    const settle = (headers: http2.IncomingHttpHeaders) => {
      const status = headers['grpc-status'];
      if (status === undefined) return;
      finish(() => resolve({ status: Number(status), message: decodeURIComponent(String(headers['grpc-message'] ?? '')) }));
    };
    // A refusal before any reply is "trailers only": the status comes with the headers.
    stream.on('response', settle);
    stream.on('trailers', settle);
    stream.on('error', () => {});
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(announcedBytes, 1);
    stream.write(prefix);
    stream.write(Buffer.alloc(sentBytes, 0x5a));
  });
}
