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
#ifndef AIRLOCK_CGROUP_H
#define AIRLOCK_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

#endif
