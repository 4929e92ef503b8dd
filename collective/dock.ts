import type * as net from 'node:net';
import { RefusalError } from './errors.js';
import { ReplyReader } from './tcp-frames.js';

/**
 * Bulk connections that this worker's successor opened to receive chunks (admitted by the listener),
 * kept for the generation's all-reducer, which takes them as its sending side. A connection that closes
 * or is refused while it waits here is dropped; a refusal is passed on to whoever waits.
 */
export class SuccessorDock {
  private readonly docked: net.Socket[] = [];
  private readonly detach = new Map<net.Socket, () => void>();
  private waiter: { readonly count: number; readonly resolve: (sockets: net.Socket[]) => void; readonly reject: (error: Error) => void } | undefined;
  private closedBecause: string | undefined;
  /** The successor refused a connection (it doubts this worker's key): reported to the next taker too. */
  private refusal: RefusalError | undefined;

  offer(socket: net.Socket): void {
    if (this.closedBecause !== undefined) {
      socket.destroy();
      return;
    }
    const replies = new ReplyReader();
    const drop = () => this.remove(socket);
    const onData = (data: Buffer) => {
      try {
        const done = replies.push(data);
        if (done !== undefined && !done.reply.accepted) {
          drop();
          socket.destroy();
          this.refusal = done.reply.refusal;
          this.waiter?.reject(this.refusal);
          this.waiter = undefined;
        }
      } catch {
        drop();
        socket.destroy();
      }
    };
    socket.on('data', onData);
    socket.on('close', drop);
    this.detach.set(socket, () => {
      socket.off('data', onData);
      socket.off('close', drop);
    });
    this.docked.push(socket);
    this.handOver();
  }

  /** Waits for `count` connections; resolves with undefined after `timeoutMs` or when `signal` aborts. */
  take(count: number, timeoutMs: number, signal: AbortSignal): Promise<net.Socket[] | undefined> {
    if (this.closedBecause !== undefined) return Promise.reject(new Error(`generation is over: ${this.closedBecause}`));
    if (this.refusal !== undefined) return Promise.reject(this.refusal);
    if (this.waiter !== undefined) return Promise.reject(new Error("another all-reducer already waits for this generation's successor"));
    return new Promise<net.Socket[] | undefined>((resolve, reject) => {
      const giveUp = () => {
        this.waiter = undefined;
        done();
        resolve(undefined);
      };
      const timer = setTimeout(giveUp, timeoutMs);
      signal.addEventListener('abort', giveUp);
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', giveUp);
      };
      this.waiter = {
        count,
        resolve: (sockets) => {
          done();
          resolve(sockets);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      };
      this.handOver();
    });
  }

  close(reason: string): void {
    if (this.closedBecause !== undefined) return;
    this.closedBecause = reason;
    for (const socket of [...this.docked]) {
      this.remove(socket);
      socket.destroy();
    }
    this.waiter?.reject(new RefusalError('stale-generation', `generation is over: ${reason}`));
    this.waiter = undefined;
  }

  private handOver(): void {
    const waiter = this.waiter;
    if (waiter === undefined || this.docked.length < waiter.count) return;
    this.waiter = undefined;
    const sockets = this.docked.splice(0, waiter.count);
    for (const socket of sockets) {
      this.detach.get(socket)!();
      this.detach.delete(socket);
    }
    waiter.resolve(sockets);
  }

  private remove(socket: net.Socket): void {
    const index = this.docked.indexOf(socket);
    if (index >= 0) this.docked.splice(index, 1);
    this.detach.get(socket)?.();
    this.detach.delete(socket);
  }
}
