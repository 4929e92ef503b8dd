import { parentPort, workerData } from 'node:worker_threads';
import type { CoordinatorCallError } from '../shared/rpc/call-error.js';
import { channelCredentials } from '../shared/rpc/security.js';
import { CoordinatorConnection } from './coordinator-client.js';
import type { HeartbeatThreadSettings, ToHeartbeatThread } from './heartbeat-thread.js';
import type { Beat } from './heartbeats.js';

/**
 * The heartbeat thread (started by heartbeat-thread.ts): once told a registration, it calls Heartbeat
 * every interval on its own connection, naming the generation the main thread last told it, and posts
 * each reply or failure back. Structured cloning turns the TLS Buffers into plain Uint8Arrays: they are
 * wrapped again before use.
 */

const settings = workerData as HeartbeatThreadSettings;
const port = parentPort!;
const { tls } = settings;
const coordinator = new CoordinatorConnection(
  settings.address,
  channelCredentials(tls && { cert: Buffer.from(tls.cert), key: Buffer.from(tls.key), ca: tls.ca && Buffer.from(tls.ca) }),
  settings.maxMessageBytes,
);
let generation = 0;
let timer: NodeJS.Timeout | undefined;

function beat(): void {
  coordinator.heartbeat(settings.workerId, generation).then(
    (reply) => post({ kind: 'reply', reply: { generation: reply.generation, state: reply.state, reason: reply.reason } }),
    (error: CoordinatorCallError) => post({ kind: 'failed', reason: error.reason, message: error.message }),
  );
}

function post(beat: Beat): void {
  port.postMessage(beat);
}

port.on('message', (message: ToHeartbeatThread) => {
  if (message.kind === 'generation') {
    generation = message.generation;
    return;
  }
  coordinator.adoptCredential(message.credential);
  generation = 0;
  clearInterval(timer);
  // The first beat goes at once: the coordinator counts silence from the registration.
  beat();
  timer = setInterval(beat, message.intervalMs);
});
