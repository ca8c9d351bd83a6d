#!/usr/bin/env bash
# Builds the tree of an image of one's own: the stock base tree (rootfs-base.sh) plus what a
# recipe adds (docs/images.md). rootfs.sh then packs it with the agent, as it packs the stock one.
# Usage: derived.sh BASE_ROOT RECIPE_DIR OUT_DIR STEP...   (writes OUT_DIR/root; needs root)
#   STEP, as mcp/sandbox/recipe.c makes them: "apt PKG...", "pip wheels DIR REQ...",
#   "pip index URL REQ...", "npm REGISTRY|- SPEC...", "copy SRC DEST". recipe.c checked every
#   word (no blanks, quotes or shell syntax, no leading '-', local paths inside RECIPE_DIR).
set -euo pipefail

base=${1:?usage: derived.sh BASE_ROOT RECIPE_DIR OUT_DIR STEP...}
recipe_dir=${2:?usage: derived.sh BASE_ROOT RECIPE_DIR OUT_DIR STEP...}
out=${3:?usage: derived.sh BASE_ROOT RECIPE_DIR OUT_DIR STEP...}
shift 3
mirror=${AIRLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$out/root
inputs=/tmp/airlock-recipe # inside the tree, while it is built

[ "$(id -u)" = 0 ] || { echo "derived: needs root (apt and pip run in a chroot)"; exit 1; }
[ -d "$base/usr" ] || { echo "derived: no base tree at $base"; exit 1; }

# Hard links make the copy instant and cost no space. apt, dpkg, pip and npm write what they
# change as a new file renamed over the old one, so the stock tree is never touched; /etc and
# /var, where files are edited in place, get copies of their own.
cp -al "$base" "$root"
for d in etc var; do
  rm -rf "${root:?}/$d"
  cp -a "$base/$d" "$root/$d"
done
# What the tools in the chroot need, taken away again at the end: device nodes (the base tree
# has none), /proc, the host's resolver, a scratch home.
for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9"; do
  read -r name major minor <<<"$node"
  mknod -m 666 "$root/dev/$name" c "$major" "$minor"
done
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
# (without the host's file, the chroot resolves as glibc does by default, and apt says what it
# cannot reach)
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || rm -f "$root/etc/resolv.conf"
mkdir -p "$root$inputs/home"

in_root() {
  chroot "$root" env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=$inputs/home \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}
failed() { echo "derived: step '$1' failed (its output is above)"; exit 1; }

for step in "$@"; do
  read -ra word <<<"$step"
  kind=${word[0]}
  echo "derived: step $step"
  case $kind in
    apt)
      grep -q "$mirror" "$root/etc/apt/sources.list" ||
        echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"
      { in_root apt-get update -q &&
        in_root apt-get install -y -q --no-install-recommends "${word[@]:1}"; } || failed apt
      ;;
    pip)
      source_args=(--index-url "${word[2]}")
      if [ "${word[1]}" = wheels ]; then
        mkdir -p "$root$inputs/wheels"
        cp -r "$recipe_dir/${word[2]}/." "$root$inputs/wheels/"
        source_args=(--no-index --find-links "$inputs/wheels")
      fi
      # Debian's pip refuses the system's site-packages: /usr/local is the operator's own
      in_root python3 -m pip install --no-cache-dir --break-system-packages \
        --root-user-action=ignore --disable-pip-version-check --no-warn-script-location \
        --only-binary=:all: "${source_args[@]}" "${word[@]:3}" || failed pip
      ;;
    npm)
      specs=()
      mkdir -p "$root$inputs/npm"
      for spec in "${word[@]:2}"; do
        if [[ $spec == ./* ]]; then
          cp "$recipe_dir/${spec#./}" "$root$inputs/npm/"
          spec=$inputs/npm/$(basename "$spec")
        fi
        specs+=("$spec")
      done
      registry=()
      [ "${word[1]}" = - ] || registry=(--registry "${word[1]}")
      # global: /usr/local/lib/node_modules, which the guest's NODE_PATH names
      in_root npm install --global --ignore-scripts --no-audit --no-fund --no-update-notifier \
        "${registry[@]}" "${specs[@]}" || failed npm
      ;;
    copy)
      src=$recipe_dir/${word[1]}
      dest=$root${word[2]}
      mkdir -p "$(dirname "$dest")"
      rm -rf "$dest"
      cp -a --no-preserve=ownership "$src" "$dest" || failed copy
      chown -R 0:0 "$dest"
      chmod -R a+rX,go-w "$dest"
      ;;
    *)
      echo "derived: unknown step '$kind'"
      exit 1
      ;;
  esac
done

# As the stock tree is left (rootfs-base.sh): nothing may gain privileges, no caches.
find "$root" -xdev -type f -perm /6000 -exec chmod ug-s {} +
umount "$root/proc"
rm -rf "$root$inputs" "$root"/dev/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
  "$root"/var/log/* "$root"/root/.npm "$root"/root/.cache
cp -a "$base/etc/resolv.conf" "$root/etc/resolv.conf" 2>/dev/null || rm -f "$root/etc/resolv.conf"
du -sh "$root"
