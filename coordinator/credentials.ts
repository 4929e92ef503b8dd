import { randomBytes } from 'node:crypto';
import { secretsEqual } from '../shared/rpc/security.js';

/** Bytes of entropy in each credential. */
const CREDENTIAL_BYTES = 32;

/**
 * The secrets of the current registrations, one per worker id: Register issues a fresh one (replacing any
 * earlier one of that id), every later call presents it. They live in this coordinator's memory only, so a
 * restarted coordinator knows none of the old ones and its workers must register again.
 */
export class CredentialRegistry {
  private readonly byWorker = new Map<string, string>();
  /** Compared against when the id has no credential, so that an unknown id takes as long as a known one. */
  private readonly decoy = randomBytes(CREDENTIAL_BYTES).toString('base64url');

  /** A new credential for `workerId`; the one it had (if any) is no longer valid. */
  issue(workerId: string): string {
    const credential = randomBytes(CREDENTIAL_BYTES).toString('base64url');
    this.byWorker.set(workerId, credential);
    return credential;
  }

  /** `workerId` is no longer registered: its credential is no longer valid. */
  revoke(workerId: string): void {
    this.byWorker.delete(workerId);
  }

  /** Whether `presented` is `workerId`'s current credential, compared in constant time. */
  verify(workerId: string, presented: string | undefined): boolean {
    const expected = this.byWorker.get(workerId);
    const matches = secretsEqual(presented ?? '', expected ?? this.decoy);
    return matches && expected !== undefined && presented !== undefined;
  }
}
