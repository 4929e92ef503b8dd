import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBuiltAddon } from '../../engine/tensorflow-addon.js';
import { runCli } from '../helpers/cli.js';
import { skipBecause } from '../helpers/skip.js';
import { ensureTensorflowAddon } from '../helpers/tensorflow-addon.js';

/**
 * `autoprune setup tensorflow` as a user meets it: what it says when something is missing or wrong, and a
 * real build from an unpacked libtensorflow tarball layout into a cache of its own (the library itself is the
 * one the suite's setup unpacked from the wheel), reused on a second call.
 */
describe('autoprune setup tensorflow', function () {
  this.timeout(600_000);
  const root = mkdtempSync(join(tmpdir(), 'autoprune-setup-'));
  /** A fresh cache, so that nothing the suite set up is touched or reused. */
  const env = { XDG_CACHE_HOME: join(root, 'cache') };

  it('names every missing build tool at once, before fetching anything', async () => {
    const result = await runCli(['setup', 'tensorflow'], { env: { ...env, CXX: join(root, 'no-such-compiler') } });
    assert.equal(result.status, 2, result.stderr);
    assert.match(
      result.stderr,
      /autoprune setup: autoprune setup tensorflow: cannot build the binding; missing: a C\+\+ compiler \(.*no-such-compiler; Debian: apt-get install g\+\+\)/,
    );
    assert.ok(!existsSync(join(root, 'cache', 'autoprune', 'wheels')), 'nothing was fetched');
  });

  it('refuses a --wheel that is missing, not a wheel, or a directory without a library, naming it', async () => {
    const notWheel = join(root, 'notes.txt');
    writeFileSync(notWheel, 'hello');
    const emptyDirectory = join(root, 'empty');
    mkdirSync(emptyDirectory);
    for (const [given, said] of [
      [join(root, 'absent.whl'), /--wheel: no such file or directory; found .*absent\.whl/],
      [notWheel, /--wheel: is neither a wheel nor a directory; expected a tensorflow\*\.whl file/],
      [emptyDirectory, /--wheel: holds no TensorFlow library that can be used; expected exactly one tensorflow\*\.whl, an unpacked libtensorflow tarball/],
    ] as const) {
      const result = await runCli(['setup', 'tensorflow', '--wheel', given], { env });
      assert.equal(result.status, 2, result.stderr);
      assert.match(result.stderr, said);
    }
  });

  it('refuses a wheel that holds no TensorFlow C API, saying what it lacks', async () => {
    const fake = join(root, 'tensorflow_cpu-0.0.0-py3-none-any.whl');
    execFileSync('python3', ['-c', 'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "w").writestr("tensorflow/__init__.py", "")', fake]);
    const result = await runCli(['setup', 'tensorflow', '--wheel', fake], { env });
    assert.equal(result.status, 2, result.stderr);
    assert.match(
      result.stderr,
      /cannot be unpacked for the binding build; found not a TensorFlow wheel with the C API: lacks tensorflow\/libtensorflow_cc\.so\.2/,
    );
  });

  it('builds from an unpacked libtensorflow tarball, checks it, records it, and reuses it the second time', async function () {
    this.timeout(30 * 60_000);
    const addon = await ensureTensorflowAddon();
    if ('missing' in addon) skipBecause(this, `the tensorflow backend cannot be built here: ${addon.missing}`);
    const unpacked = join(readBuiltAddon()!.directory, 'tensorflow');
    if (!existsSync(join(unpacked, 'libtensorflow_cc.so.2')))
      skipBecause(this, 'the suite set the backend up from a directory, not a wheel, so there is no unpacked library to lay out');
    // The tarball's layout: lib/libtensorflow.so.2, lib/libtensorflow_framework.so.2, include/.
    const tarball = join(root, 'libtensorflow');
    mkdirSync(join(tarball, 'lib'), { recursive: true });
    symlinkSync(join(unpacked, 'libtensorflow_cc.so.2'), join(tarball, 'lib', 'libtensorflow.so.2'));
    symlinkSync(join(unpacked, 'libtensorflow_framework.so.2'), join(tarball, 'lib', 'libtensorflow_framework.so.2'));
    symlinkSync(join(unpacked, 'include'), join(tarball, 'include'));

    const first = await runCli(['setup', 'tensorflow', '--wheel', tarball], { env });
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /^@tensorflow\/tfjs-node 4\.22\.0 on TensorFlow 2\.21\.0: .*tfjs_binding\.node \(built in/);
    assert.match(first.stderr, /compiling the binding with node-gyp/);
    const record = JSON.parse(readFileSync(join(root, 'cache', 'autoprune', 'tensorflow-addon', 'current.json'), 'utf8'));
    assert.equal(record.source, tarball);
    assert.ok(record.directory.startsWith(join(root, 'cache')), record.directory);

    const second = await runCli(['setup', 'tensorflow', '--wheel', tarball], { env });
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stdout, /\(reused in/);
    assert.doesNotMatch(second.stderr, /compiling/);
  });
});
