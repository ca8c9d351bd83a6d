/* airlock-vmm's seccomp filter: what the monitor may still ask of the host kernel once the guest
 * runs. Everything that opens files or creates KVM objects is done by then (main.c installs
 * this between setting the VM up and the first KVM_RUN), so the steady state needs little: KVM_RUN
 * and a few KVM requests, reads and writes on fds it already holds, the console thread's poll,
 * the lock between the two threads, memory for malloc, and the end. Any other syscall kills the
 * whole process (SIGSYS): a guest that took over this process can do no more than the table
 * below. Making a snapshot (--snapshot-to) adds what writing it needs; nothing else does.
 * libc is kept from opening files behind our back: one malloc arena (main.c) and the time zone
 * read before the filter (rtc.c). --seccomp-log logs instead of killing, to find what is missing
 * (the kernel's audit lines, type=1326, name the syscall).
 *
 * One line per syscall with the reason it is here. ioctl is allowed only with the requests
 * listed (on any fd: seccomp cannot see which fd is KVM's, and the process holds no other fd
 * that takes these numbers); mmap and mprotect never with PROT_EXEC.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm.h"

struct allowed_syscall {
	int nr;
	const char *why;
};

static const struct allowed_syscall steady_state[] = {
	{SCMP_SYS(read), "the host channel and eventfds (console thread)"},
	{SCMP_SYS(write), "the serial log, stderr, irqfd eventfds"},
	{SCMP_SYS(sendto), "the host channel: send() with MSG_NOSIGNAL"},
	{SCMP_SYS(recvmsg), "the host channel, straight into the guest's receive buffers"},
	{SCMP_SYS(lseek), "libc repositions an fd it holds (seen once while booting; no new access)"},
	{SCMP_SYS(pread64), "virtio-blk reads the root disk into guest memory"},
	{SCMP_SYS(poll), "the console thread waits for the channel and the guest's kicks"},
	{SCMP_SYS(ppoll), "the same, where libc implements poll with it"},
	{SCMP_SYS(futex), "the device lock shared by the vCPU and the console thread"},
	{SCMP_SYS(rt_sigreturn), "return from the SIGUSR1 kick and the SIGUSR2 snapshot signal"},
	{SCMP_SYS(rt_sigaction), "vm_run installs the SIGUSR1 kick handler"},
	{SCMP_SYS(rt_sigprocmask), "pthread_kill blocks signals around tgkill"},
	{SCMP_SYS(getpid), "pthread_kill names its own process"},
	{SCMP_SYS(gettid), "pthread_kill on itself"},
	{SCMP_SYS(munmap), "malloc returns memory"},
	{SCMP_SYS(brk), "malloc"},
	{SCMP_SYS(madvise), "malloc trims its arenas"},
	{SCMP_SYS(mremap), "realloc of large blocks"},
	{SCMP_SYS(clock_gettime), "time, where the vDSO falls back to the syscall"},
	{SCMP_SYS(close), "closing an fd it holds"},
	{SCMP_SYS(set_robust_list), "the console thread, started just before, registers itself"},
	{SCMP_SYS(rseq), "the same (glibc registers restartable sequences per thread)"},
	{SCMP_SYS(exit), "a thread ends"},
	{SCMP_SYS(exit_group), "the VMM ends"},
};

static const struct allowed_syscall writing_a_snapshot[] = {
	{SCMP_SYS(openat), "the snapshot's files, in the directory opened at start-up"},
	{SCMP_SYS(ftruncate), "the memory file's size (sparse)"},
	{SCMP_SYS(pwrite64), "the memory file's non-zero pages"},
	{SCMP_SYS(fsync), "the files and the directory, before the state names them"},
	{SCMP_SYS(renameat), "a file replaces the old one only once complete"},
	{SCMP_SYS(unlinkat), "the old state goes first; a failed temporary file goes"},
	{SCMP_SYS(newfstatat), "libc's fstat"},
	{SCMP_SYS(fstat), "the same, older libc"},
};

/* Saving a kept state into the fds airlock handed over (snapshot_save_kept): no open at all. */
static const struct allowed_syscall writing_a_kept_state[] = {
	{SCMP_SYS(pread64), "our own page map, opened at start-up"},
	{SCMP_SYS(pwrite64), "the state file"},
	{SCMP_SYS(writev), "the changed pages, a batch at a time"},
	{SCMP_SYS(fsync), "the state and the pages, before the monitor exits"},
	{SCMP_SYS(prlimit64), "the file-size limit raised from the log's to the pages'"},
	{SCMP_SYS(newfstatat), "libc's fstat"},
	{SCMP_SYS(fstat), "the same, older libc"},
};

