#!/usr/bin/env python3
"""airlock on hosts where airlock-vmm's jail is not the usual one, inside the KVM test host
(python3 stdlib only).

1. From an initramfs: airlock runs as root straight from the initial ramfs (PID 1's own root
   and mount namespace: nsenter -t 1 -m -r, not the test host's switched root), with only proc,
   sysfs, devtmpfs and a tmpfs mounted and no cgroup file system, as a busybox init leaves it.
   pivot_root cannot leave that root; `airlock run --backend kvm 'print(1)'` must print 1 and
   `airlock doctor` must say kvm works.
2. A jail the kernel refuses (user.max_user_namespaces=0 for the run): `airlock doctor` must say
   kvm cannot run, naming the cause and the fix, and `airlock run --backend kvm` must fail with
   that same reason, not a bare errno from inside the jail.

Run from the host:
    KVMHOST_EXTRA=test/kvmhost/jail_host_test.py bash test/kvmhost/suite.sh jail_host_test.py \\
        [--airlock PATH] [--vmm PATH]
One PASS/FAIL line per check, then "N passed, N failed".
"""
import argparse
import os
import re
import subprocess
import sys

INITRAMFS = "/proc/1/root"  # PID 1 (the test host's init) runs in the initial ramfs
results = []


def report(ok, name, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""),
          flush=True)


def one_line(text, limit=600):
    return text.strip().replace("\n", " | ")[-limit:]


def kvm_line(doctor_out):
    m = re.search(r"^(\S+)\s+kvm\s+(.*)$", doctor_out, re.M)
    return (m.group(1), m.group(2)) if m else ("?", "no kvm line")


# The inner script, run from the initial ramfs: mounts what a busybox init mounts, makes an
# image directory over the payload's kernel and the test host's disk (the guest image), and
# runs airlock's doctor and a program.
INNER = r"""
set -u
cd /
for fs in proc:/proc sysfs:/sys devtmpfs:/dev tmpfs:/tmp; do  # a second run finds them mounted
  mountpoint -q ${fs#*:} || mount -t ${fs%:*} ${fs%:*} ${fs#*:} ||
    { echo "INNER: cannot mount ${fs#*:}"; exit 99; }
done
rm -rf /tmp/images
head -1 /proc/self/mountinfo | sed 's/^/INNER: root mount: /'
kernel=$(echo "$RECIPE" | grep -o 'kernel-[0-9a-f]*')
rootfs=$(echo "$RECIPE" | grep -o 'rootfs-[0-9a-f]*')
mkdir -p /tmp/images/$kernel /tmp/images/$rootfs
ln -s /payload/vmlinux /tmp/images/$kernel/vmlinux
ln -s /dev/vda /tmp/images/$rootfs/rootfs.ext4
echo "INNER: doctor"
"$AIRLOCK" doctor
echo "INNER: run"
timeout 600 "$AIRLOCK" run --backend kvm 'print(1)'
echo "INNER: run exit $?"
"""


def from_initramfs(airlock, vmm):
    """Airlock as root from the initial ramfs. The payload is there too (/payload, what the
    test host's init bound at /tmp/payload); the disk's userland is reached through links."""
    for d in ("usr", "etc"):
        if not os.path.lexists(os.path.join(INITRAMFS, d)):
            os.symlink("/newroot/" + d, os.path.join(INITRAMFS, d))
    for d in ("bin", "lib", "lib64", "sbin"):
        if not os.path.lexists(os.path.join(INITRAMFS, d)):
            os.symlink("usr/" + d, os.path.join(INITRAMFS, d))
    for d in ("tmp", "proc", "sys", "dev"):
        os.makedirs(os.path.join(INITRAMFS, d), exist_ok=True)
    recipe = subprocess.run([airlock, "image", "list"], capture_output=True, text=True).stdout
    recipe = re.search(r"^current recipe:\s*(.*)$", recipe, re.M).group(1)
    payload = os.getcwd()  # /tmp/payload here is /payload there
    env = {"PATH": "/usr/bin:/usr/sbin", "RECIPE": recipe,
           "AIRLOCK": "/payload/" + os.path.relpath(os.path.abspath(airlock), payload),
           "AIRLOCK_VMM": "/payload/" + os.path.relpath(os.path.abspath(vmm), payload),
           "AIRLOCK_RECIPES": "/payload/images", "AIRLOCK_IMAGES": "/tmp/images",
           "AIRLOCK_AGENT": "/payload/build/agent/airlock-agent",
           "LD_LIBRARY_PATH": "/payload/lib"}
    p = subprocess.run(["nsenter", "-t", "1", "-m", "-r", "-w", "--", "/bin/bash", "-c", INNER],
                       env=env, capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    print(out, flush=True)
    root = re.search(r"INNER: root mount: (.*)", out)
    report(root is not None and re.match(r"(\d+) \1 .* / / .*rootfs", root.group(1)) is not None,
           "initramfs: airlock runs from the initial ramfs (its root mount is the namespace's "
           "first)", root.group(1) if root else "no mountinfo: " + one_line(out))
    doctor = out.split("INNER: doctor", 1)[-1].split("INNER: run", 1)[0]
    verdict, why = kvm_line(doctor)
    report(verdict == "ok", "initramfs: airlock doctor says kvm works", "%s %s" % (verdict, why))
    run = out.split("INNER: run\n", 1)[-1]
    m = re.search(r"INNER: run exit (\d+)", run)
    report(m is not None and m.group(1) == "0" and run.startswith("1\n"),
           "initramfs: airlock run --backend kvm 'print(1)' prints 1", one_line(run))


def refused_jail(airlock, vmm):
    """user.max_user_namespaces=0: the jail's user namespace is refused to root too."""
    path = "/proc/sys/user/max_user_namespaces"
    with open(path) as f:
        saved = f.read().strip()
    env = dict(os.environ, AIRLOCK_VMM=os.path.abspath(vmm))
    try:
        with open(path, "w") as f:
            f.write("0")
        doctor = subprocess.run([airlock, "doctor"], env=env, capture_output=True, text=True,
                                timeout=120).stdout
        run = subprocess.run([airlock, "run", "--backend", "kvm", "print(1)"], env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        with open(path, "w") as f:
            f.write(saved)
    verdict, why = kvm_line(doctor)
    named = "user.max_user_namespaces" in why and "sysctl" in why
    report(verdict == "no" and named,
           "refused jail: airlock doctor says kvm cannot run, with the cause and the fix",
           "%s %s" % (verdict, why))
    # the reason doctor gave, from airlock-vmm's "jail:" on, must be the run's
    reason = why[why.find("jail:"):] if "jail:" in why else why
    report(run.returncode != 0 and named and reason in run.stderr,
           "refused jail: airlock run --backend kvm fails with that same reason",
           "exit %d, stderr: %s" % (run.returncode, one_line(run.stderr)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--airlock", default="build/mcp/airlock")
    ap.add_argument("--vmm", default="build/vmm/airlock-vmm")
    args = ap.parse_args()
    print("airlock %s, airlock-vmm %s" % (args.airlock, args.vmm), flush=True)
    refused_jail(args.airlock, args.vmm)
    from_initramfs(args.airlock, args.vmm)
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
