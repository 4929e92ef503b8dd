import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The layout is the architecture: the engine and shared code depend on no role, the collectives on no
 * role or engine, the two roles not on each other, and code outside collective/ enters it through its
 * index only. Checked on the TypeScript sources, so that a wrong import fails the suite.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** Top-level folder → the top-level folders its production code may import from. */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  shared: ['shared'],
  engine: ['engine', 'shared'],
  collective: ['collective', 'shared'],
  worker: ['worker', 'engine', 'collective', 'shared'],
  coordinator: ['coordinator', 'engine', 'shared'],
  cli: ['cli', 'coordinator', 'worker', 'engine', 'shared'],
};

function sources(folder: string): string[] {
  return readdirSync(join(ROOT, folder), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts') && !file.includes('generated'))
    .map((file) => join(folder, file));
}

function relativeImports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specifiers = [...text.matchAll(/(?:from\s+|import\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!);
  return specifiers.map((s) => relative(ROOT, resolve(ROOT, dirname(file), s)));
}

describe('source layering', () => {
  for (const [folder, allowed] of Object.entries(ALLOWED)) {
    it(`${folder}/ imports only from ${allowed.join(', ')}`, () => {
      const violations: string[] = [];
      for (const file of sources(folder)) {
        for (const target of relativeImports(file)) {
          const top = target.split('/')[0]!;
          if (!allowed.includes(top)) violations.push(`${file} imports ${target}`);
          else if (top === 'collective' && folder !== 'collective' && target !== 'collective/index.js') {
            violations.push(`${file} imports ${target} instead of collective/index.js`);
          }
        }
      }
      assert.deepEqual(violations, []);
    });
  }
});