/* KVM requests after set-up: running (interrupts go through irqfd eventfds), and reading the
 * vCPU's own state back when the guest ends or stalls unexplained (kvm_report.c). */
static const struct {
	unsigned long request;
	const char *why;
} steady_ioctls[] = {
	{KVM_RUN, "the vCPU runs"},
	{KVM_GET_SREGS, "a triple fault: the guest's own reboot (empty IDT) or a crash"},
	{KVM_GET_REGS, "the state of a VM that crashed or stalls, for its log"},
	{KVM_GET_VCPU_EVENTS, "the same: pending exceptions and interrupts"},
	{KVM_GET_MP_STATE, "the same: running or halted"},
	{KVM_GET_LAPIC, "the same: the local APIC's timer and pending vectors"},
};

/* Reading the VM's state for a snapshot (kvm_state.c). */
static const unsigned long snapshot_ioctls[] = {
	KVM_GET_CLOCK,      KVM_GET_PIT2,       KVM_GET_IRQCHIP,     KVM_GET_MP_STATE,
	KVM_GET_REGS,       KVM_GET_SREGS,      KVM_GET_XSAVE,       KVM_GET_XSAVE2,
	KVM_GET_XCRS,       KVM_GET_DEBUGREGS,  KVM_GET_LAPIC,       KVM_GET_MSRS,
	KVM_GET_VCPU_EVENTS, KVM_GET_TSC_KHZ,   KVM_GET_CPUID2,      KVM_GET_MSR_INDEX_LIST,
	KVM_CHECK_EXTENSION, KVM_KVMCLOCK_CTRL,
};

static int allow_all(scmp_filter_ctx ctx, const struct allowed_syscall *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, list[i].nr, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int allow_ioctls(scmp_filter_ctx ctx, const unsigned long *requests, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		/* compared as 32 bits: the kernel takes the request as unsigned int */
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
					  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, requests[i]));
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* tgkill: the console thread kicks the vCPU out of KVM_RUN; only within this process, so that a
 * taken-over monitor cannot signal another VM's (they all run as the same outside user). */
static int allow_signals_to_itself(scmp_filter_ctx ctx)
{
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
				SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
}

/* mmap (malloc's arenas and large blocks) and mprotect (a new thread arena), never executable. */
static int allow_memory_without_exec(scmp_filter_ctx ctx)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				  SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				      SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	return rc;
}

/* The ASan/UBSan build (tests only) logs instead of killing: the sanitizers' runtime makes
 * syscalls of its own (its allocator, its reports, the leak check at exit) that no steady-state
 * table can list. The release build, the one that ships, always kills. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define SANITIZER_BUILD true
#else
#define SANITIZER_BUILD false
#endif

int vmm_seccomp_install(const struct vmm_seccomp_options *o)
{
	bool log_only = o->log_only || SANITIZER_BUILD;
	scmp_filter_ctx ctx = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return -ENOMEM;
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1); /* the console thread too */
	if (rc == 0)
		rc = allow_all(ctx, steady_state, sizeof steady_state / sizeof steady_state[0]);
	for (size_t i = 0; rc == 0 && i < sizeof steady_ioctls / sizeof steady_ioctls[0]; i++)
		rc = allow_ioctls(ctx, &steady_ioctls[i].request, 1);
	if (rc == 0)
		rc = allow_memory_without_exec(ctx);
	if (rc == 0)
		rc = allow_signals_to_itself(ctx);
	if (rc == 0 && o->snapshots)
		rc = allow_all(ctx, writing_a_snapshot,
			       sizeof writing_a_snapshot / sizeof writing_a_snapshot[0]);
	if (rc == 0 && o->kept_state)
		rc = allow_all(ctx, writing_a_kept_state,
			       sizeof writing_a_kept_state / sizeof writing_a_kept_state[0]);
	if (rc == 0 && (o->snapshots || o->kept_state))
		rc = allow_ioctls(ctx, snapshot_ioctls,
				  sizeof snapshot_ioctls / sizeof snapshot_ioctls[0]);
	if (rc == 0)
		rc = seccomp_load(ctx); /* sets no_new_privs itself (SCMP_FLTATR_CTL_NNP) */
	seccomp_release(ctx);
	if (rc < 0)
		vmm_log("cannot install the seccomp filter: %s", strerror(-rc));
	return rc;
}

void vmm_seccomp_selftest(void)
{
	/* not in any table: the filter must end the process here, with SIGSYS */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	vmm_log("seccomp self-test: socket() was allowed (fd %d): the filter is not working", fd);
}
