/* The x86_64 side of the vCPU: CPUID, and the register state of the 64-bit boot protocol
 * (long mode, flat segments from the boot GDT, paging on the identity tables, rsi = zero page).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "layout.h"
#include "vmm.h"

#define CPUID_MAX_ENTRIES 256
#define X86_CR0_PE 0x1ULL
#define X86_CR0_NW (1ULL << 29)
#define X86_CR0_CD (1ULL << 30)
#define X86_CR0_PG (1ULL << 31)
#define X86_CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_EXTINT 0x700
#define APIC_MODE_NMI 0x400

static int setup_cpuid(struct vm *vm)
{
	struct kvm_cpuid2 *cpuid =
		calloc(1, sizeof *cpuid + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = CPUID_MAX_ENTRIES;
	int rc = 0;
	if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
		rc = -errno;
		vmm_log("KVM: ioctl (GET_SUPPORTED_CPUID) failed: %s", strerror(errno));
	}
	/* KVM emulates the LAPIC's TSC-deadline mode but leaves its CPUID bit to us: with it the
	 * guest's tick (mptable.c) is one WRMSR, handled in the kernel, with nothing to calibrate */
	bool tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	for (uint32_t i = 0; rc == 0 && i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		if (e->function == 1 && tsc_deadline)
			e->ecx |= 1u << 24; /* TSC_DEADLINE */
		if (e->function == 1)
			e->ebx &= 0x00ffffff; /* initial APIC id 0: our one vCPU */
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = 0; /* x2APIC id */
	}
	if (rc == 0 && ioctl(vm->vcpu_fd, KVM_SET_CPUID2, cpuid) < 0) {
		rc = -errno;
		vmm_log("KVM: ioctl (SET_CPUID2) failed: %s", strerror(errno));
	}
	free(cpuid);
	return rc;
}

static struct kvm_segment flat_segment(uint16_t selector, uint8_t type, bool code)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type, .present = 1,
		.dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1};
}

static int setup_sregs(struct vm *vm)
{
	struct kvm_sregs s;
	if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	s.cs = flat_segment(0x10, 0xb, true); /* __BOOT_CS: execute/read, accessed */
	s.ds = s.es = s.fs = s.gs = s.ss = flat_segment(0x18, 0x3, false); /* __BOOT_DS */
	s.gdt.base = LAYOUT_GDT;
	s.gdt.limit = 4 * 8 - 1;
	s.cr3 = LAYOUT_PML4;
	s.cr4 |= X86_CR4_PAE;
	s.cr0 = (s.cr0 & ~(X86_CR0_CD | X86_CR0_NW)) | X86_CR0_PE | X86_CR0_PG;
	s.efer |= EFER_LME | EFER_LMA;
	return ioctl(vm->vcpu_fd, KVM_SET_SREGS, &s) < 0 ? -errno : 0;
}

/* With no MP table the kernel runs the local APIC in virtual-wire mode: LINT0 delivers the
 * legacy PIC's interrupts, LINT1 NMIs. */
static int setup_lapic(struct vm *vm)
{
	struct kvm_lapic_state lapic;
	if (ioctl(vm->vcpu_fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	uint32_t lvt0, lvt1;
	memcpy(&lvt0, lapic.regs + APIC_LVT0, 4);
	memcpy(&lvt1, lapic.regs + APIC_LVT1, 4);
	lvt0 = (lvt0 & ~0x700u) | APIC_MODE_EXTINT;
	lvt1 = (lvt1 & ~0x700u) | APIC_MODE_NMI;
	memcpy(lapic.regs + APIC_LVT0, &lvt0, 4);
	memcpy(lapic.regs + APIC_LVT1, &lvt1, 4);
	return ioctl(vm->vcpu_fd, KVM_SET_LAPIC, &lapic) < 0 ? -errno : 0;
}

unsigned vcpu_tsc_khz(struct vm *vm)
{
	int khz = ioctl(vm->vcpu_fd, KVM_GET_TSC_KHZ);
	return khz > 0 ? (unsigned)khz : 0;
}

int vcpu_setup_x86_64(struct vm *vm, uint64_t entry)
{
	int rc = setup_cpuid(vm);
	if (rc)
		return rc;
	if ((rc = setup_sregs(vm)) != 0) {
		vmm_log("KVM: setting the special registers failed: %s", strerror(-rc));
		return rc;
	}
	struct kvm_regs regs = {.rflags = 0x2, .rip = entry, .rsi = LAYOUT_ZERO_PAGE,
				.rsp = LAYOUT_BOOT_STACK, .rbp = LAYOUT_BOOT_STACK};
	if (ioctl(vm->vcpu_fd, KVM_SET_REGS, &regs) < 0) {
		rc = -errno;
		vmm_log("KVM: ioctl (SET_REGS) failed: %s", strerror(errno));
		return rc;
	}
	struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
	if (ioctl(vm->vcpu_fd, KVM_SET_FPU, &fpu) < 0) {
		rc = -errno;
		vmm_log("KVM: ioctl (SET_FPU) failed: %s", strerror(errno));
		return rc;
	}
	if ((rc = setup_lapic(vm)) != 0)
		vmm_log("KVM: setting up the local APIC failed: %s", strerror(-rc));
	return rc;
}
