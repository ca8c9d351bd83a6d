/* The KVM side of a snapshot: VM-wide state (PIT, kvmclock, PIC master and slave, IOAPIC) and
 * the vCPU's (CPUID, MP state, registers, xsave, XCRs, debug registers, LAPIC, MSRs, events),
 * saved and restored in the order KVM requires (Documentation/virt/kvm/api.rst):
 *
 *   save:    MP state first (KVM_GET_MP_STATE accepts pending LAPIC events and may change the
 *            vCPU), vcpu events last (the other GETs may change what they report).
 *   restore: CPUID first (later SETs are checked against it); REGS before VCPU_EVENTS (SET_REGS
 *            drops a pending exception that the events bring back); SREGS before LAPIC (both
 *            carry the APIC base); LAPIC before MSRs (the TSC-deadline MSR is only accepted in
 *            TSC-deadline mode); within the MSRs the TSC before the TSC deadline; events last
 *            of the vCPU's. The PIT after everything: SET_PIT2 arms its timer at once, and an
 *            interrupt it raised before the PICs' SET_IRQCHIP would be wiped by it, and with
 *            it the PIT's reinjection: KVM injects the next only once the guest acknowledged
 *            that one, so the guest's timer never fired again (a restored guest whose sleep
 *            never returned; its PIT, one-shot, was due within ms: item 12).
 *
 * Everything read back comes from a file: sizes are checked here, and whatever KVM refuses is
 * reported as a snapshot that does not fit this host.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "snapshot.h"

#define CPUID_MAX_ENTRIES 256
#define MSR_LIST_MAX 1024
#define XSAVE_MAX (64u << 10)
#define TSC_KHZ_TOLERANCE_PPM 250

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define APIC_LVTT 0x320
#define APIC_LVT_TIMER_TSCDEADLINE (2u << 17)

/* The MSRs that carry guest state worth keeping, in the order they are restored. Only those
 * KVM lists (KVM_GET_MSR_INDEX_LIST) are saved. EFER and the APIC base travel in SREGS. */
static const struct {
	uint32_t first, last;
} msr_ranges[] = {
	{0x10, 0x10},                 /* TSC: first, the deadline and kvmclock depend on it */
	{0x3b, 0x3b},                 /* TSC_ADJUST */
	{0x48, 0x48},                 /* SPEC_CTRL */
	{0x174, 0x176},               /* SYSENTER_CS/ESP/EIP */
	{0x1a0, 0x1a0},               /* MISC_ENABLE */
	{0x200, 0x20f},               /* variable MTRRs */
	{0x250, 0x250},               /* fixed MTRRs */
	{0x258, 0x259},
	{0x268, 0x26f},
	{0x277, 0x277},               /* PAT */
	{0x2ff, 0x2ff},               /* MTRR default type */
	{0xda0, 0xda0},               /* XSS */
	{0xc0000081, 0xc0000084},     /* STAR, LSTAR, CSTAR, SFMASK */
	{0xc0000102, 0xc0000103},     /* KERNEL_GS_BASE, TSC_AUX */
	{0xc001011f, 0xc001011f},     /* AMD VIRT_SPEC_CTRL */
	{0x11, 0x12},                 /* kvmclock, old numbers */
	{0x4b564d00, 0x4b564d01},     /* kvmclock: wall clock, system time */
	{0x4b564d06, 0x4b564d06},     /* async PF interrupt vector, before the enable below */
	{0x4b564d02, 0x4b564d05},     /* async PF enable, steal time, PV EOI, poll control */
	{0x4b564d07, 0x4b564d07},     /* async PF ack */
	{0x6e0, 0x6e0},               /* TSC_DEADLINE: last, after the TSC */
};

static int failed(const char *what)
{
	int err = -errno;
	vmm_log("KVM: ioctl (%s) failed: %s", what, strerror(errno));
	return err ? err : -EIO;
}

/* ---- save ---- */

