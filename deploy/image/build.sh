#!/usr/bin/env bash
# Builds the autoprune container images offline, from Debian's packages and this checkout alone:
#   1. a base image (Debian trixie minbase with nodejs, libvulkan1, ca-certificates) made by mmdebstrap and
#      `podman import`ed, its tarball cached by the hash of its recipe, so that only the first build fetches;
#   2. a build context with the compiled program (dist/, run `npm run build` first) and the production
#      dependencies (`npm ls --omit=dev`), hard-linked from node_modules and pruned to this platform;
#   3. `podman build --isolation=chroot --pull=never` of deploy/image/Containerfile's targets.
#
# usage: deploy/image/build.sh [--target cpu|gpu ...] [--tag-prefix NAME]
#   --target      the Containerfile targets to build (default: cpu and gpu)
#   --tag-prefix  images are tagged PREFIX:TARGET (default: localhost/autoprune)
# env: XDG_CACHE_HOME (the cache goes to $XDG_CACHE_HOME/autoprune, else node_modules/.cache/autoprune),
#      AUTOPRUNE_DEBIAN_MIRROR (default: http://deb.debian.org/debian)
# Needs root (mmdebstrap's root mode; podman's storage), and installs podman, mmdebstrap and runc with
# apt-get when they are missing. The last lines name the images built and the seconds each step took.
set -euo pipefail
cd "$(dirname "$0")/../.."

targets=()
tag_prefix=localhost/autoprune
while [ $# -gt 0 ]; do
  case "$1" in
    --target) targets+=("${2:?--target needs cpu or gpu}"); shift 2 ;;
    --tag-prefix) tag_prefix="${2:?--tag-prefix needs a name}"; shift 2 ;;
    *) echo "build.sh: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=(cpu gpu)
for target in "${targets[@]}"; do
  case "$target" in cpu | gpu) ;; *) echo "build.sh: --target $target: expected cpu or gpu" >&2; exit 2 ;; esac
done

if [ ! -f dist/cli/main.js ]; then
  echo "build.sh: dist/cli/main.js is missing: run npm run build first" >&2
  exit 2
fi

seconds() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.1f", b - a }'; }

# The tools come from Debian's packages, installed the way test/run.sh installs nats-server.
ensure_tools() {
  local missing=()
  for tool in podman mmdebstrap runc; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "build.sh: ${missing[*]} missing, and installing them needs root and apt-get (Debian: apt-get install ${missing[*]})" >&2
    exit 3
  fi
  echo "build.sh: installing ${missing[*]} (apt-get install -y ${missing[*]})"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
}
ensure_tools
# crun fails in unprivileged sandboxes such as CI's; runc works in them and everywhere else.
podman=(podman --runtime runc)

cache="${XDG_CACHE_HOME:+$XDG_CACHE_HOME/autoprune}"
cache="${cache:-$PWD/node_modules/.cache/autoprune}"
mkdir -p "$cache"

# 1. The base image, named by the hash of its recipe: a changed recipe makes a new one.
mirror="${AUTOPRUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
recipe=(mmdebstrap --variant=minbase --include=nodejs,libvulkan1,ca-certificates trixie)
key=$(printf '%s\n' "${recipe[@]}" "$mirror" "$(uname -m)" | sha256sum | cut -c1-16)
base_image="localhost/autoprune-base:$key"
tarball="$cache/container-base-$key.tar"
started=$(seconds)
if "${podman[@]}" image exists "$base_image"; then
  base_how="present"
else
  if [ ! -f "$tarball" ]; then
    # Written aside and renamed: an interrupted mmdebstrap leaves nothing that looks complete.
    "${recipe[@]:0:3}" --format=tar "${recipe[3]}" "$tarball.partial-$$" "$mirror" >"$cache/container-base-$key.log" 2>&1 || {
      echo "build.sh: mmdebstrap failed (log: $cache/container-base-$key.log):" >&2
      tail -n 20 "$cache/container-base-$key.log" >&2
      rm -f "$tarball.partial-$$"
      exit 1
    }
    mv "$tarball.partial-$$" "$tarball"
    base_how="made with mmdebstrap and imported"
  else
    base_how="imported from the cached tarball"
  fi
  "${podman[@]}" import --quiet "$tarball" "$base_image" >/dev/null
fi
base_seconds=$(elapsed "$started")

# 2. The build context: only what the program runs with.
started=$(seconds)
context="$cache/container-context"
rm -rf "$context"
mkdir -p "$context/app/dist" "$context/app/node_modules"
cp package.json "$context/app/"
cp -r proto examples "$context/app/"
for part in cli coordinator worker engine collective shared; do cp -r "dist/$part" "$context/app/dist/"; done
# The production packages as npm resolves them; a package nested in another comes with it.
npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | sort -u | awk '
  { for (i = 1; i <= n; i++) if (index($0, kept[i] "/") == 1) next; kept[++n] = $0; print }' |
  while read -r package; do
    relative="${package#"$PWD/node_modules/"}"
    mkdir -p "$context/app/node_modules/$(dirname "$relative")"
    # Hard links when the cache shares node_modules' file system; the prune below only unlinks.
    cp -al "$package" "$context/app/node_modules/$relative" 2>/dev/null || cp -a "$package" "$context/app/node_modules/$relative"
  done
# Source maps, type declarations and native binaries for other systems are never loaded here.
find "$context/app" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete
find "$context/app/node_modules" -type d \( \
  -regex '.*/\(darwin\|win32\|freebsd\|android\|openbsd\|sunos\|aix\)\(-[^/]*\)?' \
  -o -regex '.*/linux-\(arm64\|arm\|ia32\|ppc64\|s390x\|riscv64\)' \
  -o -regex '.*/linux/\(arm64\|arm\|ia32\)' \) -prune -exec rm -rf {} +
chmod 0755 "$context/app/dist/cli/main.js"
context_mb=$(du -sm "$context/app" | cut -f1)
context_seconds=$(elapsed "$started")

# 3. The images.
started=$(seconds)
for target in "${targets[@]}"; do
  previous=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag_prefix:$target" 2>/dev/null || true)
  "${podman[@]}" build --quiet --isolation=chroot --pull=never --build-arg "BASE=$base_image" \
    -f deploy/image/Containerfile --target "$target" -t "$tag_prefix:$target" "$context" >/dev/null
  # The image this tag named before is left untagged: remove it unless a container still uses it.
  current=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag_prefix:$target")
  [ -n "$previous" ] && [ "$previous" != "$current" ] && "${podman[@]}" rmi "$previous" >/dev/null 2>&1 || true
done
build_seconds=$(elapsed "$started")

echo "base image: $base_image ($base_how, ${base_seconds} s)"
echo "context: ${context_mb} MB (${context_seconds} s)"
for target in "${targets[@]}"; do echo "image: $tag_prefix:$target"; done
echo "images built in ${build_seconds} s"
