/* What the VM did last and how it stood, for a VM that ends, or stalls, without a reason of its
 * own: the last exits (a ring the run loop fills), the vCPU's registers, segments and pending
 * events, its LAPIC, and each device's own account (the serial tail, the virtqueues). Logged on
 * stderr, which airlock keeps with the serial log; the caller's one-line summary comes last,
 * the line airlock shows in its error. Read-only KVM requests, from the vCPU thread.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm.h"

#define EXIT_HISTORY 64

struct exit_record {
	uint32_t reason;
	uint32_t len;
	uint64_t addr;
	uint64_t rip; /* where the guest was, when KVM syncs the registers (kvm.c), else 0 */
	bool write;
};

/* Only the vCPU thread writes them (vm_record_exit) and reads them (vm_report_state). */
static struct exit_record history[EXIT_HISTORY];
static uint64_t exits_seen;

void vm_record_exit(const struct kvm_run *run)
{
	struct exit_record *r = &history[exits_seen++ % EXIT_HISTORY];
	*r = (struct exit_record){.reason = run->exit_reason};
	if (run->kvm_valid_regs & KVM_SYNC_X86_REGS)
		r->rip = run->s.regs.regs.rip;
	if (run->exit_reason == KVM_EXIT_IO) {
		r->addr = run->io.port;
		r->len = (uint32_t)run->io.size * run->io.count;
		r->write = run->io.direction == KVM_EXIT_IO_OUT;
	} else if (run->exit_reason == KVM_EXIT_MMIO) {
		r->addr = run->mmio.phys_addr;
		r->len = run->mmio.len;
		r->write = run->mmio.is_write;
	}
}

static bool same_exit(const struct exit_record *a, const struct exit_record *b)
{
	return a->reason == b->reason && a->addr == b->addr && a->len == b->len &&
	       a->rip == b->rip && a->write == b->write;
}

/* One exit, as kind:address/bytes@rip, xN for a run of N alike. Returns its length. */
static int format_exit(const struct exit_record *r, unsigned repeat, char *out, size_t len)
{
	char count[16] = "";
	if (repeat > 1)
		snprintf(count, sizeof count, "x%u", repeat);
	if (r->reason == KVM_EXIT_IO || r->reason == KVM_EXIT_MMIO)
		return snprintf(out, len, " %s:%#llx/%u%c@%#llx%s",
				r->reason == KVM_EXIT_IO ? "io" : "mmio", (unsigned long long)r->addr,
				r->len, r->write ? 'w' : 'r', (unsigned long long)r->rip, count);
	return snprintf(out, len, " exit:%u@%#llx%s", r->reason, (unsigned long long)r->rip, count);
}

static void report_exit_line(bool first_line, const char *exits)
{
	if (first_line)
		vmm_log("  last exits (%llu in all, oldest first; kind:address/bytes@rip):%s",
			(unsigned long long)exits_seen, exits);
	else
		vmm_log("  last exits, continued:%s", exits);
}

/* The history, oldest first, on as many lines as vmm_log's line length needs. */
static void report_exits(void)
{
	char line[720];
	size_t used = 0;
	bool first_line = true;
	uint64_t first = exits_seen > EXIT_HISTORY ? exits_seen - EXIT_HISTORY : 0;
	for (uint64_t i = first; i < exits_seen; i++) {
		const struct exit_record *r = &history[i % EXIT_HISTORY];
		unsigned repeat = 1; /* the same exit in a row (a loop) is written once, xN */
		while (i + 1 < exits_seen && same_exit(r, &history[(i + 1) % EXIT_HISTORY])) {
			repeat++;
			i++;
		}
		char one[96];
		int n = format_exit(r, repeat, one, sizeof one);
		if (n < 0 || (size_t)n >= sizeof one)
			continue;
		if (used + (size_t)n >= sizeof line) {
			report_exit_line(first_line, line);
			first_line = false;
			used = 0;
		}
		memcpy(line + used, one, (size_t)n + 1);
		used += (size_t)n;
	}
	report_exit_line(first_line, used ? line : " none");
}

static void report_segment(const char *name, const struct kvm_segment *s, char *out, size_t len)
{
	snprintf(out, len, "%s=%#x base=%#llx limit=%#x type=%u dpl=%u p=%u l=%u db=%u", name,
		 s->selector, (unsigned long long)s->base, s->limit, s->type, s->dpl, s->present,
		 s->l, s->db);
}

static uint32_t apic_reg(const struct kvm_lapic_state *l, unsigned off)
{
	uint32_t v;
	memcpy(&v, l->regs + off, sizeof v);
	return v;
}

/* The highest vector set in one of the LAPIC's 256-bit registers (ISR at 0x100, IRR at 0x200),
 * or -1. */
static int apic_top_vector(const struct kvm_lapic_state *l, unsigned base)
{
	for (int i = 7; i >= 0; i--) {
		uint32_t v = apic_reg(l, base + 16 * (unsigned)i);
		if (v)
			return i * 32 + 31 - __builtin_clz(v);
	}
	return -1;
}