static int save_vm(struct vm *vm, struct snap_buf *b)
{
	struct kvm_pit_state2 pit;
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return failed("GET_PIT2");
	snap_put(b, SNAP_VM_PIT, &pit, sizeof pit);
	struct kvm_clock_data clock;
	memset(&clock, 0, sizeof clock);
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return failed("GET_CLOCK");
	/* restored as a plain value: the guest's clock continues from the moment of the snapshot
	 * (KVM_CLOCK_REALTIME would make it jump by the time the file lay on disk) */
	clock.flags = 0;
	clock.realtime = clock.host_tsc = 0;
	snap_put(b, SNAP_VM_CLOCK, &clock, sizeof clock);
	static const struct {
		uint32_t chip, type;
	} chips[] = {{KVM_IRQCHIP_PIC_MASTER, SNAP_VM_PIC_MASTER},
		     {KVM_IRQCHIP_PIC_SLAVE, SNAP_VM_PIC_SLAVE},
		     {KVM_IRQCHIP_IOAPIC, SNAP_VM_IOAPIC}};
	for (size_t i = 0; i < sizeof chips / sizeof chips[0]; i++) {
		struct kvm_irqchip chip;
		memset(&chip, 0, sizeof chip);
		chip.chip_id = chips[i].chip;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return failed("GET_IRQCHIP");
		snap_put(b, chips[i].type, &chip, sizeof chip);
	}
	return 0;
}

/* Size of the xsave area KVM wants on this VM (KVM_CAP_XSAVE2), at least struct kvm_xsave. */
static size_t xsave_size(struct vm *vm)
{
	int n = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return n > (int)sizeof(struct kvm_xsave) ? (size_t)n : sizeof(struct kvm_xsave);
}

static bool msr_wanted_at(uint32_t index, size_t range)
{
	return index >= msr_ranges[range].first && index <= msr_ranges[range].last;
}

/* The MSRs to save: KVM's list filtered by msr_ranges, in msr_ranges order. */
static int msrs_to_save(struct vm *vm, struct kvm_msrs **out)
{
	struct kvm_msr_list *list = calloc(1, sizeof *list + MSR_LIST_MAX * sizeof(uint32_t));
	struct kvm_msrs *msrs = calloc(1, sizeof *msrs + MSR_LIST_MAX * sizeof(struct kvm_msr_entry));
	if (!list || !msrs) {
		free(list);
		free(msrs);
		return -ENOMEM;
	}
	list->nmsrs = MSR_LIST_MAX;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		int rc = failed("GET_MSR_INDEX_LIST");
		free(list);
		free(msrs);
		return rc;
	}
	for (size_t r = 0; r < sizeof msr_ranges / sizeof msr_ranges[0]; r++)
		for (uint32_t i = 0; i < list->nmsrs && i < MSR_LIST_MAX; i++)
			if (msr_wanted_at(list->indices[i], r))
				msrs->entries[msrs->nmsrs++].index = list->indices[i];
	free(list);
	*out = msrs;
	return 0;
}

static int save_msrs(struct vm *vm, struct snap_buf *b)
{
	struct kvm_msrs *msrs;
	int rc = msrs_to_save(vm, &msrs);
	if (rc)
		return rc;
	int n = ioctl(vm->vcpu_fd, KVM_GET_MSRS, msrs);
	if (n < 0 || (uint32_t)n != msrs->nmsrs) {
		if (n >= 0)
			vmm_log("KVM: GET_MSRS read %d of %u MSRs (stopped at 0x%x)", n, msrs->nmsrs,
				msrs->entries[n].index);
		rc = n < 0 ? failed("GET_MSRS") : -EIO;
	} else {
		snap_put(b, SNAP_CPU_MSRS, msrs,
			 sizeof *msrs + msrs->nmsrs * sizeof(struct kvm_msr_entry));
	}
	free(msrs);
	return rc;
}

