/* airlock-vmm: the one internal header. The VM (KVM fds, guest memory, devices), the checked
 * guest-memory accessor every device goes through, the device interface, and the entry points
 * of each part. No JSON, no libuv: this process only moves bytes.
 */
#ifndef AIRLOCK_VMM_H
#define AIRLOCK_VMM_H

#include <linux/kvm.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMM_MAX_DEVICES 8

/* ---- guest memory ---- */

struct guest_memory {
	uint8_t *host; /* mapping of guest-physical [0, size) */
	uint64_t size;
};

/* Host pointer for guest-physical [gpa, gpa + len), or NULL when any byte of it lies outside
 * guest RAM (overflow-checked). Device and boot code touch guest memory only through this. */
void *gpa_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len);

/* ---- devices on the guest's buses ---- */

struct io_device {
	const char *name;
	bool is_port;       /* port I/O (in/out) or MMIO */
	uint64_t base, size;
	/* An access of len (1, 2, 4 or 8) bytes at offset from base. */
	void (*read)(struct io_device *dev, uint64_t offset, void *data, unsigned len);
	void (*write)(struct io_device *dev, uint64_t offset, const void *data, unsigned len);
	/* Snapshot, optional (a device without state leaves both NULL). save writes the device's
	 * state into buf (cap bytes) and sets *len; restore checks a blob read from an untrusted
	 * file and applies it. Both return 0 or -errno; restore logs why it refused. */
	int (*save)(struct io_device *dev, void *buf, size_t cap, size_t *len);
	int (*restore)(struct io_device *dev, const void *buf, size_t len);
	/* Optional: logs the device's state in a line or two, for a VM that ended or stalled
	 * unexplained (vm_report_state); called on the vCPU thread. */
	void (*report)(struct io_device *dev);
	/* Optional: the last line the device printed for the guest (the serial console), into
	 * out; returns its length. */
	size_t (*last_line)(struct io_device *dev, char *out, size_t out_len);
	void *state;
};

/* An interrupt line: an eventfd bound to a GSI with KVM_IRQFD (edge: one write, one pulse).
 * Safe to raise from any thread. */
struct irq_line {
	int fd;
	unsigned gsi;
};
void irq_raise(const struct irq_line *irq);

/* ---- the VM ---- */

struct vm {
	int kvm_fd, vm_fd, vcpu_fd;
	struct kvm_run *run;
	size_t run_size;
	struct guest_memory mem;
	struct io_device *devices[VMM_MAX_DEVICES];
	unsigned n_devices;
	bool verbose;
};

/* kvm.c: KVM set-up and the run loop (knows no device). */

/* Opens /dev/kvm, creates the VM with mem_size bytes of RAM, the in-kernel irqchip and PIT, and
 * one vCPU. RAM is anonymous, or with mem_fd >= 0 a private (copy-on-write) mapping of that
 * file (a snapshot's memory). Returns 0 or -errno with a message on stderr. */
int vm_create(struct vm *vm, uint64_t mem_size, int mem_fd);
/* Attaches a device to the guest's buses. */
int vm_add_device(struct vm *vm, struct io_device *dev);
/* Creates an irq_line for gsi. */
int vm_irq_line(struct vm *vm, unsigned gsi, struct irq_line *irq);
/* Runs the vCPU until the guest ends. Returns 0 when the guest shut down or reset itself, 1 for
 * a VM that failed (a message naming the exit is printed), VM_RUN_SNAPSHOT when a snapshot was
 * requested (the vCPU is stopped, its last exit not yet completed). */
int vm_run(struct vm *vm);
#define VM_RUN_SNAPSHOT 0x100
/* Asks the run loop to end (from a device, e.g. the i8042 reset); thread-safe and
 * async-signal-safe. vm_run returns status. */
void vm_request_stop(struct vm *vm, int status);
/* Asks the vCPU thread to log the VM's state (vm_report_state) with why, once it is out of
 * KVM_RUN; thread-safe, the run goes on. why must outlive the call (a string literal). */
void vm_request_report(struct vm *vm, const char *why);

/* kvm_report.c: what the VM did last and how it stands, for an end or a stall that the guest
 * did not explain. */

/* Records the exit just taken in a small ring (the vCPU thread, at each exit). */
void vm_record_exit(const struct kvm_run *run);
/* Logs why, then the vCPU's registers, segments, events, MP state and LAPIC, the last exits
 * and each device's report. On the vCPU thread, outside KVM_RUN. */
