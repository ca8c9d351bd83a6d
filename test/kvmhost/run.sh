#!/bin/bash
# Boots the KVM test host (QEMU TCG, AMD CPU with SVM) and runs COMMAND in it.
# Usage: run.sh --base DIR --payload DIR --disk ROOTFS_EXT4
#               [--cache-disk FILE] [--memory-mb N] [--timeout S] -- COMMAND
# DIR (from build.sh) holds vmlinuz and base.cpio.  The payload directory
# appears as /tmp/payload (the working directory) inside the host.  Exits
# with COMMAND's exit status, or 1 if the host never reported one.  --cache-disk
# adds FILE (an ext4 image) as the host's second, writable disk: inside.sh keeps airlock's image
# directory on it, so that one boot's snapshots serve the next boots of a test run.
set -euo pipefail

usage() {
  echo "usage: $0 --base DIR --payload DIR --disk ROOTFS_EXT4 [--cache-disk FILE] [--memory-mb N] [--timeout S] -- COMMAND" >&2
  exit 2
}
die() { echo "run.sh: ERROR: $*" >&2; exit 1; }

BASE="" PAYLOAD="" DISK="" CACHE_DISK="" MEM=3072 TIMEOUT=1800
while [ $# -gt 0 ]; do
  case "$1" in
    --base) BASE=${2:?}; shift 2 ;;
    --payload) PAYLOAD=${2:?}; shift 2 ;;
    --disk) DISK=${2:?}; shift 2 ;;
    --cache-disk) CACHE_DISK=${2:?}; shift 2 ;;
    --memory-mb) MEM=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ $# -gt 0 ] || usage
CMD="$*"
[ -n "$BASE" ] && [ -n "$PAYLOAD" ] && [ -n "$DISK" ] || usage
[ -f "$BASE/vmlinuz" ] || die "$BASE/vmlinuz not found (run build.sh)"
[ -f "$BASE/base.cpio" ] || die "$BASE/base.cpio not found (run build.sh)"
[ -d "$PAYLOAD" ] || die "payload directory '$PAYLOAD' not found"
[ -f "$DISK" ] || die "disk image '$DISK' not found"
[ -z "$CACHE_DISK" ] || [ -f "$CACHE_DISK" ] || die "cache disk '$CACHE_DISK' not found"
[[ $MEM =~ ^[0-9]+$ ]] || die "--memory-mb must be a number"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
QEMU=${KVMHOST_QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null || die "$QEMU not found"

TMP=$(mktemp -d /tmp/kvmhost-run.XXXXXX)
QPID=""
cleanup() {
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    kill -TERM "$QPID" 2>/dev/null || true   # timeout(1) forwards it to QEMU
    wait "$QPID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM HUP

# initrd = base.cpio + payload.cpio (the kernel unpacks concatenated archives).
mkdir "$TMP/stage"
cp -a "$PAYLOAD" "$TMP/stage/payload" || die "copying payload failed"
(cd "$TMP/stage" && find payload | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
  > "$TMP/payload.cpio" || die "building payload.cpio failed"
cat "$BASE/base.cpio" "$TMP/payload.cpio" > "$TMP/initrd" || die "building initrd failed"
rm -rf "$TMP/stage" "$TMP/payload.cpio"

APPEND="console=ttyS0 quiet panic=-1 nokaslr ${KVMHOST_APPEND:-}kvmhost.cmd=$(printf '%s' "$CMD" | base64 -w0)"
# x86 COMMAND_LINE_SIZE is 2048; longer command lines are silently truncated.
[ ${#APPEND} -lt 2000 ] || die "command too long for the kernel command line (${#APPEND} bytes); put it in a script in the payload"

mkfifo "$TMP/console"
START=$(date +%s.%N)
elapsed() { echo "$(date +%s.%N) $START" | awk '{printf "%.1f", $1 - $2}'; }
# One CPU. With two, the nested guests died now and then: restored airlock-vmm VMs triple-faulted
# (restore_stress.py, 8 workers: 4 in 170 restores, QEMU 7.2; 1 in 256 under QEMU 10.0) and
# the test host's own kernel read `current` through a wrong GS base after a nested VM exit.
# With one: none in 640 (2026-12-06: 256 without the MP table, 384 with it), and no slower for
# the CI suites (run.kvm 181 s against 197 s). The experiments' knobs: KVMHOST_SMP,
# KVMHOST_ACCEL (tcg,thread=single), KVMHOST_QEMU with KVMHOST_QEMU_DATA (another QEMU build and
# its firmware directory).
echo "run.sh: booting test host (memory ${MEM} MiB, ${KVMHOST_SMP:-1} CPU, timeout ${TIMEOUT} s)"
timeout -k 10 "$TIMEOUT" "$QEMU" ${KVMHOST_QEMU_DATA:+-L "$KVMHOST_QEMU_DATA" -L /usr/share/seabios} \
  -M q35 -accel "${KVMHOST_ACCEL:-tcg}" -cpu "${KVMHOST_CPU:-EPYC,+svm,+npt}" \
  -smp "${KVMHOST_SMP:-1}" -m "$MEM" -nodefaults -display none -no-reboot \
  ${KVMHOST_MONITOR:+-monitor "unix:$KVMHOST_MONITOR,server,nowait"} \
  -kernel "$BASE/vmlinuz" -initrd "$TMP/initrd" -append "$APPEND" \
  -drive "file=$DISK,if=virtio,format=raw,readonly=on" \
  ${CACHE_DISK:+-drive "file=$CACHE_DISK,if=virtio,format=raw"} \
  -serial stdio -net none \
  </dev/null >"$TMP/console" 2>&1 &
QPID=$!

EXIT_STATUS=""
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'}
  case "$line" in
    "qemu-system-x86_64: warning: TCG doesn't support requested feature"*)
      continue ;;  # harmless: the EPYC model lists features TCG lacks
  esac
  printf '%s\n' "$line"
  case "$line" in
    "kvmhost-init: starting command"*)
      echo "run.sh: command starting after $(elapsed) s" ;;
    "KVMHOST-EXIT: "*)
      EXIT_STATUS=${line#KVMHOST-EXIT: } ;;
  esac
done < "$TMP/console"

set +e
wait "$QPID"
QRC=$?
set -e
QPID=""
TOTAL=$(elapsed)

if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
  echo "run.sh: ERROR: timed out after ${TIMEOUT} s; QEMU was killed" >&2
  exit 1
fi
if [[ ! $EXIT_STATUS =~ ^[0-9]+$ ]]; then
  echo "run.sh: ERROR: the test host never printed a KVMHOST-EXIT line (QEMU exit code $QRC, ${TOTAL} s); see the console output above" >&2
  exit 1
fi
[ "$QRC" = 0 ] || echo "run.sh: warning: QEMU exited with code $QRC" >&2
echo "run.sh: command exited with status $EXIT_STATUS; total ${TOTAL} s"
exit "$EXIT_STATUS"