static void report_vcpu(struct vm *vm)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_vcpu_events e;
	struct kvm_mp_state mp;
	struct kvm_lapic_state lapic;
	if (ioctl(vm->vcpu_fd, KVM_GET_REGS, &r) == 0) {
		vmm_log("  rip=%#llx rsp=%#llx rflags=%#llx rax=%#llx rbx=%#llx rcx=%#llx rdx=%#llx",
			r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx);
		vmm_log("  rsi=%#llx rdi=%#llx rbp=%#llx r8=%#llx r9=%#llx r10=%#llx r11=%#llx "
			"r12=%#llx r13=%#llx r14=%#llx r15=%#llx",
			r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15);
	} else {
		vmm_log("  KVM_GET_REGS: %s", strerror(errno));
	}
	if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, &s) == 0) {
		char cs[128], ss[128], tr[128];
		report_segment("cs", &s.cs, cs, sizeof cs);
		report_segment("ss", &s.ss, ss, sizeof ss);
		report_segment("tr", &s.tr, tr, sizeof tr);
		vmm_log("  cr0=%#llx cr2=%#llx cr3=%#llx cr4=%#llx cr8=%#llx efer=%#llx apic_base=%#llx",
			s.cr0, s.cr2, s.cr3, s.cr4, s.cr8, s.efer, s.apic_base);
		vmm_log("  %s; %s; %s; idt=%#llx/%#x gdt=%#llx/%#x", cs, ss, tr,
			(unsigned long long)s.idt.base, s.idt.limit, (unsigned long long)s.gdt.base,
			s.gdt.limit);
	} else {
		vmm_log("  KVM_GET_SREGS: %s", strerror(errno));
	}
	if (ioctl(vm->vcpu_fd, KVM_GET_VCPU_EVENTS, &e) == 0)
		vmm_log("  events: exception injected=%u pending=%u nr=%u error=%u/%#x; interrupt "
			"injected=%u nr=%u soft=%u shadow=%u; nmi injected=%u pending=%u masked=%u; "
			"flags=%#x",
			e.exception.injected, e.exception.pending, e.exception.nr,
			e.exception.has_error_code, e.exception.error_code, e.interrupt.injected,
			e.interrupt.nr, e.interrupt.soft, e.interrupt.shadow, e.nmi.injected,
			e.nmi.pending, e.nmi.masked, e.flags);
	else
		vmm_log("  KVM_GET_VCPU_EVENTS: %s", strerror(errno));
	if (ioctl(vm->vcpu_fd, KVM_GET_MP_STATE, &mp) == 0)
		vmm_log("  mp_state=%u (0 runnable, 3 halted)", mp.mp_state);
	if (ioctl(vm->vcpu_fd, KVM_GET_LAPIC, &lapic) == 0)
		vmm_log("  lapic: tpr=%#x ppr=%#x isr_top=%d irr_top=%d svr=%#x lvtt=%#x tmict=%#x "
			"tmcct=%#x tdcr=%#x lint0=%#x lint1=%#x esr=%#x",
			apic_reg(&lapic, 0x80), apic_reg(&lapic, 0xa0), apic_top_vector(&lapic, 0x100),
			apic_top_vector(&lapic, 0x200), apic_reg(&lapic, 0xf0),
			apic_reg(&lapic, 0x320), apic_reg(&lapic, 0x380), apic_reg(&lapic, 0x390),
			apic_reg(&lapic, 0x3e0), apic_reg(&lapic, 0x350), apic_reg(&lapic, 0x360),
			apic_reg(&lapic, 0x280));
}

void vm_report_state(struct vm *vm, const char *why)
{
	vmm_log("%s; the VM's state:", why);
	report_vcpu(vm);
	report_exits();
	for (unsigned i = 0; i < vm->n_devices; i++)
		if (vm->devices[i]->report)
			vm->devices[i]->report(vm->devices[i]);
	fflush(stderr);
}

void vm_report_end(struct vm *vm, const char *why)
{
	report_exits();
	char console[160] = "";
	for (unsigned i = 0; i < vm->n_devices && !console[0]; i++)
		if (vm->devices[i]->last_line)
			vm->devices[i]->last_line(vm->devices[i], console, sizeof console);
	/* the exit before the last: the last is the end itself (after a triple fault on AMD its
	 * rip is the reset's) */
	char before[64] = "none before it (the guest ended before it ever left KVM)";
	if (exits_seen > 1)
		snprintf(before, sizeof before, "the one before it at rip %#llx",
			 (unsigned long long)history[(exits_seen - 2) % EXIT_HISTORY].rip);
	vmm_log("%s; %llu exits, %s; the guest console's last line: %s", why,
		(unsigned long long)exits_seen, before, console[0] ? console : "(none)");
	fflush(stderr);
}
