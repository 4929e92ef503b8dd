import { parentPort } from 'node:worker_threads';
import { DecodeError, decodeImage } from './decode.js';
import type { ImageTransform } from './transforms.js';

/**
 * The body of one DecodePool thread (decode-pool.ts): decodes each job it is sent and posts the pixels back
 * by transfer. An undecodable image is an answer (`bad`); anything else thrown is a fault in this code and
 * goes back as `fault`, for the pool to fail the call with.
 */

export interface DecodeRequest {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly transform: ImageTransform;
}

export type DecodeResponse =
  | { readonly id: number; readonly pixels: Uint8Array }
  | { readonly id: number; readonly bad: string }
  | { readonly id: number; readonly fault: string };

if (!parentPort) throw new Error('decode-thread.js runs only as a DecodePool thread');
const port = parentPort;

port.on('message', async ({ id, bytes, transform }: DecodeRequest) => {
  let response: DecodeResponse;
  try {
    response = { id, pixels: await decodeImage(bytes, transform) };
  } catch (error) {
    response =
      error instanceof DecodeError ? { id, bad: error.message } : { id, fault: error instanceof Error ? (error.stack ?? error.message) : String(error) };
  }
  port.postMessage(response, 'pixels' in response ? [response.pixels.buffer as ArrayBuffer] : []);
});