static int save_cpuid(struct vm *vm, struct snap_buf *b)
{
	struct kvm_cpuid2 *cpuid =
		calloc(1, sizeof *cpuid + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = CPUID_MAX_ENTRIES;
	int rc = 0;
	if (ioctl(vm->vcpu_fd, KVM_GET_CPUID2, cpuid) < 0)
		rc = failed("GET_CPUID2");
	else
		snap_put(b, SNAP_CPU_CPUID, cpuid,
			 sizeof *cpuid + cpuid->nent * sizeof(struct kvm_cpuid_entry2));
	free(cpuid);
	return rc;
}

static int save_vcpu(struct vm *vm, struct snap_buf *b)
{
	int fd = vm->vcpu_fd;
	struct kvm_mp_state mp;
	if (ioctl(fd, KVM_GET_MP_STATE, &mp) < 0)
		return failed("GET_MP_STATE");
	snap_put(b, SNAP_CPU_MP_STATE, &mp, sizeof mp);
	struct kvm_regs regs;
	if (ioctl(fd, KVM_GET_REGS, &regs) < 0)
		return failed("GET_REGS");
	snap_put(b, SNAP_CPU_REGS, &regs, sizeof regs);
	struct kvm_sregs sregs;
	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return failed("GET_SREGS");
	snap_put(b, SNAP_CPU_SREGS, &sregs, sizeof sregs);

	size_t xlen = xsave_size(vm);
	void *xsave = calloc(1, xlen);
	if (!xsave)
		return -ENOMEM;
	if (ioctl(fd, xlen > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, xsave) < 0) {
		free(xsave);
		return failed("GET_XSAVE");
	}
	snap_put(b, SNAP_CPU_XSAVE, xsave, xlen);
	free(xsave);

	struct kvm_xcrs xcrs;
	if (ioctl(fd, KVM_GET_XCRS, &xcrs) < 0)
		return failed("GET_XCRS");
	snap_put(b, SNAP_CPU_XCRS, &xcrs, sizeof xcrs);
	struct kvm_debugregs dregs;
	if (ioctl(fd, KVM_GET_DEBUGREGS, &dregs) < 0)
		return failed("GET_DEBUGREGS");
	snap_put(b, SNAP_CPU_DEBUGREGS, &dregs, sizeof dregs);
	struct kvm_lapic_state lapic;
	if (ioctl(fd, KVM_GET_LAPIC, &lapic) < 0)
		return failed("GET_LAPIC");
	snap_put(b, SNAP_CPU_LAPIC, &lapic, sizeof lapic);
	int khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
	if (khz <= 0)
		return failed("GET_TSC_KHZ");
	uint32_t tsc_khz = (uint32_t)khz;
	snap_put(b, SNAP_CPU_TSC_KHZ, &tsc_khz, sizeof tsc_khz);
	int rc = save_cpuid(vm, b);
	if (rc == 0)
		rc = save_msrs(vm, b);
	if (rc)
		return rc;
	struct kvm_vcpu_events events;
	if (ioctl(fd, KVM_GET_VCPU_EVENTS, &events) < 0)
		return failed("GET_VCPU_EVENTS");
	snap_put(b, SNAP_CPU_EVENTS, &events, sizeof events);
	return 0;
}

int kvm_state_save(struct vm *vm, struct snap_buf *b)
{
	int rc = save_vm(vm, b);
	return rc ? rc : save_vcpu(vm, b);
}

/* ---- restore ---- */

/* The section of type, which must be exactly len bytes. */
static const void *section(const struct snap_image *img, uint32_t type, size_t len)
{
	const struct snap_section *s = snap_find(img, type);
	if (!s) {
		vmm_log("snapshot: state section %u is missing", type);
		return NULL;
	}
	if (s->len != len) {
		vmm_log("snapshot: state section %u has %u bytes, expected %zu", type, s->len, len);
		return NULL;
	}
	return s->data;
}

/* A section holding a counted array: u32 count, u32 0, then count entries of entry_size. */
static const void *counted_section(const struct snap_image *img, uint32_t type, size_t entry_size,
				   uint32_t max)
{
	const struct snap_section *s = snap_find(img, type);
	uint32_t n;
	if (!s || s->len < 8) {
		vmm_log("snapshot: state section %u is missing or short", type);
		return NULL;
	}
	memcpy(&n, s->data, 4);
	if (n > max || s->len != 8 + (size_t)n * entry_size) {
		vmm_log("snapshot: state section %u: %u entries do not match its %u bytes", type, n,
			s->len);
		return NULL;
	}
	return s->data;
}

/* Last of all (see the top of this file). */
static int restore_pit(struct vm *vm, const struct snap_image *img)
{
	const void *pit = section(img, SNAP_VM_PIT, sizeof(struct kvm_pit_state2));
	if (!pit)
		return -EINVAL;
	struct kvm_pit_state2 p;
	memcpy(&p, pit, sizeof p);
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &p) < 0)
		return failed("SET_PIT2");
	return 0;
}

