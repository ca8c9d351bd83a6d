#!/bin/bash
# Builds the reusable part of the KVM test host (see README.md):
#   OUT_DIR/vmlinuz    Debian's stock amd64 kernel (current linux-image-amd64)
#   OUT_DIR/base.cpio  initramfs: /init, /modules/*.ko, /modules/order, dirs
# Usage: build.sh OUT_DIR INIT_BINARY
set -eEuo pipefail

STEP="start"
trap 'echo "build.sh: FAILED during step: $STEP (line $LINENO)" >&2' ERR
die() { echo "build.sh: ERROR ($STEP): $*" >&2; exit 1; }
log() { echo "build.sh: $*"; }

[ $# -eq 2 ] || { echo "usage: $0 OUT_DIR INIT_BINARY" >&2; exit 2; }
OUT=$1
INIT_BIN=$2
[ -f "$INIT_BIN" ] || die "init binary '$INIT_BIN' not found"
for t in apt-cache apt-get dpkg-deb cpio objcopy xz zstd; do
  command -v "$t" >/dev/null || die "required tool '$t' not found"
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

TMP=$(mktemp -d /tmp/kvmhost-build.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# Modules we want (plus their dependencies).  crc32c_generic is a soft
# dependency of ext4/jbd2 (crypto-crc32c) that modules.dep would not list.
WANT=(kvm_amd virtio_pci virtio_blk crc32c_generic ext4)

STEP="find kernel package"
PKG=$(apt-cache depends linux-image-amd64 2>/dev/null \
      | sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n1)
[ -n "$PKG" ] || die "could not find a linux-image-6.1.0-*-amd64 dependency of linux-image-amd64"
VER=$(apt-cache show "$PKG" | sed -n 's/^Version: //p' | head -n1)
log "kernel package: $PKG ($VER)"

STEP="download $PKG"
(cd "$TMP" && apt-get download "$PKG") 2>&1 | sed '/^W: Download is performed unsandboxed/d'
DEB=$(ls "$TMP"/"$PKG"_*.deb 2>/dev/null | head -n1)
[ -n "$DEB" ] && [ -f "$DEB" ] || die "apt-get download $PKG produced no .deb"
log "downloaded $(basename "$DEB")"

STEP="extract $PKG"
dpkg-deb -x "$DEB" "$TMP/x"
KREL=${PKG#linux-image-}
MODDIR="$TMP/x/lib/modules/$KREL"
VMLINUZ="$TMP/x/boot/vmlinuz-$KREL"
[ -f "$VMLINUZ" ] || die "no /boot/vmlinuz-$KREL in $PKG"
[ -d "$MODDIR/kernel" ] || die "no /lib/modules/$KREL/kernel in $PKG"

STEP="index modules"
norm() { local n=${1##*/}; n=${n%.xz}; n=${n%.zst}; n=${n%.gz}; n=${n%.ko}; echo "${n//-/_}"; }
declare -A PATHOF=() BUILTIN=() STATE=()
while IFS= read -r f; do
  PATHOF[$(norm "$f")]=$f
done < <(find "$MODDIR/kernel" -type f \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \))
if [ -f "$MODDIR/modules.builtin" ]; then
  while IFS= read -r f; do BUILTIN[$(norm "$f")]=1; done < "$MODDIR/modules.builtin"
fi
log "indexed ${#PATHOF[@]} modules, ${#BUILTIN[@]} built-in"
HAVE_MODDEP=0
declare -A MODDEP=()
if [ -f "$MODDIR/modules.dep" ]; then
  HAVE_MODDEP=1
  while IFS= read -r line; do
    mod=$(norm "${line%%:*}")
    deps=""
    for d in ${line#*:}; do deps+=" $(norm "$d")"; done
    MODDEP[$mod]=$deps
  done < "$MODDIR/modules.dep"
  log "using the package's modules.dep"
else
  log "package has no modules.dep (depmod runs at install time); reading depends= from each module's .modinfo"
fi

STAGE="$TMP/root"
mkdir -p "$STAGE/modules" "$STAGE/proc" "$STAGE/sys" "$STAGE/dev" "$STAGE/newroot" "$STAGE/payload"
ORDER=()

# Copies module $1 (normalized name) to $STAGE/modules/<name>.ko, decompressed.
stage_module() {
  local name=$1 src=${PATHOF[$1]} dst="$STAGE/modules/$1.ko"
  case "$src" in
    *.ko.xz)  xz -dc "$src" > "$dst" ;;
    *.ko.zst) zstd -qdc "$src" > "$dst" ;;
    *.ko.gz)  gzip -dc "$src" > "$dst" ;;
    *.ko)     cp "$src" "$dst" ;;
  esac
}

modinfo_field() { # $1 = .ko file, $2 = field
  objcopy -O binary --only-section=.modinfo "$1" /dev/stdout 2>/dev/null \
    | tr '\0' '\n' | sed -n "s/^$2=//p"
}

# Maps a softdep name (may be an alias like crypto-crc32c) to a module name.
resolve_soft() {
  local n=${1//-/_}
  if [ -n "${PATHOF[$n]:-}" ] || [ -n "${BUILTIN[$n]:-}" ]; then echo "$n"; return; fi
  case "$n" in
    crypto_*) n=${n#crypto_}
      if [ -n "${PATHOF[${n}_generic]:-}" ]; then echo "${n}_generic"; return; fi
      if [ -n "${PATHOF[$n]:-}" ]; then echo "$n"; return; fi ;;
  esac
  log "note: soft dependency '$1' not resolved to a module file, ignored" >&2
}

# Depth-first, dependencies first.
visit() {
  local name=${1//-/_}
  case "${STATE[$name]:-}" in
    done) return ;;
    busy) die "dependency cycle at module $name" ;;
  esac
  if [ -n "${BUILTIN[$name]:-}" ]; then
    log "  $name: built into the kernel, skipped"
    STATE[$name]="done"; return
  fi
  [ -n "${PATHOF[$name]:-}" ] || die "module $name not found in $PKG"
  STATE[$name]="busy"
  stage_module "$name"
  local deps="" d
  if [ "$HAVE_MODDEP" = 1 ]; then
    deps=${MODDEP[$name]:-}
  else
    deps=$(modinfo_field "$STAGE/modules/$name.ko" depends | tr ',' ' ')
  fi
  # softdep "pre:" modules (e.g. crypto-crc32c for ext4 and jbd2).
  local soft
  soft=$(modinfo_field "$STAGE/modules/$name.ko" softdep | sed -n 's/^pre: *\([^:]*\)\( post:.*\)\{0,1\}$/\1/p')
  for d in $soft; do
    d=$(resolve_soft "$d"); [ -n "$d" ] && visit "$d"
  done
  for d in $deps; do visit "$d"; done
  STATE[$name]="done"
  ORDER+=("$name")
}

STEP="resolve module dependencies"
for m in "${WANT[@]}"; do visit "$m"; done
printf '%s.ko\n' "${ORDER[@]}" > "$STAGE/modules/order"
log "module load order: ${ORDER[*]}"

STEP="write base.cpio"
install -m 0755 "$INIT_BIN" "$STAGE/init"
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort \
   | cpio -o -H newc -R 0:0 --quiet) > "$OUT/base.cpio.tmp"
mv "$OUT/base.cpio.tmp" "$OUT/base.cpio"
cp "$VMLINUZ" "$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$KREL ($VER)" > "$OUT/kernel-version"

STEP="done"
log "wrote $OUT/vmlinuz ($(stat -c %s "$OUT/vmlinuz") bytes, $KREL)"
log "wrote $OUT/base.cpio ($(stat -c %s "$OUT/base.cpio") bytes, ${#ORDER[@]} modules)"
