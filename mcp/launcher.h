/* The launcher interface: what differs between backends is only the command that starts a VM.
 * sandbox.c owns the process's life (spawn, channel, deadlines, kill) for every backend.
 *   tcg  QEMU full-system emulation (launcher_tcg.c), portable
 *   kvm  airlock-vmm, our own KVM monitor (launcher_kvm.c), where KVM can run a guest
 */
#ifndef AIRLOCK_LAUNCHER_H
#define AIRLOCK_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>

#define VM_DEFAULT_MEMORY_MB 512
#define VM_DEFAULT_VCPUS 1
/* The most a VM's serial log may grow: the guest writes it, and may flood it. airlock-vmm has the
 * same limit (vmm/jail.c, JAIL_MAX_FILE_SIZE). */
#define VM_LOG_MAX_BYTES (64ull << 20)

struct vm_spec {
	const char *kernel;     /* ELF vmlinux */
	const char *rootfs;     /* ext4 image, attached read-only */
	const char *serial_log; /* file that receives the guest's boot log */
	unsigned memory_mb;
	unsigned vcpus;
	int channel_fd; /* fd number of the host channel in the VM process */

	/* Snapshots (snapshot_cache.c). Making one: boot with warm_language set, snapshot_dir receiving
	 * it. Restoring one: restore set, snapshot_dir holding it. Either way the directory holds
	 * `memory` (guest RAM) and `state` (everything else). */
	const char *warm_language; /* the agent starts this interpreter before READY */
	const char *snapshot_dir;
	bool restore;
	int control_fd; /* tcg: fd number of QEMU's QMP monitor socket in the VM process, else -1 */
	int state_fd;   /* tcg: fd number of the migration stream (written or read), else -1 */
	/* tcg, restoring: the TSC rate (kHz) the snapshot's kernel was told (snapshot_facts), as the
	 * command line must not change. Booting, the launcher tells it host_tsc_khz() itself. */
	unsigned guest_tsc_khz;

	/* tcg: fd numbers in the VM process of the kernel, the root disk and (restoring) the RAM
	 * file, opened by airlock through read-only mounts (readonly_files.h), or -1 (the VM that
	 * makes a snapshot). QEMU opens them through these, its jail binding none of them. */
	int kernel_fd, rootfs_fd, memory_fd;
	bool serial_on_stdout; /* the serial console goes to stdout (a file airlock opened), else to
				* serial_log, opened by the VM process itself */

	/* Who the VM's processes are outside, when airlock runs as root: a uid and gid of their own
	 * that no other process of the host shares (vm_identity.h), so that no other process may
	 * signal or trace them. 0 when airlock is not root: they stay airlock's user, whose own
	 * processes are the same trust domain. kvm: airlock-vmm --run-as=UID:GID. */
	unsigned run_as_uid, run_as_gid;
};

struct argv_list {
	char **items; /* NULL-terminated once non-empty */
	size_t len, cap;
};

/* Appends a printf-formatted argument. Returns 0 or -ENOMEM. */
int argv_push(struct argv_list *argv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void argv_free(struct argv_list *argv);

struct launcher {
	const char *name;
	/* Returns 0 when this backend can run a guest here, else -errno; why gets one line either
	 * way (what was found, or what is missing and how to fix it). */
	int (*probe)(char *why, size_t why_len);
	/* Builds the command line that starts one VM as spec says. Returns 0 or -errno. */
	int (*command)(const struct vm_spec *spec, struct argv_list *argv);
	/* The VM program's full path (a snapshot is only as good as the program that wrote it). */
	int (*program)(char *out, size_t out_len);
};

extern const struct launcher launcher_tcg;
extern const struct launcher launcher_kvm;

/* Picks the backend: "tcg", "kvm" or "auto" (kvm only where KVM can really run a guest).
 * Returns 0 with *out set, or -errno with why explaining the refusal and its fix. */
int launcher_select(const char *backend, const struct launcher **out, char *why, size_t why_len);

/* True when AIRLOCK_BENCH_UNCONFINED=1: VMs start without their jail and (airlock-vmm) seccomp
 * filter, so that `airlock bench` can show what those cost in the same run. Never for use:
 * airlock warns on stderr once when it is set. */
bool launcher_unconfined(void);

/* The host's TSC rate in kHz, measured once per process (10 ms), or 0 where there is none. A
 * tcg guest's TSC runs at this rate: QEMU reads the host's. Told it, the guest's kernel does not
 * calibrate the TSC against the emulated PIT, which fails now and then on a loaded host and
 * leaves the guest with a 4 ms clock (the jiffies clocksource) for good. */
unsigned host_tsc_khz(void);

/* Whether this host's /dev/kvm can run a Linux guest; why says what was found. */
bool host_kvm_usable(char *why, size_t why_len);

#endif