static int restore_vm(struct vm *vm, const struct snap_image *img)
{
	const void *clock_data = section(img, SNAP_VM_CLOCK, sizeof(struct kvm_clock_data));
	if (!clock_data)
		return -EINVAL;
	struct kvm_clock_data clock;
	memcpy(&clock, clock_data, sizeof clock);
	clock.flags = 0; /* the value as saved, nothing else */
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return failed("SET_CLOCK");
	static const struct {
		uint32_t chip, type;
	} chips[] = {{KVM_IRQCHIP_PIC_MASTER, SNAP_VM_PIC_MASTER},
		     {KVM_IRQCHIP_PIC_SLAVE, SNAP_VM_PIC_SLAVE},
		     {KVM_IRQCHIP_IOAPIC, SNAP_VM_IOAPIC}};
	for (size_t i = 0; i < sizeof chips / sizeof chips[0]; i++) {
		const void *data = section(img, chips[i].type, sizeof(struct kvm_irqchip));
		if (!data)
			return -EINVAL;
		struct kvm_irqchip chip;
		memcpy(&chip, data, sizeof chip);
		if (chip.chip_id != chips[i].chip) {
			vmm_log("snapshot: irqchip section %u names chip %u", chips[i].type, chip.chip_id);
			return -EINVAL;
		}
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return failed("SET_IRQCHIP");
	}
	return 0;
}

/* The TSC runs at the saved rate: the same host keeps it; another may scale it, or refuse. */
static int restore_tsc_khz(struct vm *vm, const struct snap_image *img)
{
	const void *data = section(img, SNAP_CPU_TSC_KHZ, sizeof(uint32_t));
	if (!data)
		return -EINVAL;
	uint32_t saved;
	memcpy(&saved, data, sizeof saved);
	int now = ioctl(vm->vcpu_fd, KVM_GET_TSC_KHZ, 0);
	if (now <= 0)
		return failed("GET_TSC_KHZ");
	uint64_t diff = (uint64_t)now > saved ? (uint64_t)now - saved : saved - (uint64_t)now;
	if (diff * 1000000 <= (uint64_t)saved * TSC_KHZ_TOLERANCE_PPM)
		return 0;
	if (ioctl(vm->vcpu_fd, KVM_SET_TSC_KHZ, (unsigned long)saved) < 0) {
		vmm_log("snapshot: taken with a %u kHz TSC, this host has %d kHz and cannot scale it",
			saved, now);
		return -EINVAL;
	}
	return 0;
}

/* A TSC deadline of 0 with the timer in TSC-deadline mode would leave the guest without timer
 * interrupts until something else wakes it: arm it at the saved TSC (fires at once) instead. */
static void rearm_tsc_deadline(struct kvm_msrs *msrs, const struct kvm_lapic_state *lapic)
{
	uint32_t lvtt;
	memcpy(&lvtt, lapic->regs + APIC_LVTT, sizeof lvtt);
	if ((lvtt & (3u << 17)) != APIC_LVT_TIMER_TSCDEADLINE || (lvtt & (1u << 16)))
		return; /* not in TSC-deadline mode, or masked */
	uint64_t tsc = 0;
	for (uint32_t i = 0; i < msrs->nmsrs; i++)
		if (msrs->entries[i].index == MSR_IA32_TSC)
			tsc = msrs->entries[i].data;
	for (uint32_t i = 0; i < msrs->nmsrs; i++)
		if (msrs->entries[i].index == MSR_IA32_TSC_DEADLINE && msrs->entries[i].data == 0)
			msrs->entries[i].data = tsc;
}

static int restore_msrs(struct vm *vm, const struct snap_image *img,
			const struct kvm_lapic_state *lapic)
{
	const uint8_t *data = counted_section(img, SNAP_CPU_MSRS, sizeof(struct kvm_msr_entry),
					      MSR_LIST_MAX);
	if (!data)
		return -EINVAL;
	const struct snap_section *s = snap_find(img, SNAP_CPU_MSRS);
	struct kvm_msrs *msrs = malloc(s->len);
	if (!msrs)
		return -ENOMEM;
	memcpy(msrs, data, s->len);
	rearm_tsc_deadline(msrs, lapic);
	int rc = 0;
	int n = ioctl(vm->vcpu_fd, KVM_SET_MSRS, msrs);
	if (n < 0) {
		rc = failed("SET_MSRS");
	} else if ((uint32_t)n != msrs->nmsrs) {
		vmm_log("snapshot: KVM refused MSR 0x%x (%d of %u set)", msrs->entries[n].index, n,
			msrs->nmsrs);
		rc = -EINVAL;
	}
	free(msrs);
	return rc;
}

