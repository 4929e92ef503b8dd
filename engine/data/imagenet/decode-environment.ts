/**
 * What a process that decodes ImageNet needs in its environment from the start, since neither setting can
 * change once the process runs:
 * - UV_THREADPOOL_SIZE: libvips decodes on libuv's thread pool, shared by the whole process and sized once
 *   (4 by default) when first used, which happens before any of our code runs. A DecodePool of N threads
 *   decodes at most min(N, pool size) images at once, and file reads share the same pool.
 * - GLIBC_TUNABLES: raising glibc malloc's mmap and trim thresholds keeps libvips' per-image buffers on the
 *   heap instead of mapping and unmapping them for every image (10-19% faster for sharp where measured for
 *   the issue; bench:input reports what it gains on the machine it runs on).
 * Launchers of decoding processes (the benchmark, a worker's launcher) start them with decodeEnvironment().
 */

/** Threads kept for file reads and other users of the pool beside the decoders. */
const OTHER_POOL_USERS = 4;
const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=67108864';
const LIBUV_DEFAULT = 4;

/** libuv's thread pool size in a process started with `env`. */
export function libuvThreads(env: NodeJS.ProcessEnv = process.env): number {
  const size = Number(env.UV_THREADPOOL_SIZE);
  return Number.isInteger(size) && size > 0 ? size : LIBUV_DEFAULT;
}

/** `env` with a thread pool for `decodeThreads` decoders and the malloc thresholds added (settings already there are kept). */
export function decodeEnvironment(decodeThreads: number, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const tunables = env.GLIBC_TUNABLES;
  return {
    ...env,
    UV_THREADPOOL_SIZE: String(Math.max(libuvThreads(env), decodeThreads + OTHER_POOL_USERS)),
    GLIBC_TUNABLES:
      tunables === undefined || tunables === '' ? MALLOC_TUNABLES : tunables.includes('glibc.malloc.') ? tunables : `${tunables}:${MALLOC_TUNABLES}`,
  };
}
