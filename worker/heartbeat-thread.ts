import { Worker } from 'node:worker_threads';
import type { TlsMaterial } from '../shared/rpc/security.js';
import type { Beat, HeartbeatRegistration, HeartbeatsFactory } from './heartbeats.js';

/**
 * Heartbeats from a thread of their own (node:worker_threads), with their own gRPC connection to the
 * coordinator: a main thread that blocks its event loop (backend setup, a large synchronous data load, a
 * long step on a contended CPU) cannot starve them, as torchelastic keeps its agent apart from the
 * training it watches. The main thread tells the thread the registration and the current generation by
 * message; the thread posts back each reply or failure. A thread that dies is reported as a crash; the
 * thread never keeps the process alive, and closing the source ends it.
 */

/** What the thread needs to call Heartbeat on its own connection (heartbeat-thread-entry.ts). */
export interface HeartbeatThreadSettings {
  /** host:port of the coordinator. */
  readonly address: string;
  readonly tls: TlsMaterial | undefined;
  readonly maxMessageBytes: number;
  readonly workerId: string;
}

/** Messages from the main thread to the heartbeat thread. */
export type ToHeartbeatThread = ({ readonly kind: 'register' } & HeartbeatRegistration) | { readonly kind: 'generation'; readonly generation: number };

const ENTRY = new URL('./heartbeat-thread-entry.js', import.meta.url);

export function threadHeartbeats(settings: HeartbeatThreadSettings): HeartbeatsFactory {
  return (report) => {
    const thread = new Worker(ENTRY, { workerData: settings });
    /** Set once closed or crashed: a thread reports its end once, and nothing after close. */
    let ended = false;
    const crash = (message: string) => {
      if (ended) return;
      ended = true;
      report({ kind: 'crashed', message });
    };
    thread.on('message', (beat: Beat) => {
      if (!ended) report(beat);
    });
    thread.on('error', (error: Error) => crash(`the heartbeat thread crashed: ${error.message}`));
    thread.on('exit', (code) => crash(`the heartbeat thread exited with status ${code}`));
    // After the listeners: adding one refs the thread again.
    thread.unref();
    const send = (message: ToHeartbeatThread) => thread.postMessage(message);
    return {
      beatFor: (registration) => send({ kind: 'register', ...registration }),
      enterGeneration: (generation) => send({ kind: 'generation', generation }),
      close: async () => {
        ended = true;
        await thread.terminate();
      },
    };
  };
}
