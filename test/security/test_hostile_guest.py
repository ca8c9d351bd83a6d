#!/usr/bin/env python3
"""A hostile guest against airlock-vmm (python3 stdlib only; needs a /dev/kvm that runs guests,
so test/run.sh runs it inside the KVM test host).

The guest is test/guests/hostile.c, booted in place of the kernel: it breaks the virtio rules on
the block device and on both queues of the console (descriptor loops, addresses outside RAM, on
the MMIO registers and across RAM's end, 4 GiB lengths, indirect tables, heads and avail indices
out of range, rings outside RAM, queue sizes 0, 3 and 65535, misaligned rings, notifies before a
queue is ready, buffers over the rings, reads past the disk), floods the monitor with MMIO and
port exits, writes garbage to every UART register, and triple-faults. For each VMM given (the
release build and the ASan/UBSan build) every attack must end the same way: the device that was
attacked reports NEEDS_RESET and the monitor logs why, the host process is not killed by a
signal and exits normally when the guest ends, its peak memory stays small, and the sanitizers
report nothing. One PASS/FAIL line per check, then "N passed, N failed".

    python3 test/security/test_hostile_guest.py [--rounds N] VMM [VMM...]
"""
import argparse
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOSTILE = "build/test/guests/hostile"
MEMORY_MB = 128
# The VMM's own footprint is a few MiB; guest pages the attacks touch count too. ASan's shadow
# and quarantine take more.
MAX_RSS_MB = {"plain": 32, "asan": 64}

# Malformed queues: the device must fail (NEEDS_RESET) and the monitor say why.
MALFORMED = ["descriptor-loop", "address-out-of-range", "address-straddles-ram-end",
             "address-on-mmio-registers", "huge-length", "indirect-not-offered",
             "head-out-of-range", "avail-index-jump", "rings-outside-ram", "queue-size-0",
             "queue-size-3", "queue-size-65535", "misaligned-rings"]
QUEUES = ["blk", "console-tx", "console-rx"]

results = []


def report(ok, name, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""),
          flush=True)


def run_guest(vmm, attack, timeout=300):
    """Boots the hostile guest with one attack. Returns (exit status, stderr, serial log, peak
    RSS in MiB as last sampled, seconds). The channel is kept full of bytes for the console's
    receive queue and drained of what the guest transmits."""
    host, guest = socket.socketpair()
    disk = tempfile.NamedTemporaryFile(prefix="hostile-disk-")
    disk.truncate(1 << 20)
    serial = tempfile.NamedTemporaryFile(prefix="hostile-serial-")
    stderr = tempfile.TemporaryFile()
    stop = threading.Event()

    def feed():
        host.settimeout(0.05)
        junk = bytes(range(256)) * 16
        while not stop.is_set():
            try:
                host.send(junk)
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                return
            try:
                host.recv(65536)
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                return
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    started = time.monotonic()
    proc = subprocess.Popen([vmm, "--kernel", HOSTILE, "--rootfs", disk.name, "--channel-fd",
                             str(guest.fileno()), "--memory-mb", str(MEMORY_MB), "--serial-log",
                             serial.name, "--cmdline-extra", "hostile=" + attack],
                            pass_fds=[guest.fileno()], stdout=subprocess.DEVNULL, stderr=stderr)
    guest.close()
    status = None
    timed_out = False
    peak_kb = 0
    deadline = started + timeout
    try:
        while status is None:
            peak_kb = max(peak_kb, _vm_hwm_kb(proc.pid))
            pid, st = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                status = st
                proc.returncode = os.waitstatus_to_exitcode(st)
            elif time.monotonic() > deadline and not timed_out:
                proc.kill()
                timed_out = True
            else:
                time.sleep(0.02)
    finally:
        if status is None:
            proc.kill()
            proc.wait()
        stop.set()
        feeder.join()
        host.close()
    took = time.monotonic() - started
    stderr.seek(0)
    err = stderr.read().decode(errors="replace")
    with open(serial.name, "rb") as f:
        log = f.read().decode(errors="replace")
    if timed_out:
        return None, err + " [killed after %d s]" % timeout, log, peak_kb / 1024, took
    return proc.returncode, err, log, peak_kb / 1024, took


def _vm_hwm_kb(pid):
    """The peak resident memory so far of airlock-vmm, its supervisor and the VM below it
    (VmHWM starts again at exec, unlike the rusage of a child forked from this Python)."""
    total = 0
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            total += sum(_vm_hwm_kb(int(child)) for child in f.read().split())
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return total


def sanitizer_report(err):
    m = re.search(r"(ERROR: AddressSanitizer.*|runtime error.*|LeakSanitizer.*)", err)
    return m.group(1)[:200] if m else ""


