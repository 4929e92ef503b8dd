import { parentPort } from 'node:worker_threads';

/** A DecodePool thread that dies on its first job, as a thread that crashes in native code would. */
parentPort?.on('message', () => {
  throw new Error('this decode thread dies on its first job');
});
