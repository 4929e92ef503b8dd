import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { InputError } from '../errors.js';
import { formatHostPort } from '../rpc/server.js';

/**
 * The Prometheus endpoint of one process: GET /metrics answers the registry's exposition text; anything
 * else is 404. Bound exactly where configured (the host the process already serves on), like every
 * server here. Read-only, and it carries no secrets.
 */

export interface MetricsServer {
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  close(): Promise<void>;
}

export async function serveMetrics(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the metrics are at GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`),
    );
  });
  // A scraper keeps its connection alive between scrapes; nothing else should hold one open for long.
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new InputError(`metrics address ${formatHostPort(host, port)}`, `cannot bind: ${error.message}`)));
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
