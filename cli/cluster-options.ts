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

export const CLUSTER_FLAGS = {
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  'join-token-file': { type: 'string' },
  'max-message-mb': { type: 'string' },
  'grace-period': { type: 'string' },
  'metrics-port': { type: 'string' },
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

/** A flag's value, else the environment variable's, else the default. */
export function setting(flag: string | undefined, variable: string, fallback?: string): string | undefined {
  return flag ?? process.env[variable] ?? fallback;
}

export function tlsFrom(values: ClusterFlagValues): TlsMaterial | undefined {
  const cert = setting(values['tls-cert'], 'AUTOPRUNE_TLS_CERT');
  const key = setting(values['tls-key'], 'AUTOPRUNE_TLS_KEY');
  const ca = setting(values['tls-ca'], 'AUTOPRUNE_TLS_CA');
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
  for (const [variable, flag] of files) {
    const path = setting(flag, variable);
    if (path !== undefined) env[variable] = resolve(path);
  }
  return env;
}

/** The join token: AUTOPRUNE_JOIN_TOKEN, or the file --join-token-file names (a mounted Secret). */
export function joinTokenFrom(values: ClusterFlagValues): string {
  const file = setting(values['join-token-file'], 'AUTOPRUNE_JOIN_TOKEN_FILE');
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
  const text = setting(values['max-message-mb'], 'AUTOPRUNE_MAX_MESSAGE_MB', '64')!;
  const mb = Number(text);
  if (!Number.isFinite(mb) || mb < 1 || mb > 2047)
    throw new InputError('--max-message-mb', 'is not a size in MiB between 1 and 2047', { found: JSON.stringify(text) });
  return Math.round(mb * (1 << 20));
}

/** --grace-period (AUTOPRUNE_GRACE_PERIOD): how long a stop signal leaves for the final checkpoint, in ms. */
export function gracePeriodFrom(values: ClusterFlagValues): number {
  const source = values['grace-period'] !== undefined ? '--grace-period' : 'AUTOPRUNE_GRACE_PERIOD';
  return parseDuration(setting(values['grace-period'], 'AUTOPRUNE_GRACE_PERIOD', DEFAULT_GRACE_PERIOD)!, source);
}

/** --metrics-port (AUTOPRUNE_METRICS_PORT): where the Prometheus endpoint listens; undefined (the default): no endpoint. */
export function metricsPortFrom(values: ClusterFlagValues): number | undefined {
  const text = setting(values['metrics-port'], 'AUTOPRUNE_METRICS_PORT');
  if (text === undefined || text === '') return undefined;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535)
    throw new InputError(values['metrics-port'] !== undefined ? '--metrics-port' : 'AUTOPRUNE_METRICS_PORT', 'is not a port number', {
      expected: 'a whole number from 0 (any free port) to 65535',
      found: JSON.stringify(text),
    });
  return port;
}

/** Checks a host:port setting, naming the flag or variable it came from. */
export function addressSetting(flag: string | undefined, variable: string, fallback: string, flagName: string): string {
  const value = setting(flag, variable, fallback)!;
  parseHostPort(value, flag !== undefined ? flagName : process.env[variable] !== undefined ? variable : flagName);
  return value;
}

export function defaultWorkerId(): string {
  return `${hostname()}-${process.pid}`;
}
