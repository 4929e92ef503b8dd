import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { InputError } from '../shared/errors.js';
import { readTlsMaterial, type TlsMaterial } from '../shared/rpc/security.js';
import { parseHostPort } from '../shared/rpc/server.js';
import { parseDuration } from './duration.js';
import { DEFAULT_GRACE_PERIOD } from './signals.js';

/**
 * Deployment settings of the distributed commands, from flags or the environment (Kubernetes passes
 * them as env vars: the pod IP through the downward API, the join token from a Secret). They are not
 * part of the run config: every worker of a run shares the config, but each has its own addresses.
 */

/** The options the three distributed commands share; each is also read from its environment variable. */
export const CLUSTER_OPTIONS = {
  'tls-cert': { type: 'string', value: 'PEM', description: "this process's TLS certificate (TLS needs it and --tls-key)", env: 'AUTOPRUNE_TLS_CERT' },
  'tls-key': { type: 'string', value: 'PEM', description: "the certificate's private key", env: 'AUTOPRUNE_TLS_KEY' },
  'tls-ca': { type: 'string', value: 'PEM', description: "the CA that signs the peers' certificates", env: 'AUTOPRUNE_TLS_CA' },
  'join-token-file': {
    type: 'string',
    value: 'PATH',
    description: 'a file holding the join token (a mounted Secret)',
    defaultText: 'AUTOPRUNE_JOIN_TOKEN',
    env: 'AUTOPRUNE_JOIN_TOKEN_FILE',
  },
  'max-message-mb': { type: 'string', value: 'N', description: 'the largest gRPC message, in MiB', default: '64', env: 'AUTOPRUNE_MAX_MESSAGE_MB' },
  'health-listen': {
    type: 'string',
    value: 'HOST:PORT',
    description: 'a plaintext port serving only grpc.health.v1 (for Kubernetes gRPC probes when TLS is on)',
    defaultText: 'none',
    env: 'AUTOPRUNE_HEALTH_LISTEN',
  },
  'grace-period': {
    type: 'string',
    value: 'DURATION',
    description: 'how long a stop signal (SIGTERM, SIGINT) leaves for the final checkpoint, e.g. 20s or 1m',
    default: DEFAULT_GRACE_PERIOD,
    env: 'AUTOPRUNE_GRACE_PERIOD',
  },
  'metrics-port': {
    type: 'string',
    value: 'PORT',
    description: 'serves Prometheus metrics on this port (0: any free port) at /metrics',
    defaultText: 'no endpoint',
    env: 'AUTOPRUNE_METRICS_PORT',
  },
} as const;

export const JOIN_TOKEN_ENVIRONMENT = {
  name: 'AUTOPRUNE_JOIN_TOKEN',
  description: 'the secret every worker of the run presents (at least 16 characters), unless --join-token-file names a file',
} as const;

export interface ClusterFlagValues {
  readonly 'tls-cert'?: string | undefined;
  readonly 'tls-key'?: string | undefined;
  readonly 'tls-ca'?: string | undefined;
  readonly 'join-token-file'?: string | undefined;
  readonly 'max-message-mb'?: string | undefined;
  readonly 'grace-period'?: string | undefined;
  readonly 'metrics-port'?: string | undefined;
}

export function tlsFrom(values: ClusterFlagValues): TlsMaterial | undefined {
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  const ca = values['tls-ca'];
  if (cert === undefined && key === undefined && ca === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new InputError('--tls-cert/--tls-key', 'TLS needs both a certificate and its key', { found: cert === undefined ? 'no certificate' : 'no key' });
  }
  return readTlsMaterial({ cert, key, ...(ca === undefined ? {} : { ca }) });
}

/** The TLS files as environment variables, for the worker processes the embedded launcher starts. */
export function tlsEnvironment(values: ClusterFlagValues): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const files = [
    ['AUTOPRUNE_TLS_CERT', values['tls-cert']],
    ['AUTOPRUNE_TLS_KEY', values['tls-key']],
    ['AUTOPRUNE_TLS_CA', values['tls-ca']],
  ] as const;
  for (const [variable, path] of files) if (path !== undefined) env[variable] = resolve(path);
  return env;
}

/** The join token: AUTOPRUNE_JOIN_TOKEN, or the file --join-token-file names (a mounted Secret). */
export function joinTokenFrom(values: ClusterFlagValues): string {
  const file = values['join-token-file'];
  let token: string | undefined;
  if (file !== undefined) {
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (error) {
      throw new InputError(file, 'cannot read the join token file', { found: (error as NodeJS.ErrnoException).code ?? String(error) });
    }
  } else token = process.env.AUTOPRUNE_JOIN_TOKEN;
  if (!token) throw new InputError('join token', 'is missing', { expected: 'AUTOPRUNE_JOIN_TOKEN in the environment or --join-token-file PATH' });
  if (token.length < 16) throw new InputError('join token', 'is too short to be a secret', { expected: 'at least 16 characters' });
  return token;
}

export function maxMessageBytesFrom(values: ClusterFlagValues): number {
  const text = values['max-message-mb'] ?? '64';
  const mb = Number(text);
  if (!Number.isFinite(mb) || mb < 1 || mb > 2047)
    throw new InputError('--max-message-mb', 'is not a size in MiB between 1 and 2047', { found: JSON.stringify(text) });
  return Math.round(mb * (1 << 20));
}

/** --grace-period (AUTOPRUNE_GRACE_PERIOD): how long a stop signal leaves for the final checkpoint, in ms. */
export function gracePeriodFrom(values: ClusterFlagValues): number {
  return parseDuration(values['grace-period'] ?? DEFAULT_GRACE_PERIOD, '--grace-period (or AUTOPRUNE_GRACE_PERIOD)');
}

/** --metrics-port (AUTOPRUNE_METRICS_PORT): where the Prometheus endpoint listens; undefined (the default): no endpoint. */
export function metricsPortFrom(values: ClusterFlagValues): number | undefined {
  const text = values['metrics-port'];
  if (text === undefined || text === '') return undefined;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535)
    throw new InputError('--metrics-port (or AUTOPRUNE_METRICS_PORT)', 'is not a port number', {
      expected: 'a whole number from 0 (any free port) to 65535',
      found: JSON.stringify(text),
    });
  return port;
}

/** Checks a host:port setting, naming the option (and its variable) it came from. */
export function addressSetting(value: string, option: string, variable?: string): string {
  parseHostPort(value, variable === undefined ? option : `${option} (or ${variable})`);
  return value;
}

export function defaultWorkerId(): string {
  return `${hostname()}-${process.pid}`;
}