static int restore_cpuid(struct vm *vm, const struct snap_image *img)
{
	const uint8_t *data = counted_section(img, SNAP_CPU_CPUID, sizeof(struct kvm_cpuid_entry2),
					      CPUID_MAX_ENTRIES);
	if (!data)
		return -EINVAL;
	const struct snap_section *s = snap_find(img, SNAP_CPU_CPUID);
	struct kvm_cpuid2 *cpuid = malloc(s->len);
	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid, data, s->len);
	int rc = ioctl(vm->vcpu_fd, KVM_SET_CPUID2, cpuid) < 0 ? failed("SET_CPUID2") : 0;
	free(cpuid);
	return rc;
}

/* One fixed-size vCPU section, set with its ioctl. */
static int set_fixed(struct vm *vm, const struct snap_image *img, uint32_t type, size_t len,
		     unsigned long request, const char *what)
{
	const void *data = section(img, type, len);
	if (!data)
		return -EINVAL;
	void *copy = malloc(len); /* KVM reads it; the file's bytes stay as they were */
	if (!copy)
		return -ENOMEM;
	memcpy(copy, data, len);
	int rc = ioctl(vm->vcpu_fd, request, copy) < 0 ? failed(what) : 0;
	free(copy);
	return rc;
}

static int restore_vcpu(struct vm *vm, const struct snap_image *img)
{
	int rc = restore_cpuid(vm, img);
	if (rc == 0)
		rc = restore_tsc_khz(vm, img);
	if (rc == 0)
		rc = set_fixed(vm, img, SNAP_CPU_MP_STATE, sizeof(struct kvm_mp_state),
			       KVM_SET_MP_STATE, "SET_MP_STATE");
	if (rc == 0)
		rc = set_fixed(vm, img, SNAP_CPU_REGS, sizeof(struct kvm_regs), KVM_SET_REGS,
			       "SET_REGS");
	if (rc == 0)
		rc = set_fixed(vm, img, SNAP_CPU_SREGS, sizeof(struct kvm_sregs), KVM_SET_SREGS,
			       "SET_SREGS");
	if (rc == 0)
		rc = set_fixed(vm, img, SNAP_CPU_XSAVE, xsave_size(vm), KVM_SET_XSAVE, "SET_XSAVE");
	if (rc == 0)
		rc = set_fixed(vm, img, SNAP_CPU_XCRS, sizeof(struct kvm_xcrs), KVM_SET_XCRS,
			       "SET_XCRS");
	if (rc == 0)
		rc = set_fixed(vm, img, SNAP_CPU_DEBUGREGS, sizeof(struct kvm_debugregs),
			       KVM_SET_DEBUGREGS, "SET_DEBUGREGS");
	if (rc)
		return rc;
	const void *lapic_data = section(img, SNAP_CPU_LAPIC, sizeof(struct kvm_lapic_state));
	if (!lapic_data)
		return -EINVAL;
	struct kvm_lapic_state lapic;
	memcpy(&lapic, lapic_data, sizeof lapic);
	if (ioctl(vm->vcpu_fd, KVM_SET_LAPIC, &lapic) < 0)
		return failed("SET_LAPIC");
	if ((rc = restore_msrs(vm, img, &lapic)) != 0)
		return rc;
	const void *ev_data = section(img, SNAP_CPU_EVENTS, sizeof(struct kvm_vcpu_events));
	if (!ev_data)
		return -EINVAL;
	struct kvm_vcpu_events events;
	memcpy(&events, ev_data, sizeof events);
	/* GET leaves these out of flags; the saved values are meant as they are */
	events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (ioctl(vm->vcpu_fd, KVM_SET_VCPU_EVENTS, &events) < 0)
		return failed("SET_VCPU_EVENTS");
	/* the guest was paused: tell it, so its soft-lockup watchdog does not fire (may fail
	 * harmlessly when the guest does not use kvmclock) */
	(void)ioctl(vm->vcpu_fd, KVM_KVMCLOCK_CTRL, 0);
	return 0;
}

int kvm_state_restore(struct vm *vm, const struct snap_image *img)
{
	int rc = restore_vm(vm, img);
	if (rc == 0)
		rc = restore_vcpu(vm, img);
	return rc ? rc : restore_pit(vm, img);
}
