#!/usr/bin/env bash
# Packs the guest root file system: the base tree from rootfs-base.sh, plus the agent as
# /sbin/init and airlock's guest files (overlay/), into a read-only ext4 image.
# Usage: rootfs.sh BASE_ROOT AGENT_BINARY OUT_DIR     (writes OUT_DIR/rootfs.ext4)
set -euo pipefail

base=${1:?usage: rootfs.sh BASE_ROOT AGENT_BINARY OUT_DIR}
agent=${2:?usage: rootfs.sh BASE_ROOT AGENT_BINARY OUT_DIR}
out=${3:?usage: rootfs.sh BASE_ROOT AGENT_BINARY OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)

[ -d "$base" ] || { echo "rootfs: base tree $base missing" >&2; exit 1; }
[ -x "$agent" ] || { echo "rootfs: agent binary $agent missing" >&2; exit 1; }
mkdir -p "$out"
stage="$out/stage"
rm -rf "$stage"
# Hard links make the copy instant; every file changed below is replaced, never edited in place,
# so the cached base tree is never touched.
cp -al "$base" "$stage"

install_file() { # SRC DEST MODE
  rm -f "$stage/$2"
  install -D -m "$3" "$1" "$stage/$2"
}
install_file "$agent" sbin/init 0755
(cd "$here/overlay" && find . -type f) | while read -r f; do
  install_file "$here/overlay/$f" "${f#./}" 0644
done

# matplotlib builds its font list on first use (seconds under emulation): build it once here.
# The agent copies /usr/share/airlock/tmp-seed into each VM's fresh /tmp.
seed=usr/share/airlock/tmp-seed/.matplotlib
mkdir -p "$stage/$seed"
chroot "$stage" env -i PATH=/usr/bin:/bin HOME=/nonexistent MPLCONFIGDIR="/$seed" \
  PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -c 'import matplotlib.font_manager' \
  || { echo "rootfs: cannot build the matplotlib font cache" >&2; exit 1; }
ls "$stage/$seed"/fontlist-*.json >/dev/null

# Go's import configuration (start-go.sh): every package of the standard library as Debian ships
# it compiled, for the compiler and the linker called directly.
goroot=usr/lib/go-1.19
(cd "$stage/$goroot/pkg/linux_amd64" && find . -name '*.a' | LC_ALL=C sort |
  sed -e 's|^\./\(.*\)\.a$|packagefile \1=/'"$goroot"'/pkg/linux_amd64/\1.a|') \
  >"$stage/usr/lib/airlock/go-importcfg"
grep -q '^packagefile fmt=' "$stage/usr/lib/airlock/go-importcfg" ||
  { echo "rootfs: no compiled standard library in $goroot" >&2; exit 1; }

# The unprivileged user that runs the program.
for f in etc/passwd etc/group; do
  cp "$stage/$f" "$out/$(basename $f)"; rm -f "$stage/$f"; cp "$out/$(basename $f)" "$stage/$f"
done
echo "sandbox:x:1000:1000:airlock sandbox:/work:/bin/bash" >> "$stage/etc/passwd"
echo "sandbox:x:1000:" >> "$stage/etc/group"
mkdir -p "$stage/work" "$stage/tmp" "$stage/run" "$stage/proc" "$stage/sys" "$stage/dev"

size_mb=$(( $(du -sm "$stage" | cut -f1) * 11 / 10 + 64 ))
mkfs.ext4 -q -F -m 0 -O ^has_journal -L airlock-root -E root_owner=0:0 \
  -d "$stage" "$out/rootfs.ext4" "${size_mb}M"
rm -rf "$stage" "$out/passwd" "$out/group"
