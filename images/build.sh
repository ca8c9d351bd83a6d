#!/usr/bin/env bash
# Sets up everything airlock needs on a Debian 12 host, from nothing:
#   images/build.sh all      packages + build + guest images + the KVM test host (the README's
#                            quick start runs this)
#   images/build.sh deps     Debian packages (apt-get; needs root; skipped when all are present
#                            and apt has its package lists)
#   images/build.sh host     meson/ninja builds: build/ (release) and build-asan/ (ASan/UBSan),
#                            and from npm (their lock files) the MCP SDK for the tests and the
#                            Node example, and the pinned node the tests run (Debian 12's is 18;
#                            the SDK's dependencies want >= 20): test/node_modules/.bin/node
#   images/build.sh images   guest kernel + root file system into the image cache
#                            (`airlock image build`; an unchanged recipe is never rebuilt)
#   images/build.sh testhost the KVM test host's kernel and initramfs into the image cache
#                            (test/kvmhost; downloads Debian's kernel package once)
set -euo pipefail
cd "$(dirname "$0")/.."

# What building, running and testing airlock needs, by purpose.
packages=(
  # the build
  meson ninja-build pkg-config gcc libc6-dev libjansson-dev libuv1-dev libseccomp-dev libarchive-dev
  libhttp-parser-dev
  # the guest kernel (linux-source-6.1) and root file system (debootstrap, mkfs.ext4)
  linux-source-6.1 make bc flex bison libelf-dev libssl-dev xz-utils cpio debootstrap e2fsprogs
  # the tcg backend: QEMU, jailed by bubblewrap
  qemu-system-x86 bubblewrap
  # the tests (and the Node example client): python3, node and npm (which fetches the MCP SDK
  # and the pinned node the tests run), binutils (strip: that node travels into the test host),
  # openssl and git (the egress fixtures' test CA and git repository)
  python3 valgrind procps nodejs binutils openssl git
  # the egress benchmark's peer (host curl of the same URL)
  curl
  # the KVM test host (test/kvmhost/build.sh): Debian's kernel package has zstd-packed modules
  zstd
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
  # The test host's build asks apt for the current kernel package (apt-cache, apt-get download):
  # a fresh image may have every package and still no package lists.
  local lists=true
  apt-cache show linux-image-amd64 >/dev/null 2>&1 || lists=false
  [ ${#missing[@]} -eq 0 ] && $lists && return 0
  [ "$(id -u)" = 0 ] || {
    echo "build.sh: need root to install: ${missing[*]:-nothing}; and apt's package lists:" \
      "$($lists && echo present || echo missing)" >&2
    exit 1
  }
  export DEBIAN_FRONTEND=noninteractive
  quiet apt-get update -q
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "build.sh: installing ${missing[*]}" >&2
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
  for dir in test examples test/deploy; do
    if [ ! -d $dir/node_modules ] || [ $dir/package-lock.json -nt $dir/node_modules ]; then
      (cd $dir && quiet npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
  test/node_modules/.bin/node --version >/dev/null || {
    echo "build.sh: the pinned node (test/node_modules/.bin/node) does not run" >&2
    exit 1
  }
}

testhost() {
  bash test/kvmhost/suite.sh --prepare
}

images() {
  build/mcp/airlock image build
}

case "${1:-all}" in
  all) deps; npm_deps; host; images; testhost ;;
  deps) deps; npm_deps ;;
  host) host ;;
  images) images ;;
  testhost) testhost ;;
  *) echo "usage: images/build.sh [all|deps|host|images|testhost]" >&2; exit 2 ;;
esac
