#!/usr/bin/env bash
# Builds the guest's base tree from Debian bookworm packages (debootstrap minbase plus
# packages.txt), trimmed of what a sandbox never reads. The agent and airlock's own files are
# added later by rootfs.sh, so changing the agent does not re-run debootstrap.
# Usage: rootfs-base.sh OUT_DIR     (writes OUT_DIR/root; needs root)
set -euo pipefail

out=${1:?usage: rootfs-base.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mirror=${AIRLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" = 0 ] || { echo "rootfs: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "rootfs: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }

packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt" | tr -s ' \n' ' ')
root="$out/root"
mkdir -p "$out"
echo "rootfs: debootstrap bookworm (minbase + $packages), a few minutes" >&2
fail() { echo "rootfs: $1 failed, see $out/debootstrap.log" >&2; tail -n 5 "$out/debootstrap.log" >&2; exit 1; }
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$out/debootstrap.log" 2>&1 || fail debootstrap
# The packages come from apt in the new tree, not from debootstrap's --include: debootstrap
# cannot resolve a dependency on a virtual package (npm's on node-cssesc, node-cli-table3, ...).
# Depends only, as debootstrap would: no Recommends.
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
{ in_root apt-get update -q && in_root apt-get install -y -q --no-install-recommends $packages; } \
  >>"$out/debootstrap.log" 2>&1 || fail "apt-get install"

# Two native modules of airlock's, built here against Debian's own headers with the tree's
# compiler (all taken out again below; named explicitly, not left to scipy's and npm's
# dependencies): node's reseed addon (node-reseed.c) and the Python starter's output streams
# (python-output.c).
{ in_root apt-get install -y -q --no-install-recommends gcc libc6-dev libnode-dev libssl-dev \
    python3-dev &&
  mkdir -p "$root/tmp/airlock-src" "$root/usr/lib/airlock" &&
  cp "$here/node-reseed.c" "$here/python-output.c" "$here/pending-output.h" "$root/tmp/airlock-src/" &&
  in_root gcc -O2 -shared -fPIC -Wall -Wextra -Werror -I/usr/include/node \
    -o /usr/lib/airlock/reseed.node /tmp/airlock-src/node-reseed.c -lcrypto &&
  in_root gcc -O2 -shared -fPIC -Wall -Wextra -Werror -I/usr/include/python3.11 -pthread \
    -o /usr/lib/airlock/_airlock_output.so /tmp/airlock-src/python-output.c &&
  rm -rf "$root/tmp/airlock-src"; } >>"$out/debootstrap.log" 2>&1 || fail "airlock's native modules"

# scipy's dependency on pythran drags in compilers and headers (~500 MB), and npm's on node-gyp
# headers and static libraries (libnode-dev, libssl-dev: 15 MB), that nothing in the sandbox needs
# at run time (packages install with --ignore-scripts and wheels only): take them out again.
build_only="gcc-12 g++-12 cpp-12 gcc g++ cpp libgcc-12-dev libstdc++-12-dev libc6-dev linux-libc-dev
  libnode-dev libssl-dev libboost1.74-dev libboost-dev libpython3.11-dev libpython3-dev python3.11-dev python3-dev
  libopenblas-pthread-dev libopenblas-dev libblas-dev liblapack-dev libexpat1-dev zlib1g-dev
  libxsimd-dev binutils binutils-common binutils-x86-64-linux-gnu libbinutils libctf0 libctf-nobfd0
  libgprofng0 libjs-sphinxdoc"
# (dpkg-query names a package it knows of but that is not installed with no version: not those)
installed=$(chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' $build_only 2>/dev/null |
  awk 'NF == 2' || true)
if [ -n "$installed" ]; then
  # What depends on them stays (pythran, node-gyp): a stand-in package provides each one at its
  # version, so that dpkg's database stays whole and apt works in a derived image (derived.sh).
  mkdir -p "$root/tmp/airlock-stub/DEBIAN"
  {
    echo "Package: airlock-build-only-removed"
    echo "Version: 1"
    echo "Architecture: all"
    echo "Maintainer: airlock <airlock@localhost>"
    echo "Description: stands in for the build-only packages airlock removed from its image"
    echo "Provides: $(echo "$installed" | awk '{printf "%s%s (= %s)", (NR > 1 ? ", " : ""), $1, $2}')"
  } >"$root/tmp/airlock-stub/DEBIAN/control"
  { chroot "$root" dpkg --purge --force-depends $(echo "$installed" | cut -d' ' -f1) &&
    chroot "$root" dpkg-deb --build /tmp/airlock-stub /tmp/airlock-stub.deb &&
    chroot "$root" dpkg -i /tmp/airlock-stub.deb &&
    rm -rf "$root/tmp/airlock-stub" "$root/tmp/airlock-stub.deb" &&
    in_root apt-get check; } >>"$out/debootstrap.log" 2>&1 || fail "removing the build-only packages"
fi
rm -rf "$root"/usr/include "$root"/usr/lib/gcc

# Nothing in the guest may gain privileges: strip every setuid/setgid bit.
find "$root" -xdev -type f -perm /6000 -exec chmod ug-s {} +

# Trim what a sandbox never reads (docs, man pages, translations, apt's caches).
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
       "$root"/var/log/* "$root"/dev/*
du -sh "$root" >&2