def common_checks(kind, name, code, err, rss, took, expect_status=0):
    """What every attack must leave: a normal exit, no sanitizer report, a small footprint."""
    report(code == expect_status, "%s: %s: the monitor exits %d (not killed by a signal)"
           % (kind, name, expect_status),
           "exit %s after %.1f s; stderr: %s" % (code, took, err.strip()[-300:].replace("\n", " | ")))
    san = sanitizer_report(err)
    report(not san, "%s: %s: no sanitizer report" % (kind, name), san)
    # a run too short to sample fails too: a bound never measured proves nothing
    report(0 < rss <= MAX_RSS_MB[kind], "%s: %s: peak memory stays small" % (kind, name),
           "peak RSS %.1f MiB (bound %d MiB)" % (rss, MAX_RSS_MB[kind]) if rss else
           "ended before its memory was sampled")


def statuses(log):
    found = {}
    for m in re.finditer(r"hostile: (\S+) (status|blk-status)=0x([0-9a-f]+)", log):
        found[m.group(1)] = int(m.group(3), 16)
    return found


def virtio_attacks(kind, vmm):
    code, err, log, rss, took = run_guest(vmm, "virtio")
    common_checks(kind, "malformed virtqueues", code, err, rss, took)
    report("hostile: done" in log, "%s: the guest got through every attack (the monitor kept "
           "serving it)" % kind, log.strip().splitlines()[-1] if log.strip() else "no serial output")
    seen = statuses(log)
    for q in QUEUES:
        sound = seen.get(q + ".sound-request")
        report(sound == 0xf, "%s: %s: a sound request is served (status DRIVER_OK, no "
               "NEEDS_RESET)" % (kind, q), "status %s" % _hex(sound))
        failed = [case for case in MALFORMED if (seen.get("%s.%s" % (q, case)) or 0) & 0x40]
        missing = [case for case in MALFORMED if case not in failed]
        report(not missing, "%s: %s: %d malformed queues each end the device (NEEDS_RESET)"
               % (kind, q, len(MALFORMED)),
               "failed: %d; did not: %s" % (len(failed), ", ".join(missing) or "none"))
        early = seen.get(q + ".notify-before-ready")
        report(early is not None and not early & 0x40, "%s: %s: notifies before a queue is ready "
               "are ignored" % (kind, q), "status %s" % _hex(early))
        report((q + ".buffer-overlaps-rings") in seen, "%s: %s: a buffer over the rings is "
               "handled" % (kind, q), "status %s" % _hex(seen.get(q + ".buffer-overlaps-rings")))
    for case in ("sector-past-disk-end", "sector-overflow"):
        st = seen.get("blk." + case)
        report(st == 1, "%s: blk: %s answered VIRTIO_BLK_S_IOERR" % (kind, case),
               "blk status %s" % _hex(st))
    st = seen.get("blk.short-header-no-status")
    report(st is not None and not st & 0x40, "%s: blk: a request without header or status byte "
           "is returned unanswered" % kind, "status %s" % _hex(st))
    reasons = sorted(set(re.findall(r"device failed: ([^\n]+)", err)))
    report(len(reasons) >= 3 and all(r.strip() for r in reasons),
           "%s: the monitor names each failure" % kind, "; ".join(reasons))


def _hex(v):
    return "none" if v is None else hex(v)


def exit_floods(kind, vmm, rounds):
    code, err, log, rss, took = run_guest(vmm, "flood:%d" % rounds)
    common_checks(kind, "a flood of %d MMIO and port exits" % (4 * rounds), code, err, rss, took)
    report("flood.exits done" in log and "hostile: done" in log,
           "%s: the flood ran to its end" % kind, "%.0f exits/s" % (4 * rounds / max(took, 1e-3)))
    code, err, log, rss, took = run_guest(vmm, "serial:%d" % rounds)
    common_checks(kind, "garbage on every UART register", code, err, rss, took)
    report("serial.garbage done" in log and "hostile: done" in log,
           "%s: the UART still prints after the garbage" % kind,
           "serial log %d bytes" % len(log))


def triple_fault(kind, vmm):
    code, err, log, rss, took = run_guest(vmm, "fault")
    common_checks(kind, "a triple fault", code, err, rss, took)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20000, help="flood rounds (4 exits each)")
    ap.add_argument("vmm", nargs="+", help="airlock-vmm builds; a path with 'asan' in it is "
                    "the sanitizer build")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for vmm in args.vmm:
        kind = "asan" if "asan" in vmm else "plain"
        virtio_attacks(kind, vmm)
        exit_floods(kind, vmm, args.rounds)
        triple_fault(kind, vmm)
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
