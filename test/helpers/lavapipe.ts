import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * Mesa's lavapipe (a Vulkan driver that runs on the CPU) for the webgpu tests, so that Dawn finds an
 * adapter on machines without a GPU. Debian bookworm's own Mesa (22.3) is too old for Dawn, so this
 * takes `mesa-vulkan-drivers` from bookworm-backports with `apt-get download` into a cache directory and
 * unpacks it there with `dpkg -x`: the system's Mesa and apt configuration stay as they are. The driver
 * is then named to the Vulkan loader by an ICD file in the same directory (VK_ICD_FILENAMES).
 */

export type Lavapipe = { readonly icdFile: string } | { readonly missing: string };

const SUITE = 'bookworm-backports';
const MIRROR = 'http://deb.debian.org/debian';
const PACKAGE = 'mesa-vulkan-drivers';
/** apt-get update and download of one 11 MB package; bounded so that a dead mirror fails the setup. */
const APT_TIMEOUT_MS = 5 * 60_000;

function cacheRoot(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return xdg ? join(xdg, 'autoprune') : resolve('node_modules', '.cache', 'autoprune');
}

/** The ICD file of a lavapipe unpacked under the cache (fetched first if need be), or why there is none. */
export async function lavapipe(): Promise<Lavapipe> {
  const home = join(cacheRoot(), 'lavapipe');
  const icdFile = join(home, 'lvp_icd.json');
  if (existsSync(icdFile)) return { icdFile };
  const loader = await run('/sbin/ldconfig', ['-p']);
  if (!loader.ok || !/libvulkan\.so\.1\b/.test(loader.output))
    return { missing: 'the Vulkan loader libvulkan.so.1 is not installed (Debian: apt-get install libvulkan1; test/run.sh installs it)' };
  // Fetched and unpacked aside, then renamed into place: a half-made one is never taken for a driver.
  const staging = `${home}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(join(staging, 'lists', 'partial'), { recursive: true });
  try {
    const sources = join(staging, 'sources.list');
    writeFileSync(sources, `deb ${MIRROR} ${SUITE} main\n`);
    const apt = [
      '-q',
      '-oAPT::Architecture=amd64',
      `-oDir::State::Lists=${join(staging, 'lists')}`,
      `-oDir::Etc::SourceList=${sources}`,
      '-oDir::Etc::SourceParts=/dev/null',
      // apt's download sandbox user cannot write into this cache directory.
      '-oAPT::Sandbox::User=root',
    ];
    const update = await run('apt-get', [...apt, 'update'], staging);
    if (!update.ok) return { missing: `apt-get update for ${SUITE} failed: ${update.output}` };
    const download = await run('apt-get', [...apt, 'download', `${PACKAGE}/${SUITE}`], staging);
    if (!download.ok) return { missing: `apt-get download ${PACKAGE}/${SUITE} failed: ${download.output}` };
    const deb = readdirSync(staging).find((name) => name.startsWith(`${PACKAGE}_`) && name.endsWith('.deb'));
    if (deb === undefined) return { missing: `apt-get download left no ${PACKAGE} .deb in ${staging}` };
    const unpack = await run('dpkg', ['-x', deb, 'root'], staging);
    if (!unpack.ok) return { missing: `dpkg -x ${deb} failed: ${unpack.output}` };
    const library = join(home, 'root', 'usr', 'lib', 'x86_64-linux-gnu', 'libvulkan_lvp.so');
    if (!existsSync(join(staging, 'root', 'usr', 'lib', 'x86_64-linux-gnu', 'libvulkan_lvp.so'))) return { missing: `${deb} holds no libvulkan_lvp.so` };
    // The package's own ICD file names the library by its system path; this one names the unpacked copy.
    writeFileSync(join(staging, 'lvp_icd.json'), `${JSON.stringify({ file_format_version: '1.0.1', ICD: { library_path: library, api_version: '1.3.0' } })}\n`);
    rmSync(join(staging, 'lists'), { recursive: true, force: true });
    rmSync(sources);
    rmSync(join(staging, deb));
    try {
      renameSync(staging, home);
    } catch (error) {
      // Another test process unpacked it first.
      if (!existsSync(icdFile)) throw error;
    }
    return { icdFile };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/**
 * Points this process's Vulkan loader at lavapipe. It reads these variables when Dawn creates its
 * instance, so this must run before the webgpu backend is first activated in the process.
 */
export function useLavapipe(found: { readonly icdFile: string }, env: NodeJS.ProcessEnv = process.env): void {
  env.VK_ICD_FILENAMES = found.icdFile;
  env.VK_DRIVER_FILES = found.icdFile;
  // Mesa's window-system code complains on every start without one.
  env.XDG_RUNTIME_DIR ??= '/tmp';
}

function run(command: string, args: readonly string[], cwd?: string): Promise<{ ok: boolean; output: string }> {
  return new Promise((done) => {
    execFile(command, args, { cwd, timeout: APT_TIMEOUT_MS, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const output = `${stdout}${stderr}`.trim();
      // A failure's message keeps its first line and the output's last few, which say why.
      done({ ok: error === null, output: error === null ? output : `${error.message.split('\n')[0]}\n${output.split('\n').slice(-5).join('\n')}` });
    });
  });
}
