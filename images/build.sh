#!/usr/bin/env bash
# Sets up everything airlock needs on a Debian 12 host, from nothing:
#   images/build.sh all      packages + build + guest images (the README's quick start runs this)
#   images/build.sh deps     Debian packages (apt-get; needs root; skipped when all are present)
#   images/build.sh host     meson/ninja builds: build/ (release) and build-asan/ (ASan/UBSan),
#                            and the MCP SDK from npm for the tests and the Node example (from
#                            their lock files)
#   images/build.sh images   guest kernel + root file system into the image cache
#                            (`airlock image build`; an unchanged recipe is never rebuilt)
set -euo pipefail
cd "$(dirname "$0")/.."

# What building, running and testing airlock needs, by purpose.
packages=(
  # the build
  meson ninja-build pkg-config gcc libc6-dev libjansson-dev libuv1-dev libseccomp-dev libarchive-dev
  # the guest kernel (linux-source-6.1) and root file system (debootstrap, mkfs.ext4)
  linux-source-6.1 make bc flex bison libelf-dev libssl-dev xz-utils cpio debootstrap e2fsprogs
  # the tcg backend: QEMU, jailed by bubblewrap
  qemu-system-x86 bubblewrap
  # the tests (and the Node example client): python3, node and the MCP SDK from npm
  python3 valgrind procps nodejs
  # the fuzz targets (test/fuzz): clang with libFuzzer
  clang libclang-rt-14-dev
)

# Runs a step quietly; when it fails, shows its output and names it.
quiet() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "build.sh: failed: $*" >&2
    return 1
  fi
  rm -f "$log"
}

deps() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || { echo "build.sh: need root to install: ${missing[*]}" >&2; exit 1; }
  echo "build.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  quiet apt-get update -q
  quiet apt-get install -y -q --no-install-recommends "${missing[@]}"
}

npm_deps() {
  # Debian's npm, unless the node installed already brings its own (NodeSource's does)
  command -v npm >/dev/null || {
    [ "$(id -u)" = 0 ] || { echo "build.sh: need root to install npm" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive quiet apt-get install -y -q --no-install-recommends npm
  }
}

host() {
  [ -d build ] || quiet meson setup build
  quiet ninja -C build
  [ -d build-asan ] || quiet meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
  quiet ninja -C build-asan
  for dir in test examples; do
    if [ ! -d $dir/node_modules ] || [ $dir/package-lock.json -nt $dir/node_modules ]; then
      (cd $dir && quiet npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
}

images() {
  build/mcp/airlock image build
}

case "${1:-all}" in
  all) deps; npm_deps; host; images ;;
  deps) deps; npm_deps ;;
  host) host ;;
  images) images ;;
  *) echo "usage: images/build.sh [all|deps|host|images]" >&2; exit 2 ;;
esac
