import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Every skip says why: tests skip through skipBecause (test/helpers/skip.ts), whose reason the summary
 * reporter prints, never with mocha's own skips (this.skip, it.skip, xit), which give none. Checked on
 * the TypeScript sources.
 */

const TEST_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../test');
const SILENT_SKIP = /\.skip\(|\b(xit|xdescribe|xcontext|xspecify)\(/;

describe('skipped tests', () => {
  it('skip only through skipBecause, which records the reason', () => {
    const silent: string[] = [];
    for (const file of readdirSync(TEST_ROOT, { recursive: true, encoding: 'utf8' })) {
      if (!file.endsWith('.ts') || file === join('helpers', 'skip.ts')) continue;
      readFileSync(join(TEST_ROOT, file), 'utf8')
        .split('\n')
        .forEach((line, index) => {
          if (SILENT_SKIP.test(line)) silent.push(`test/${file}:${index + 1}: ${line.trim()}`);
        });
    }
    assert.deepEqual(silent, []);
  });
});
