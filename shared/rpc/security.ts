import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { InputError } from '../errors.js';

/**
 * TLS and the join token. TLS is optional; when configured, every gRPC server presents `cert`/`key`, and
 * with `ca` set it also requires and verifies client certificates (mutual TLS): coordinator ↔ workers and
 * worker ↔ worker use the same files, so one CA per cluster is enough.
 */

export interface TlsFiles {
  /** PEM certificate of this process. */
  readonly cert: string;
  /** PEM private key of this process. */
  readonly key: string;
  /** PEM CA bundle that signed the peers' certificates; with it, peers must present a certificate. */
  readonly ca?: string;
}

export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
}

export function readTlsMaterial(files: TlsFiles): TlsMaterial {
  const read = (path: string, what: string) => {
    try {
      const pem = readFileSync(path);
      if (!pem.includes('-----BEGIN')) throw new InputError(path, `the TLS ${what} is not PEM`, { expected: 'a -----BEGIN ...----- block' });
      return pem;
    } catch (error) {
      if (error instanceof InputError) throw error;
      throw new InputError(path, `cannot read the TLS ${what}`, { found: (error as NodeJS.ErrnoException).code ?? String(error) });
    }
  };
  return { cert: read(files.cert, 'certificate'), key: read(files.key, 'private key'), ca: files.ca === undefined ? undefined : read(files.ca, 'CA bundle') };
}

export function serverCredentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(tls.ca ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.ca !== undefined);
}

export function channelCredentials(tls: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(tls.ca ?? null, tls.key, tls.cert);
}

/** Compares secrets in constant time (through their digests, so that lengths leak nothing either). */
export function secretsEqual(given: string | Uint8Array, expected: string | Uint8Array): boolean {
  const digest = (value: string | Uint8Array) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The call-metadata entry that carries a worker's credential (RegisterReply.credential). */
export const CREDENTIAL_METADATA_KEY = 'autoprune-credential';

/** The credential a call presents in its metadata, if any. */
export function presentedCredential(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get(CREDENTIAL_METADATA_KEY)[0];
  return typeof value === 'string' ? value : undefined;
}
