/* What every VM process (airlock-vmm, or bubblewrap and QEMU) starts with, whatever the backend:
 * an environment of airlock's choosing, not airlock's own (MCP hosts pass API keys in it), and,
 * when airlock runs as root, an identity of its own that no other process of the host shares.
 * Its fds are only those it is given: airlock marks what it inherited close-on-exec at start
 * (vm_process_close_inherited_fds) and opens everything else close-on-exec.
 */
#ifndef AIRLOCK_VM_PROCESS_H
#define AIRLOCK_VM_PROCESS_H

#include <stdbool.h>
#include <sys/types.h>

/* The environment every VM process gets: a fixed PATH, and the sanitizers' options when set (a
 * sanitized airlock-vmm in the tests). NULL-terminated; lives as long as the process. */
char *const *vm_environment(void);

/* Marks every fd from 3 up close-on-exec: what airlock's parent left open must not reach a VM.
 * Returns 0 or -errno. */
int vm_process_close_inherited_fds(void);

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

#endif
