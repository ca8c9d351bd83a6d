#!/usr/bin/env bash
# Runs airlock's VM tests on the kvm backend inside the KVM test host (see README.md), from the
# build tree: builds (or takes from the image cache) the test host's kernel and initramfs,
# packs this build's programs, libraries, recipes and tests as the payload, boots the host with
# the guest root file system as its disk, and runs test/kvmhost/inside.sh there.
# Usage: test/kvmhost/suite.sh [SCRIPT [ARGS...]]   (default: the airlock run suite)
# Output ends with the inner runner's "N passed, N failed"; the exit status is the inner one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
images=${AIRLOCK_IMAGES:-$HOME/.cache/airlock}

# The test host's reusable part, keyed by its recipe like the guest images.
key=$(cat "$root/test/kvmhost/build.sh" "$root/test/kvmhost/init.c" | sha256sum | cut -c1-16)
base=$images/kvmhost-$key
if [ ! -f "$base/base.cpio" ]; then
  echo "suite.sh: building the KVM test host (Debian's stock kernel + kvm_amd), ~10 s" >&2
  rm -rf "$base.tmp"
  mkdir -p "$base.tmp"
  bash "$root/test/kvmhost/build.sh" "$base.tmp" "$build/test/kvmhost/kvmhost-init" >&2
  rm -rf "$base"
  mv "$base.tmp" "$base"
fi

payload=$(mktemp -d /tmp/airlock-kvm-payload-XXXXXX)
trap 'rm -rf "$payload"' EXIT
mkdir -p "$payload/build/mcp" "$payload/build/vmm" "$payload/build/agent" \
  "$payload/build/test/guests" "$payload/test" "$payload/lib"
cp "$build/mcp/airlock" "$build/mcp/airlock-qemu-preload.so" "$payload/build/mcp/"
cp "$build/vmm/airlock-vmm" "$payload/build/vmm/"
cp "$build/agent/airlock-agent" "$payload/build/agent/"
cp "$build/test/guests/misbehave" "$build/test/guests/hostile" "$payload/build/test/guests/"
# the ASan/UBSan monitor, for the hostile-guest suite (test/security/test_hostile_guest.py)
if [ -x "$root/build-asan/vmm/airlock-vmm" ]; then
  mkdir -p "$payload/build-asan/vmm"
  cp "$root/build-asan/vmm/airlock-vmm" "$payload/build-asan/vmm/"
fi
cp -r "$root/test/integration" "$root/test/perf" "$root/test/security" "$payload/test/"
cp "$root/test/kvmhost/inside.sh" "$root/test/kvmhost/kvm_keeper.py" "$payload/"
cp -r "$root/images" "$payload/images"
kernel=$("$build/mcp/airlock" image list | sed -n 's/^current recipe: *\(kernel-[0-9a-f]*\).*/\1/p')
rootfs=$("$build/mcp/airlock" image list | sed -n 's/.*\(rootfs-[0-9a-f]*\)$/\1/p' | head -1)
cp "$images/$kernel/vmlinux" "$payload/vmlinux"
# airlock's shared libraries that the guest root file system (the test host's userland) lacks
for lib in $(ldd "$build/mcp/airlock" "$build/vmm/airlock-vmm" $(ls "$root/build-asan/vmm/airlock-vmm" 2>/dev/null) \
             | awk '/=> \//{print $3}' | sort -u); do
  case $(basename "$lib") in libc.so*|libm.so*|ld-linux*|libpthread.so*|libdl.so*) ;;
    *) cp -L "$lib" "$payload/lib/" ;; esac
done
# $KVMHOST_EXTRA: colon-separated files to add to the payload (ad-hoc experiments)
IFS=: read -ra extra <<<"${KVMHOST_EXTRA:-}"
for f in "${extra[@]}"; do [ -z "$f" ] || cp -r "$f" "$payload/"; done

cmd="bash inside.sh ${*:-test/integration/test_run.py}"
bash "$root/test/kvmhost/run.sh" --base "$base" --payload "$payload" \
  --disk "$images/$rootfs/rootfs.ext4" --timeout "${KVMHOST_TIMEOUT:-2400}" -- "$cmd"
