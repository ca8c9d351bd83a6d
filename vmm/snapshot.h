/* The snapshot state file (format described at the top of snapshot.c): a writer that collects
 * sections, a parser that checks an untrusted file before anything of it is used, and the two
 * entry points main.c calls to save a paused VM and to restore one.
 */
#ifndef AIRLOCK_SNAPSHOT_H
#define AIRLOCK_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "vmm.h"

#define SNAP_MAGIC "ALCKSNAP"
#define SNAP_VERSION 1u
#define SNAP_BUILD_ID_SIZE 32
#define SNAP_HEADER_SIZE 64u
#define SNAP_TRAILER_SIZE 8u /* the checksum */
#define SNAP_MAX_SECTIONS 48
#define SNAP_MAX_FILE (4u << 20)     /* a state file is a few tens of KiB */
#define SNAP_DEVICE_STATE_MAX 4096u /* one device's blob */

/* Exit status of a restore refused because of the snapshot (not of the host): the caller may
 * rebuild the snapshot and try again. */
#define SNAP_EXIT_REFUSED 3

enum snap_section_type {
	/* VM-wide */
	SNAP_VM_CLOCK = 1,      /* struct kvm_clock_data */
	SNAP_VM_PIT = 2,        /* struct kvm_pit_state2 */
	SNAP_VM_PIC_MASTER = 3, /* struct kvm_irqchip */
	SNAP_VM_PIC_SLAVE = 4,
	SNAP_VM_IOAPIC = 5,
	/* the vCPU */
	SNAP_CPU_CPUID = 16,     /* u32 nent, u32 0, struct kvm_cpuid_entry2[nent] */
	SNAP_CPU_MP_STATE = 17,  /* struct kvm_mp_state */
	SNAP_CPU_REGS = 18,      /* struct kvm_regs */
	SNAP_CPU_SREGS = 19,     /* struct kvm_sregs */
	SNAP_CPU_XSAVE = 20,     /* the KVM_GET_XSAVE(2) area, 4096 bytes or more */
	SNAP_CPU_XCRS = 21,      /* struct kvm_xcrs */
	SNAP_CPU_DEBUGREGS = 22, /* struct kvm_debugregs */
	SNAP_CPU_LAPIC = 23,     /* struct kvm_lapic_state */
	SNAP_CPU_MSRS = 24,      /* u32 n, u32 0, struct kvm_msr_entry[n] in restore order */
	SNAP_CPU_EVENTS = 25,    /* struct kvm_vcpu_events */
	SNAP_CPU_TSC_KHZ = 26,   /* u32 */
	/* devices: SNAP_DEVICE + index in vm->devices; char name[16], then the device's blob */
	SNAP_DEVICE = 0x100,
	SNAP_DEVICE_LAST = 0x100 + VMM_MAX_DEVICES - 1,
};

#define SNAP_DEVICE_NAME_SIZE 16

/* ---- writing ---- */

struct snap_buf {
	uint8_t *data;
	size_t len, cap;
	unsigned n_sections;
	int error; /* the first failure (-ENOMEM, -E2BIG); later appends are ignored */
};

/* Starts a state file: the header is filled in by snap_finish. */
void snap_buf_init(struct snap_buf *b);
/* Appends one section (type, len, data, padded to 8 bytes). Errors are kept in b->error. */
void snap_put(struct snap_buf *b, uint32_t type, const void *data, size_t len);
/* Writes the header (mem_size, this build's id) and appends the checksum. Returns 0 or the
 * first error of the appends. */
int snap_finish(struct snap_buf *b, uint64_t mem_size, const uint8_t build_id[SNAP_BUILD_ID_SIZE]);
void snap_buf_free(struct snap_buf *b);

/* ---- reading ---- */

struct snap_section {
	uint32_t type;
	uint32_t len;
	const uint8_t *data; /* points into the parsed file */
};

struct snap_image {
	uint64_t mem_size;
	unsigned n_sections;
	struct snap_section sections[SNAP_MAX_SECTIONS];
};

/* Checks a whole state file (magic, version, length, checksum, build id, section table, memory
 * size) and indexes its sections. Returns 0, or -EINVAL with a one-line reason in why. */
int snap_parse(const uint8_t *file, size_t len, const uint8_t build_id[SNAP_BUILD_ID_SIZE],
	       struct snap_image *img, char *why, size_t why_len);
/* The section of that type, or NULL. */
const struct snap_section *snap_find(const struct snap_image *img, uint32_t type);
/* FNV-1a, 64 bits. */
uint64_t snap_checksum(const uint8_t *p, size_t len);
/* This program's identity (the ELF GNU build id, zero-padded). Returns 0 or -ENOENT. */
int snap_build_id(uint8_t id[SNAP_BUILD_ID_SIZE]);

/* ---- save and restore (snapshot.c, kvm_state.c) ---- */

/* A loaded, checked snapshot: the state file's bytes and the open memory file. */
struct snapshot {
	uint8_t *file;
	size_t file_len;
	struct snap_image img;
	int mem_fd;
};

/* Opens (creating it if need be) the directory a snapshot will be written to, at start-up: the
 * seccomp filter allows no open later. Returns the fd or -errno (logged). */
int snapshot_open_dir(const char *dir);
/* With the vCPU stopped (vm_run returned VM_RUN_SNAPSHOT): completes the pending exit, then
 * writes memory (sparse) and state into dir_fd (named dir in messages) and fsyncs them; closes
 * dir_fd. Returns 0 or -errno (logged). */
int snapshot_save(struct vm *vm, int dir_fd, const char *dir);
/* Kept state (vmm/pages.h): with the vCPU stopped, as snapshot_save, writes the state file into
 * state_fd and only the pages the VM changed since its restore into pages_fd, found through
 * pagemap_fd (/proc/self/pagemap, opened at start-up); fsyncs both. Returns 0 or -errno (logged). */
int snapshot_save_kept(struct vm *vm, int state_fd, int pages_fd, int pagemap_fd);
/* Reads and checks dir/state (or, when state_fd is not -1, the state file open there: a kept
 * state's) and opens dir/memory. Returns 0 or -errno with a one-line message on stderr; the
 * caller exits SNAP_EXIT_REFUSED. */
int snapshot_load(const char *dir, int state_fd, struct snapshot *snap);
/* Applies a loaded snapshot to a VM created over snap->mem_fd with its devices attached (the
 * same set, in the same order, as the VM that was saved). Returns 0 or -errno (logged). */
int snapshot_restore(struct vm *vm, const struct snapshot *snap);

/* kvm_state.c: the KVM side (VM-wide state and the vCPU), in KVM's required order. */
int kvm_state_save(struct vm *vm, struct snap_buf *b);
int kvm_state_restore(struct vm *vm, const struct snap_image *img);

#endif
