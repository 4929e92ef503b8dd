import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { PROTOCOL_VERSION } from '../../shared/proto/load.js';
import { CoordinatorCallError } from '../../shared/rpc/call-error.js';
import { readTlsMaterial } from '../../shared/rpc/security.js';
import { CoordinatorConnection } from '../../worker/coordinator-client.js';
import { type CliProcess, startCli } from '../helpers/cli.js';
import { issueTestCertificates } from '../helpers/tls.js';

/**
 * `--health-listen`: a coordinator and a worker with TLS on answer grpc.health.v1 in plaintext on their
 * health-only port (what Kubernetes' native gRPC probes need), and serve nothing else there.
 */

const TOKEN = 'health-port-join-token-0123456789';

type HealthClient = grpc.Client & {
  Check(request: { service: string }, callback: (error: grpc.ServiceError | null, reply?: { status: string }) => void): void;
};

function healthClient(address: string, credentials: grpc.ChannelCredentials): HealthClient {
  const definition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
  const health = grpc.loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: { Health: typeof grpc.Client } } } };
  return new health.grpc.health.v1.Health(address, credentials) as HealthClient;
}

function check(client: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) => client.Check({ service }, (error, reply) => (error ? reject(error) : resolve(reply!.status))));
}

async function portFrom(process: CliProcess, event: string, field: string): Promise<number> {
  const line = await process.waitForLogLine(event);
  return line[field] as number;
}

describe('the health-only port (--health-listen)', function () {
  this.timeout(120_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-health-'));
  const files = issueTestCertificates(root, 'health');
  const tls = ['--tls-cert', files.cert, '--tls-key', files.key, '--tls-ca', files.ca];
  const env = { AUTOPRUNE_JOIN_TOKEN: TOKEN };
  const processes: CliProcess[] = [];
  after(async () => {
    for (const process of processes) {
      process.kill();
      await process.waitForExit();
    }
    rmSync(root, { recursive: true, force: true });
  });

  it('a coordinator with TLS answers health in plaintext there, and refuses its own RPCs there as UNIMPLEMENTED', async () => {
    const coordinator = startCli(
      ['coordinator', 'examples/quickstart-mnist.yaml', '--workers', '1', '--out', join(root, 'run'), '--listen', '127.0.0.1:0', ...tls],
      // The variable, as the manifests set it.
      { env: { ...env, AUTOPRUNE_HEALTH_LISTEN: '127.0.0.1:0' } },
    );
    processes.push(coordinator);
    const healthPort = await portFrom(coordinator, 'health.listening', 'port');
    const grpcPort = await portFrom(coordinator, 'coordinator.listening', 'port');
    assert.notEqual(healthPort, grpcPort);

    const plain = healthClient(`127.0.0.1:${healthPort}`, grpc.credentials.createInsecure());
    assert.equal(await check(plain, ''), 'SERVING');
    assert.equal(await check(plain, 'autoprune.v1.Coordinator'), 'SERVING');
    plain.close();
    // The same status as the TLS server's own Health, which plaintext cannot reach.
    const material = readTlsMaterial(files);
    const secure = healthClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createSsl(material.ca, material.key, material.cert));
    assert.equal(await check(secure, 'autoprune.v1.Coordinator'), 'SERVING');
    secure.close();

    const misdirected = new CoordinatorConnection(`127.0.0.1:${healthPort}`, grpc.credentials.createInsecure(), 1 << 20);
    await assert.rejects(
      misdirected.register({ workerId: 'w', address: '127.0.0.1:1', dataAddress: '127.0.0.1:2', joinToken: TOKEN, protocolVersion: PROTOCOL_VERSION }),
      (error: unknown) => error instanceof CoordinatorCallError && error.code === grpc.status.UNIMPLEMENTED,
    );
    misdirected.close();
  });

  it('a worker with TLS serves it too, while it waits for its coordinator', async () => {
    // Port 1 on loopback has no coordinator: the worker keeps retrying its registration, health up meanwhile.
    const worker = startCli(
      ['worker', '--coordinator', '127.0.0.1:1', '--listen', '127.0.0.1:0', '--data-listen', '127.0.0.1:0', '--health-listen', '127.0.0.1:0', ...tls],
      { env },
    );
    processes.push(worker);
    const healthPort = await portFrom(worker, 'health.listening', 'port');
    const plain = healthClient(`127.0.0.1:${healthPort}`, grpc.credentials.createInsecure());
    assert.equal(await check(plain, 'autoprune.v1.Collective'), 'SERVING');
    plain.close();
  });
});
