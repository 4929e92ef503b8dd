/**
 * The bundle's entry scripts (deploy/bundle/build.ts writes them into its top folder). Each sets up what
 * an installed checkout gets from its environment: the bundled Vulkan loader, the proto files, the
 * NVIDIA Vulkan driver file where container runtimes mount it, and a runtime directory for Mesa/Dawn.
 */

const SETUP = `#!/usr/bin/env bash
set -euo pipefail
here=$(cd "$(dirname "\${BASH_SOURCE[0]}")" && pwd)
export LD_LIBRARY_PATH="$here/lib\${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export AUTOPRUNE_PROTO_DIR="$here/proto"
export AUTOPRUNE_ANCHORS="\${AUTOPRUNE_ANCHORS:-$here/anchors}"
# The NVIDIA driver's Vulkan ICD file, unless the caller named one (VK_ICD_FILENAMES or VK_DRIVER_FILES).
if [ -z "\${VK_ICD_FILENAMES:-}\${VK_DRIVER_FILES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi
if [ -z "\${XDG_RUNTIME_DIR:-}" ]; then export XDG_RUNTIME_DIR="$(mktemp -d)"; fi
`;

export const LAUNCHERS: Readonly<Record<string, string>> = {
  /** `./autoprune <command> …`: the CLI, e.g. `./autoprune worker --coordinator HOST:7070`. */
  autoprune: `${SETUP}exec "$here/bin/node" "$here/app/cli/main.js" "$@"\n`,
  /** `./bench-gpu [--nets …] [--json FILE]`: npm run bench:gpu, with the PyTorch anchor from anchors/. */
  'bench-gpu': `${SETUP}exec "$here/bin/node" "$here/app/cli/bench-gpu.js" "$@"\n`,
  'README.txt': `autoprune for linux-x64 hosts without Node or network (made by npm run bundle).

  ./autoprune worker --coordinator HOST:7070     a GPU worker (config backend: webgpu or auto)
  ./autoprune train CONFIG.yaml --backend webgpu  a run in this process
  ./bench-gpu [--json FILE]                       the GPU benchmark beside PyTorch (AUTOPRUNE_PYTHON: a python with torch)

Vulkan: lib/libvulkan.so.1 is the loader; the NVIDIA driver file is found where container runtimes mount it,
or name yours in VK_DRIVER_FILES. MNIST is not carried: give data.dir. A software adapter (lavapipe) is taken
only with AUTOPRUNE_WEBGPU_ALLOW_SOFTWARE=1 (and never timed by bench-gpu).
`,
};
