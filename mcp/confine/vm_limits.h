/* Every limit airlock puts on a VM's host processes, in one place. Each VM process is held by
 * three layers: its cgroup (confine/cgroup.c: memory, tasks, cpu), its rlimits (set by prlimit for
 * QEMU, backend/tcg/tcg.c; airlock-vmm sets its own in its jail, vmm/jail.c, to the values noted
 * here) and its jail. What one call may use inside the guest is protocol/call_limits.h.
 */
#ifndef AIRLOCK_VM_LIMITS_H
#define AIRLOCK_VM_LIMITS_H

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

#endif
