#!/usr/bin/env bash
# Runs inside the KVM test host (in the payload directory): points airlock at this payload's
# programs and recipes, makes an image directory whose kernel is the payload's vmlinux and whose
# root file system is the test host's own disk (/dev/vda, the same image), then runs the script
# given (a Python test or perf script, a node --test file, or a .sh) with the kvm backend.
# Usage: inside.sh [--args-file FILE] [--env NAME=VALUE]... SCRIPT [ARGS...]
# Around the script, the evidence test/runner.py reads about the test host's own health (none
# of it from airlock): kvm_keeper.py's heartbeats, and a fresh-VM probe before and after
# ("kvmhost-canary: ok|FAILED"). Last line: "kvmhost-script-exit: N", N the script's status.
set -u
if [ "${1:-}" = --args-file ]; then
  mapfile -t args <"$2"
  set -- "${args[@]}"
fi
while [ "${1:-}" = --env ]; do
  export "$2"
  shift 2
done
export AIRLOCK_RECIPES=$PWD/images AIRLOCK_IMAGES=/tmp/images AIRLOCK_TEST_BACKEND=kvm
export AIRLOCK_AGENT=$PWD/build/agent/airlock-agent
# a UBSan finding in the sanitizer build stops it and shows where (as on the host)
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# A nested boot runs at emulation speed: a fresh test host's first VM of a language (its snapshot
# made first) took up to 46 s of airlock's 60 s boot deadline, and over it under load (the
# heavy user-code boot, 2026-12-06). The deadline is scaled like the tests' own.
export AIRLOCK_BOOT_TIMEOUT=${AIRLOCK_BOOT_TIMEOUT:-180}
# The image directory on the run's cache disk (test/runner.py's), when the host has one: the
# snapshots an earlier boot made serve this one (making them takes a minute here).
mkdir -p /tmp/images
if [ -b /dev/vdb ]; then
  if mount -t ext4 -o nosuid,nodev /dev/vdb /tmp/images; then
    echo "inside.sh: image directory on the run's cache disk: $(ls /tmp/images | grep -c '^snapshot-') snapshots there"
  else
    echo "inside.sh: cannot mount the cache disk /dev/vdb; snapshots are made in this boot"
  fi
fi
recipe=$(build/mcp/airlock image list | sed -n 's/^current recipe: *//p')
kernel=$(echo "$recipe" | grep -o 'kernel-[0-9a-f]*')
rootfs=$(echo "$recipe" | grep -o 'rootfs-[0-9a-f]*')
mkdir -p "/tmp/images/$kernel" "/tmp/images/$rootfs"
ln -sf "$PWD/vmlinux" "/tmp/images/$kernel/vmlinux"
ln -sf /dev/vda "/tmp/images/$rootfs/rootfs.ext4"
build/mcp/airlock doctor
# The test host's init leaves lo down; the egress tests' servers listen on 127.0.0.2, which
# airlock must reach (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP | IFF_RUNNING).
python3 -c 'import fcntl, socket, struct
s = socket.socket()
f = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", f | 0x1 | 0x40))'
# One VM held for the whole run, so that KVM's static keys are not flipped (and the kernel's
# code patched) at every VM's start and end: QEMU TCG mishandles that patching (kvm_keeper.py).
# Its vCPU beats every 5 s: the runner's evidence that the test host still runs.
rm -f /tmp/kvm_keeper.ready
python3 kvm_keeper.py --interval 5 --ready /tmp/kvm_keeper.ready &
keeper=$!
trap 'kill $keeper 2>/dev/null' EXIT
for _ in $(seq 600); do
  [ -e /tmp/kvm_keeper.ready ] || ! kill -0 $keeper 2>/dev/null && break
  sleep 0.1
done
python3 kvm_keeper.py --probe
script=$1
shift
case $script in
  *.sh) bash "$script" "$@" ;;
  *.mjs) PATH=$PWD/bin:$PATH node --test --test-reporter=tap "$@" "$script" ;;
  *) python3 "$script" "$@" ;;
esac
status=$?
python3 kvm_keeper.py --probe
echo "kvmhost-script-exit: $status"
exit $status
