/* The MCP server's own seccomp filter (confine.h). A denylist, where airlock-vmm's is an allowlist:
 * the server legitimately does much (libuv's loop, spawning VMs, building images with debootstrap
 * and mkfs in child processes), and every child inherits the filter, so the list holds only what
 * none of them ever needs: what would let a taken-over server reach into other processes or the
 * kernel itself. A listed syscall fails with EPERM rather than killing, so that a child that
 * probes one (a build tool) fails politely, not mysteriously.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "confine.h"

struct denied_syscall {
	int nr;
	const char *why;
};

static const struct denied_syscall denied[] = {
#if !defined(__SANITIZE_ADDRESS__) /* LeakSanitizer stops the process's threads with ptrace */
	{SCMP_SYS(ptrace), "reading or steering another process (a VM monitor among them)"},
#endif
	{SCMP_SYS(process_vm_readv), "reading another process's memory"},
	{SCMP_SYS(process_vm_writev), "writing another process's memory"},
	{SCMP_SYS(kcmp), "probing other processes' kernel objects"},
	{SCMP_SYS(init_module), "loading kernel code"},
	{SCMP_SYS(finit_module), "loading kernel code"},
	{SCMP_SYS(delete_module), "unloading kernel code"},
	{SCMP_SYS(kexec_load), "replacing the running kernel"},
	{SCMP_SYS(kexec_file_load), "replacing the running kernel"},
	{SCMP_SYS(bpf), "kernel programs and maps"},
	{SCMP_SYS(perf_event_open), "observing other processes and the kernel"},
	{SCMP_SYS(userfaultfd), "a classic aid to kernel exploits"},
	{SCMP_SYS(keyctl), "the kernel keyrings"},
	{SCMP_SYS(add_key), "the kernel keyrings"},
	{SCMP_SYS(request_key), "the kernel keyrings"},
	{SCMP_SYS(reboot), "the host's power"},
	{SCMP_SYS(swapon), "the host's swap"},
	{SCMP_SYS(swapoff), "the host's swap"},
	{SCMP_SYS(acct), "process accounting for the whole host"},
	{SCMP_SYS(settimeofday), "the host's clock"},
	{SCMP_SYS(clock_settime), "the host's clock"},
	{SCMP_SYS(clock_adjtime), "the host's clock"},
	{SCMP_SYS(adjtimex), "the host's clock"},
	{SCMP_SYS(iopl), "raw port I/O on the host"},
	{SCMP_SYS(ioperm), "raw port I/O on the host"},
	{SCMP_SYS(open_by_handle_at), "opening files past mount and path checks"},
	{SCMP_SYS(quotactl), "file system quotas of the host"},
	{SCMP_SYS(lookup_dcookie), "kernel profiling internals"},
	{SCMP_SYS(syslog), "the kernel log"},
	{SCMP_SYS(io_uring_setup), "a second syscall interface, past this filter (libuv 1.44 uses none)"},
	{SCMP_SYS(io_uring_enter), "a second syscall interface, past this filter"},
	{SCMP_SYS(io_uring_register), "a second syscall interface, past this filter"},
	{SCMP_SYS(pidfd_getfd), "taking another process's open files"},
	{SCMP_SYS(process_madvise), "acting on another process's memory"},
	/* the new mount API: bubblewrap (0.8) and the read-only views of the VM's files
	 * (readonly_files.c) mount with mount(2) only */
	{SCMP_SYS(fsopen), "the new mount API"},
	{SCMP_SYS(fsconfig), "the new mount API"},
	{SCMP_SYS(fsmount), "the new mount API"},
	{SCMP_SYS(fspick), "the new mount API"},
	{SCMP_SYS(open_tree), "the new mount API: detached copies of mounts"},
	{SCMP_SYS(move_mount), "the new mount API"},
	{SCMP_SYS(mount_setattr), "the new mount API: changing a mount's flags"},
};

int host_filter_install(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return -ENOMEM;
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1); /* libuv's threads too */
	for (size_t i = 0; rc == 0 && i < sizeof denied / sizeof denied[0]; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i].nr, 0);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	return rc;
}

int host_filter_selftest(void)
{
	/* perf_event_open with no attributes: EFAULT unless the filter answers first with EPERM */
	long r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
	int err = errno;
	fprintf(stderr, "airlock: seccomp self-test: perf_event_open %s\n",
		r < 0 && err == EPERM ? "refused (EPERM): the filter is on"
				      : "was not refused by the filter");
	return r < 0 && err == EPERM ? 0 : -1;
}
