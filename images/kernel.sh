#!/usr/bin/env bash
# Builds the guest kernel: Debian's linux-source-6.1, `make tinyconfig` plus kernel.config,
# producing an ELF vmlinux (with the PVH note QEMU needs) in OUT_DIR.
# Usage: kernel.sh OUT_DIR WORK_DIR
# The unpacked source tree and its objects (1.6 GB) go once vmlinux is out, unless
# AIRLOCK_KEEP_KERNEL_TREE=1 keeps them in WORK_DIR, so that a changed option rebuilds in seconds.
set -euo pipefail

out=${1:?usage: kernel.sh OUT_DIR WORK_DIR}
work=${2:?usage: kernel.sh OUT_DIR WORK_DIR}
here=$(cd "$(dirname "$0")" && pwd)
tarball=/usr/src/linux-source-6.1.tar.xz

[ -f "$tarball" ] || { echo "kernel: $tarball missing (apt-get install linux-source-6.1)" >&2; exit 1; }
mkdir -p "$out" "$work"

src="$work/linux-source-6.1"
stamp="$work/linux-source-6.1.unpacked"
if [ ! -f "$stamp" ] || [ "$tarball" -nt "$stamp" ]; then
  echo "kernel: unpacking $tarball" >&2
  rm -rf "$src" "$stamp"
  tar -C "$work" -xf "$tarball"
  touch "$stamp"
fi

cd "$src"
make -s ARCH=x86_64 tinyconfig
scripts/kconfig/merge_config.sh -m -O . .config "$here/kernel.config" >/dev/null
make -s ARCH=x86_64 olddefconfig

# merge_config silently drops an option whose dependencies are missing: refuse that.
missing=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*)
      grep -qx "$line" .config || { echo "kernel: option lost after olddefconfig: $line" >&2; missing=1; } ;;
    "# CONFIG_"*" is not set")
      opt=${line#\# }; opt=${opt%% *}
      if grep -q "^$opt=" .config; then echo "kernel: option should be off: $opt" >&2; missing=1; fi ;;
  esac
done < "$here/kernel.config"
[ "$missing" = 0 ] || exit 1

echo "kernel: make -j$(nproc) vmlinux (about 8 minutes on 2 cores the first time)" >&2
make -s ARCH=x86_64 -j"$(nproc)" vmlinux
cp vmlinux "$out/vmlinux"
cp .config "$out/config"
cd /
[ "${AIRLOCK_KEEP_KERNEL_TREE:-0}" = 1 ] || rm -rf "$src" "$stamp"
