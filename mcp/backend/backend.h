/* A backend is a driver: one way of running a VM, implemented whole behind this interface in a
 * folder of its own, so that nothing outside backend/ asks which backend it runs on.
 *   tcg  QEMU full-system emulation (backend/tcg), portable
 *   kvm  airlock-vmm, our own KVM monitor (backend/kvm), where KVM can run a guest
 *
 * sandbox/ owns a VM process's life for every backend: it asks the backend to prepare the
 * process (its command line and the fds it inherits), spawns it on the event loop with the host
 * channel, reads the agent's frames, enforces the deadlines and kills it. A snapshot is that same
 * life plus the backend's save once the agent is READY. docs/architecture.md says what a third
 * backend would take.
 */
#ifndef AIRLOCK_BACKEND_H
#define AIRLOCK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define VM_DEFAULT_MEMORY_MB 512
#define VM_DEFAULT_VCPUS 1

enum vm_mode {
	VM_BOOT,          /* boot the kernel; the agent answers READY */
	VM_MAKE_SNAPSHOT, /* boot with the language's interpreter waiting, for backend.save */
	VM_RESTORE,       /* restore a snapshot (its agent answers PING with READY) */
};

/* What one VM is to be. */
struct vm_spec {
	enum vm_mode mode;
	const char *kernel; /* ELF vmlinux */
	const char *rootfs; /* ext4 image, attached read-only */
	unsigned memory_mb;
	unsigned vcpus;
	/* VM_MAKE_SNAPSHOT: the interpreter the agent starts before READY; VM_RESTORE: the one
	 * the snapshot holds. NULL when booting. */
	const char *language;
	/* VM_MAKE_SNAPSHOT: the directory receiving the snapshot; VM_RESTORE: the one holding it
	 * (sandbox/sandbox.h says what is in it). */
	const char *snapshot_dir;
	/* VM_RESTORE: the TSC rate the snapshot's kernel was told (its manifest's guest_tsc_khz). */
	unsigned guest_tsc_khz;
	/* VM_RESTORE: restore this kept state instead (a VM of snapshot_dir saved by this backend's
	 * save, its files as the backend wrote them into a keep_to_dir), or NULL. */
	const char *kept_state_dir;
	/* VM_RESTORE: the empty directory a later save of this VM writes (a kept state), made by
	 * airlock, which creates the files in it and hands the VM process their fds (kept_files_open);
	 * NULL: the VM is never saved. */
	const char *keep_to_dir;
	/* Who the VM's processes are outside, when airlock runs as root: a uid (and gid) of their
	 * own that no other process of the host shares (confine/confine.h); 0 when airlock is not
	 * root, or for the VM that makes a snapshot, which writes it as airlock's user. */
	unsigned run_as_uid;
};

/* The fd numbers inside the VM process: 0-2 are /dev/null and the VM's log (both stdout and
 * stderr: the guest's console and the VM program's own messages), 3 the host channel (a socket
 * carrying agent/proto.h); a backend may give it more, up to VM_FDS_MAX - 1. */
#define VM_FD_LOG 1
#define VM_FD_CHANNEL 3
#define VM_FDS_MAX 12

struct argv_list {
	char **items; /* NULL-terminated once non-empty */
	size_t len, cap;
};

