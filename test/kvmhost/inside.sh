#!/usr/bin/env bash
# Runs inside the KVM test host (in the payload directory): points airlock at this payload's
# programs and recipes, makes an image directory whose kernel is the payload's vmlinux and whose
# root file system is the test host's own disk (/dev/vda, the same image), then runs the script
# given (a Python test or perf script) with the kvm backend.
set -u
export AIRLOCK_RECIPES=$PWD/images AIRLOCK_IMAGES=/tmp/images AIRLOCK_TEST_BACKEND=kvm
export AIRLOCK_AGENT=$PWD/build/agent/airlock-agent
recipe=$(build/mcp/airlock image list | sed -n 's/^current recipe: *//p')
kernel=$(echo "$recipe" | grep -o 'kernel-[0-9a-f]*')
rootfs=$(echo "$recipe" | grep -o 'rootfs-[0-9a-f]*')
mkdir -p "/tmp/images/$kernel" "/tmp/images/$rootfs"
ln -sf "$PWD/vmlinux" "/tmp/images/$kernel/vmlinux"
ln -sf /dev/vda "/tmp/images/$rootfs/rootfs.ext4"
build/mcp/airlock doctor
# One idle VM held for the whole run, so that KVM's static keys are not flipped (and the kernel's
# code patched) at every VM's start and end: QEMU TCG mishandles that patching (kvm_keeper.py).
python3 kvm_keeper.py &
keeper=$!
trap 'kill $keeper 2>/dev/null' EXIT
script=$1
shift
case $script in
  *.sh) bash "$script" "$@" ;;
  *) python3 "$script" "$@" ;;
esac
