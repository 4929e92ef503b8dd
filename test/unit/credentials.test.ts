import assert from 'node:assert/strict';
import { CredentialRegistry } from '../../coordinator/credentials.js';

describe('credential registry', () => {
  it('issues a random credential of at least 32 bytes per registration', () => {
    const registry = new CredentialRegistry();
    const issued = Array.from({ length: 50 }, (_, i) => registry.issue(`w${i}`));
    assert.equal(new Set(issued).size, issued.length);
    for (const credential of issued) assert.ok(Buffer.from(credential, 'base64url').length >= 32, credential);
  });

  it('accepts only the current credential of the id it was issued to', () => {
    const registry = new CredentialRegistry();
    const w0 = registry.issue('w0');
    const w1 = registry.issue('w1');
    assert.equal(registry.verify('w0', w0), true);
    assert.equal(registry.verify('w0', w1), false, "another worker's credential");
    assert.equal(registry.verify('w0', undefined), false);
    assert.equal(registry.verify('w0', ''), false);
    assert.equal(registry.verify('w0', `${w0}x`), false);
    assert.equal(registry.verify('nobody', w0), false);
    assert.equal(registry.verify('nobody', undefined), false);
    assert.equal(registry.verify('nobody', ''), false);
  });

  it('forgets the old credential when it issues a new one to the same id, and every one it revokes', () => {
    const registry = new CredentialRegistry();
    const first = registry.issue('w0');
    const second = registry.issue('w0');
    assert.notEqual(first, second);
    assert.equal(registry.verify('w0', first), false);
    assert.equal(registry.verify('w0', second), true);
    registry.revoke('w0');
    assert.equal(registry.verify('w0', second), false);
  });

  it('knows none of another registry’s credentials, as a restarted coordinator knows none of its predecessor’s', () => {
    const before = new CredentialRegistry();
    const after = new CredentialRegistry();
    const old = before.issue('w0');
    after.issue('w0');
    assert.equal(after.verify('w0', old), false);
  });
});
