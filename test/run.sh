#!/usr/bin/env bash
# The test suite: builds, brings up what the tests need, runs mocha (arguments go to mocha). The last
# line is always `N passed, N failed, N skipped`, and the exit status is non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# The NATS tests run a real nats-server; Debian installs it in /usr/sbin, not on every PATH.
export PATH="$PATH:/usr/sbin:/usr/local/sbin"
# Installs a Debian package when `check` (a command) fails: the suite brings up what it needs.
ensure_debian_package() {
  local check=$1 package=$2
  eval "$check" >/dev/null 2>&1 && return 0
  local as_root=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "$package is not installed, and installing it needs root (no sudo here)"
      return 1
    fi
    as_root="sudo -n"
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$package is not installed, and apt-get is not available to install it"
    return 1
  fi
  echo "$package is not installed: installing the Debian package (${as_root:+$as_root }apt-get install -y $package)"
  if ! $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package"; then
    echo "retrying after apt-get update"
    $as_root apt-get update -q && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" || return 1
  fi
  eval "$check" >/dev/null 2>&1
}
if ! ensure_debian_package 'command -v nats-server' nats-server; then
  echo "the NATS tests need nats-server: install it (Debian/Ubuntu: apt-get install nats-server; elsewhere a release" \
    "from https://github.com/nats-io/nats-server/releases) and put it on PATH"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
# The webgpu tests run Dawn on lavapipe (test/helpers/lavapipe.ts fetches the driver); Dawn needs the loader.
# (grep without -q: under pipefail, -q would end the pipe early and ldconfig would die of SIGPIPE.)
ensure_debian_package '/sbin/ldconfig -p | grep "libvulkan\.so\.1 "' libvulkan1 ||
  echo "the Vulkan loader could not be installed: the webgpu tests will say so"

# The torchvision import and channel tests compare with torchvision itself: Debian's python3-torchvision on
# /usr/bin/python3 (not a pyenv python). Installed when missing; without it those tests skip, saying why.
ensure_debian_package "/usr/bin/python3 -c 'import torch, torchvision'" python3-torchvision ||
  echo "python3-torchvision could not be installed: the tests that compare with torchvision will skip"

# The wasm SIMD kernels' test rebuilds their module from kernels.c with Debian's clang and wasm-ld, to check
# that the committed module is that source's build; without them it checks the source's hash only.
ensure_debian_package 'command -v clang-14' clang-14 && ensure_debian_package 'command -v wasm-ld-14' lld-14 ||
  echo "clang-14 and lld-14 could not be installed: the wasm SIMD module's rebuild check will skip"

if ! npm run build --silent; then
  echo "build failed"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

# The tensorflow backend's binding, built from TensorFlow's wheel (pip's index) when the cache has none, before
# any test: tests that run with backend auto then see the same backend whichever order they run in. What the
# machine lacks for it is printed here; the tensorflow tests skip with that reason, or fail on a broken build.
node dist/test/helpers/tensorflow-addon.js || echo "setting up the tensorflow backend failed; its tests will say why"

# Lint and format (Biome): findings count as one failed test; the tests still run.
lint_failed=0
if ! npx biome ci . --colors=off --max-diagnostics=50; then
  echo "lint: Biome found problems (npm run lint lists them; npm run format fixes the formatting)"
  lint_failed=1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
npx mocha --reporter ./test/summary-reporter.cjs "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The last line must be the summary, and must count a failure whenever the status says one happened.
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
if [ -z "$summary" ]; then
  echo "mocha exited with status $status before reporting"
  echo "0 passed, $((1 + lint_failed)) failed, 0 skipped"
  [ "$status" -eq 0 ] && status=1
  exit "$status"
fi
read -r passed _ failed _ skipped _ <<<"$summary"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # An error once the tests were over (e.g. thrown from a timer they left behind).
  echo "mocha exited with status $status after reporting"
  failed=1
fi
failed=$((failed + lint_failed))
[ "$failed" -gt 0 ] && [ "$status" -eq 0 ] && status=1
final="$passed passed, $failed failed, $skipped skipped"
[ "$(tail -n 1 "$log")" != "$final" ] && echo "$final"
exit "$status"