void vm_report_state(struct vm *vm, const char *why);
/* One line for an end that may well be normal: why, the number of exits and the last one's
 * rip, and the guest console's last line (so that it still shows where airlock quotes the last
 * line of the log). */
void vm_report_end(struct vm *vm, const char *why);

/* Re-enters the stopped vCPU with immediate_exit set so that KVM finishes the last I/O exit
 * and the vCPU's state is consistent (api.rst, KVM_RUN). Returns 0 or -errno. */
int vcpu_complete_exit(struct vm *vm);

/* ---- jail (jail.c) and seccomp (seccomp.c) ---- */

struct jail_identity; /* jail.h: who the VM becomes outside */
/* The jail's first step, before anything else (jail_supervisor.c): forks into a pid namespace
 * of the VM's own. Returns 0 in the VM (pid 1 there) or -errno (logged); the parent stays
 * outside as the VM's supervisor and never returns. */
int jail_begin(const struct jail_identity *id);
/* Whether the process that must outlive this one (the supervisor, or airlock) has ended. */
bool jail_parent_gone(void);
/* Enters the jail (user, namespaces, empty root): while the process is single-threaded, with
 * every file the VM needs already open. Returns 0 or -errno (logged). */
int jail_enter(const struct jail_identity *id);
/* Closes every fd but those in keep (n <= 8; -1 entries ignored). Returns 0 or -errno. */
int jail_close_fds_except(const int *keep, size_t n);
/* Seals it once the threads run: no capabilities, limits (writes_snapshot: no file size limit;
 * keeps_state: a hard limit with room for guest RAM), no_new_privs, not dumpable, no core dumps.
 * Returns 0 or -errno (logged). */
int jail_seal(uint64_t guest_ram, bool writes_snapshot, bool keeps_state);

struct vmm_seccomp_options {
	bool snapshots;  /* --snapshot-to: writing one must stay possible */
	bool kept_state; /* --keep-to-fds: writing one into the fds held must stay possible */
	bool log_only;  /* development: log what is not allowed instead of killing */
};
/* Installs the steady-state filter on every thread; from then on a syscall outside it kills
 * the process. Returns 0 or -errno. */
int vmm_seccomp_install(const struct vmm_seccomp_options *o);
/* Makes a syscall the filter forbids (the test suite's proof that it is in place). */
void vmm_seccomp_selftest(void);

/* kvm_x86_64.c: the x86 parts of a vCPU. */

/* CPUID from KVM_GET_SUPPORTED_CPUID; 64-bit long mode at entry with rsi = zero page. */
int vcpu_setup_x86_64(struct vm *vm, uint64_t entry);
/* The guest's TSC rate in kHz as KVM runs it, or 0 when KVM does not say. */
unsigned vcpu_tsc_khz(struct vm *vm);

/* boot.c: vmlinux and the zero page. */

/* Loads an ELF64 vmlinux's PT_LOAD segments at their physical addresses. *entry gets e_entry.
 * Every segment is checked against guest RAM. Returns 0 or -errno (-ENOEXEC: not a vmlinux). */
int boot_load_elf(struct guest_memory *mem, const uint8_t *image, size_t len, uint64_t *entry);
/* Writes the command line, the e820 map and the setup header into the zero page. */
int boot_write_zero_page(struct guest_memory *mem, const char *cmdline);
/* Identity page tables for the first 1 GiB (2 MiB pages) and the boot GDT. */
int boot_write_page_tables(struct guest_memory *mem);
/* mptable.c: the MP table (one CPU, the IOAPIC, the legacy IRQs pin for pin). */
int boot_write_mp_table(struct guest_memory *mem);

/* serial.c, rtc.c, virtio_blk.c, virtio_console.c: the devices. */

/* The 8250 UART at 0x3f8: output to log_fd (-1 drops it), input never arrives. */
int serial_create(struct vm *vm, int log_fd);
/* i8042 port 0x64: the keyboard-controller reset (reboot=k) ends the VM. */
/* The CMOS clock at 0x70/0x71, reading the host's time (rtc.c). */
int rtc_create(struct vm *vm);
int i8042_create(struct vm *vm);
/* virtio-blk at an MMIO window, backed read-only by disk_fd. */
int virtio_blk_create(struct vm *vm, int disk_fd, uint64_t base, unsigned gsi);
/* virtio-console at an MMIO window: port 0 (hvc0) carries bytes to and from channel_fd. */
int virtio_console_create(struct vm *vm, int channel_fd, uint64_t base, unsigned gsi);

/* One error-message shape: "airlock-vmm: <what>: <detail>". */
void vmm_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
