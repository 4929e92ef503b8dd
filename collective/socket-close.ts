import type { Socket } from 'node:net';

/** How long a closing side waits for its peer to finish and close before cutting the connection. */
export const CLOSE_GRACE_MS = 2000;

/**
 * Closes sockets without cutting a peer mid-write: waits for each to close (ending our side first when
 * `end` is set), and destroys the ones still open after the grace period.
 */
export function closeGracefully(sockets: readonly Socket[], end: boolean): Promise<void> {
  return Promise.all(
    sockets.map(
      (socket) =>
        new Promise<void>((resolve) => {
          if (socket.destroyed) return resolve();
          const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
          socket.once('close', () => {
            clearTimeout(timer);
            resolve();
          });
          if (end) socket.end();
        }),
    ),
  ).then(() => undefined);
}
