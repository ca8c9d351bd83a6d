/* confine/: what holds a VM's host processes, and the server itself. The part's one header:
 * every limit on a VM's processes (vm_limits), a cgroup per VM (cgroup.c), an environment and a
 * uid of airlock's choosing (vm_process.c), files no VM may write (readonly_files.c), and the
 * server's own seccomp filter (filter.c).
 */
#ifndef AIRLOCK_CONFINE_H
#define AIRLOCK_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Every limit airlock puts on a VM's host processes, in one place. Each VM process is held by
 * three layers: its cgroup (confine/cgroup.c: memory, tasks, cpu), its rlimits (set by prlimit for
 * QEMU, backend/tcg/tcg.c; airlock-vmm sets its own in its jail, vmm/jail.c, to the values noted
 * here) and its jail. What one call may use inside the guest is protocol/protocol.h.
 */

/* cgroup: memory beyond guest RAM (the VM program's code, heap, TCG's code buffer) */
#define VM_CGROUP_MEMORY_OVERHEAD (512ull << 20)
/* cgroup: tasks (QEMU's threads, with room; airlock-vmm runs two) */
#define VM_CGROUP_PIDS_MAX 64

/* QEMU (tcg): open fds (it holds a few dozen), and address space beyond guest RAM (TCG's 1 GiB
 * code buffer, libraries, threads). airlock-vmm: 64 fds, 1 GiB (vmm/jail.c, JAIL_MAX_FDS and
 * JAIL_ADDRESS_SPACE_EXTRA). */
#define VM_QEMU_MAX_FDS 256
#define VM_QEMU_ADDRESS_SPACE_EXTRA (4ull << 30)

/* The most a VM's log may grow: the guest writes its console there, and may flood it. Both
 * backends (airlock-vmm: vmm/jail.c, JAIL_MAX_FILE_SIZE). */
#define VM_LOG_MAX_BYTES (64ull << 20)

/* One cgroup per VM process, with memory, pids and cpu limits, where the host lets us make them.
 *
 * cgroup v2 (preferred): the VMs' groups go under a group of the server's own in the unified
 * hierarchy; that needs the server's cgroup to hand the memory, pids and cpu controllers down
 * (the root cgroup, or one delegated to us). cgroup v1: one group per VM in each of the memory,
 * pids and cpu hierarchies. Neither (no cgroup file system, no permission, controllers held
 * elsewhere): the VMs run without cgroup limits, cgroup_init says why once, and everything else
 * works as before. A VM process is moved into its group right after it is spawned, with what it
 * started by then, and what it started since is gathered in once it answers (before user code).
 */

enum cgroup_mode { CGROUP_NONE, CGROUP_V1, CGROUP_V2 };

struct vm_cgroup {
	char name[32]; /* "vm-<pid>", in each hierarchy used; empty when none was made */
};

/* Finds what the host offers and makes the server's parent group. Returns the mode; for
 * CGROUP_NONE, why says what is missing. Safe to call once per process. */
enum cgroup_mode cgroup_init(char *why, size_t why_len);
/* Makes pid's group with its limits and moves pid into it. Returns 0 or -errno (the VM then
 * runs without a group; the caller logs it). */
int vm_cgroup_enter(struct vm_cgroup *cg, pid_t pid, uint64_t guest_ram, unsigned vcpus);
/* Moves the processes pid has started since into its group too (a wrapper's children: call it
 * again once the VM answers, before it runs anything of the caller's). Returns 0 or -errno. */
int vm_cgroup_gather(const struct vm_cgroup *cg, pid_t pid);
/* Removes the VM's group once its process is gone. */
void vm_cgroup_remove(struct vm_cgroup *cg);
/* Removes the server's parent group (at exit, once every VM is reaped). */
void cgroup_cleanup(void);

/* What every VM process (airlock-vmm, or bubblewrap and QEMU) starts with, whatever the backend:
 * an environment of airlock's choosing, not airlock's own (MCP hosts pass API keys in it), and,
 * when airlock runs as root, an identity of its own that no other process of the host shares.
 * Its fds are only those it is given: airlock marks what it inherited close-on-exec at start
 * (vm_process_close_inherited_fds) and opens everything else close-on-exec.
 */

/* The environment every VM process gets: a fixed PATH, and the sanitizers' options when set (a
 * sanitized airlock-vmm in the tests). NULL-terminated; lives as long as the process. */
char *const *vm_environment(void);

/* Marks every fd from 3 up close-on-exec: what airlock's parent left open must not reach a VM.
 * Returns 0 or -errno. */
int vm_process_close_inherited_fds(void);

/* True when AIRLOCK_BENCH_UNCONFINED=1: VMs start without their jail and (airlock-vmm) seccomp
 * filter, so that `airlock bench` can show what those cost in the same run. Never for use:
 * airlock warns on stderr once when it is set. */
bool vm_unconfined(void);

/* A uid (and the same gid) for one VM's processes, from a range reserved for airlock (see
 * docs/security.md), held by a lock on a file in VM_IDENTITY_DIR that no other airlock process
 * can take while this one lives: no other process of the host runs as it. */
#define VM_IDENTITY_BASE 2048655360u /* 0x7A1C0000: in the range systemd leaves unused */
#define VM_IDENTITY_COUNT 65536u
#define VM_IDENTITY_DIR "/run/airlock/vm-ids" /* or /tmp/.airlock-vm-ids without /run */

struct vm_identity {
	uid_t uid; /* 0: none (airlock is not root, or unconfined) */
	int lock_fd;
};

/* Takes a free identity when airlock runs as root (and the VMs are confined); else leaves *id
 * empty. Returns 0 or -errno. */
int vm_identity_take(struct vm_identity *id);
/* Gives it back (its processes must be gone). Safe on an empty one. */
void vm_identity_release(struct vm_identity *id);

/* The files a VM reads and must never write (its kernel, its root disk, its snapshot's state and
 * memory), opened so that no process holding one can write it: not by writing the fd, not by
 * reopening /proc/self/fd/N for writing, not by changing its mode, whoever owns the file. A
 * file's owner can otherwise do all of that past any read-only bind of the file's path (the
 * normal desktop deployment, where airlock, its images and QEMU are one user's).
 *
 * Each file is opened once per airlock process, by a short-lived child, from a read-only bind
 * mount of it that the child makes in a mount namespace of its own (and, when not root, a user
 * namespace of its own): the open file keeps that mount, so every later open of it, through
 * /proc/self/fd too, meets EROFS, and so does chmod. Where no namespace can be made, the file is
 * copied into a sealed memfd instead (no write, grow or shrink, for anyone). Each VM then gets
 * a fresh open of that file (an offset of its own).
 */

/* Opens path for reading as above. Returns the new fd (close-on-exec) or -errno. */
int readonly_open(const char *path);
/* The same for a file opened once or a few times (a kept state's): nothing is kept for the
 * next open, which makes its read-only view again. */
int readonly_open_once(const char *path);

/* How the files are made read-only in this process: "a read-only mount", "a sealed memfd", or
 * NULL before the first readonly_open. */
const char *readonly_method(void);

/* Tests only: makes the next opens skip the namespace and take the sealed copy. */
void readonly_force_sealed_copy(void);

/* The MCP server's own seccomp filter, installed once it has started (cli/mcp.c): looser than
 * airlock-vmm's, a list of syscalls refused with EPERM (filter.c says why for each), inherited by
 * every process it starts.
 */

/* Installs the filter on every thread of the process. Returns 0 or -errno. */
int host_filter_install(void);
/* Makes one refused syscall and says on stderr whether it was refused. Returns 0 when it was. */
int host_filter_selftest(void);

#endif