/* Appends a printf-formatted argument. Returns 0 or -ENOMEM. */
int argv_push(struct argv_list *argv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void argv_free(struct argv_list *argv);

/* A VM process about to start, as backend.prepare leaves it. */
struct vm_launch {
	struct argv_list argv;
	/* fds[i]: our fd that becomes fd i in the VM process, or -1. The sandbox fills 0 to
	 * VM_FD_CHANNEL and closes its own; the backend fills the rest, which vm_launch_free closes
	 * (the sandbox calls it once the process runs). */
	int fds[VM_FDS_MAX];
	/* Our end of the VM program's control socket (QEMU's QMP monitor), or -1: open while the
	 * VM lives (its program sees the socket's end as the end of its control), and read by the
	 * sandbox during a save (backend.save_progress). */
	int control_fd;
	/* The file a save writes, opened here (the VM process may open no host path), or -1. */
	int save_fd;
	bool save_restored; /* the save is of a restored VM (a kept state), not a fresh boot */
	void *backend_state; /* the backend's own, during a save; free()d by vm_launch_free */
};

void vm_launch_init(struct vm_launch *launch);
/* Closes every fd and frees the command line. Safe to call more than once. */
void vm_launch_free(struct vm_launch *launch);

struct backend {
	const char *name; /* "tcg", "kvm": the --backend value and part of each snapshot's key */
	/* Returns 0 when this backend can run a guest here, else -errno; why gets one line either
	 * way (what was found, or what is missing and how to fix it). */
	int (*probe)(char *why, size_t why_len);
	/* The VM program's full path (a snapshot is only as good as the program that wrote it). */
	int (*program)(char *out, size_t out_len);
	/* Prepares the VM process spec describes: its command line and the files it needs (opened
	 * here, read-only where it must not write them). Returns 0, or -errno with err set. */
	int (*prepare)(const struct vm_spec *spec, struct vm_launch *launch, char *err,
		       size_t err_len);
	/* VM_MAKE_SNAPSHOT, once the agent is READY: starts saving the VM into spec's snapshot_dir;
	 * VM_RESTORE with keep_to_dir, once the agent's EXIT said it may be kept: into keep_to_dir.
	 * The VM process then ends with status 0 once the save is whole (the sandbox waits for
	 * that). Returns 0, or -errno with err set. */
	int (*save)(struct vm_launch *launch, pid_t pid, char *err, size_t err_len);
	/* During a save, what the VM program said on its control socket (control_fd): returns 0
	 * to go on, or -errno with err set when the save failed. NULL where there is no socket. */
	int (*save_progress)(struct vm_launch *launch, const char *data, size_t len, char *err,
			     size_t err_len);
	/* What a snapshot made now must tell its restores (vm_spec.guest_tsc_khz), or 0. */
	unsigned (*snapshot_tsc_khz)(void);
};

/* A kept state's files for a VM (vm_spec.kept_state_dir and keep_to_dir): the state and pages
 * to restore, opened read-only so that no holder can write them (confine.h), and the state and
 * pages a save writes, created here empty and writable: the VM process opens no path of them.
 * -1 where the spec has none. */
struct kept_files {
	int state_in, pages_in, state_out, pages_out;
};
/* Returns 0, or -errno with err set (and nothing left open). */
int kept_files_open(const struct vm_spec *s, struct kept_files *f, char *err, size_t err_len);

extern const struct backend backend_tcg;
extern const struct backend backend_kvm;

/* Every backend, in the order "auto" tries them (kvm only where it can really run a guest). */
extern const struct backend *const backends[];

/* Picks the backend: one of backends[] by name, or "auto" (the first that can run here).
 * Returns 0 with *out set, or -errno with why explaining the refusal and its fix. */
int backend_select(const char *name, const struct backend **out, char *why, size_t why_len);

/* The host's TSC rate in kHz, measured once per process (10 ms), or 0 where there is none. A
 * tcg guest's TSC runs at this rate: QEMU reads the host's. Told it, the guest's kernel does not
 * calibrate the TSC against the emulated PIT, which fails now and then on a loaded host and
 * leaves the guest with a 4 ms clock (the jiffies clocksource) for good. */
unsigned host_tsc_khz(void);

/* Whether this host's /dev/kvm can run a Linux guest; why says what was found. */
bool host_kvm_usable(char *why, size_t why_len);

/* Where airlock finds its companion programs (airlock-agent, airlock-vmm) and its data (the
 * image recipes, the benchmark). */

/* Looks for a program: $env_var if set; else beside this binary in the build tree
 * (<dir of airlock>/<build_relative>); else the installed AIRLOCK_LIBEXEC_DIR/<name>.
 * Returns 0 with out set, or -ENOENT (out then holds the installed path it tried). */
int locate_program(const char *env_var, const char *build_relative, const char *name, char *out,
		   size_t out_len);

/* Where airlock's data lives: the source tree (AIRLOCK_SOURCE_DIR) for the airlock of its build
 * tree, the installed AIRLOCK_DATA_DIR for any other. Writes the directory to out: 0, or
 * -ENAMETOOLONG. */
int locate_data_dir(char *out, size_t out_len);

/* snprintf for paths: -ENAMETOOLONG instead of a silently cut path, 0 when it fits. */
int path_printf(char *out, size_t out_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
