/* KVM set-up and the vCPU run loop. This file knows no device: exits are dispatched to whatever
 * io_device covers the port or address. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "layout.h"
#include "vmm.h"

#define KVM_API_VERSION_EXPECTED 12

static volatile int stop_requested; /* set from any thread; read by the run loop */
static volatile int stop_status;
static const char *volatile report_requested; /* vm_request_report's why, until logged */
static pthread_t vcpu_thread;
static bool vcpu_thread_known;
static struct kvm_run *running;

void vmm_log(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "airlock-vmm: %s\n", line);
}

static int kvm_ioctl_failed(const char *what)
{
	int err = -errno;
	vmm_log("KVM: ioctl (%s) failed: %s", what, strerror(errno));
	return err;
}

int vm_create(struct vm *vm, uint64_t mem_size, int mem_fd)
{
	memset(vm, 0, sizeof *vm);
	vm->kvm_fd = vm->vm_fd = vm->vcpu_fd = -1;
	if (mem_size > LAYOUT_MAX_RAM || mem_size < (64u << 20)) {
		vmm_log("memory size must be 64 MiB..%llu MiB", LAYOUT_MAX_RAM >> 20);
		return -EINVAL;
	}
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int err = -errno;
		vmm_log("KVM: cannot open /dev/kvm: %s", strerror(errno));
		return err;
	}
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION_EXPECTED) {
		vmm_log("KVM: API version %d, expected %d", version, KVM_API_VERSION_EXPECTED);
		return -ENOTSUP;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return kvm_ioctl_failed("CREATE_VM");
	/* x86 housekeeping that Intel VMX needs: a TSS and an identity-map page out of RAM */
	uint64_t identity = LAYOUT_IDENTITY_MAP;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
		return kvm_ioctl_failed("SET_IDENTITY_MAP_ADDR");
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_TSS) < 0)
		return kvm_ioctl_failed("SET_TSS_ADDR");
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return kvm_ioctl_failed("CREATE_IRQCHIP");
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return kvm_ioctl_failed("CREATE_PIT2");

	/* a snapshot's memory file: its page cache is shared by every VM restored from it, and
	 * each VM's writes are its own copies */
	void *host = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_NORESERVE | (mem_fd < 0 ? MAP_ANONYMOUS : 0), mem_fd, 0);
	if (host == MAP_FAILED) {
		int err = -errno;
		vmm_log("cannot map %llu MiB of guest memory: %s", (unsigned long long)mem_size >> 20,
			strerror(errno));
		return err;
	}
	vm->mem = (struct guest_memory){.host = host, .size = mem_size};
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = mem_size,
		.userspace_addr = (uint64_t)(uintptr_t)host};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return kvm_ioctl_failed("SET_USER_MEMORY_REGION");

	vm->vcpu_fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 0);
	if (vm->vcpu_fd < 0)
		return kvm_ioctl_failed("CREATE_VCPU");
	int run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size < (int)sizeof(struct kvm_run))
		return kvm_ioctl_failed("GET_VCPU_MMAP_SIZE");
	vm->run_size = (size_t)run_size;
	vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu_fd, 0);
	if (vm->run == MAP_FAILED) {
		vm->run = NULL;
		int err = -errno;
		vmm_log("cannot map the vCPU's kvm_run: %s", strerror(errno));
		return err;
	}
	/* KVM copies the general registers into kvm_run at each exit: the exit history then says
	 * where the guest was (kvm_report.c), which an AMD vCPU's state no longer can after a
	 * triple fault (KVM resets it) */
	int sync = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	if (sync > 0 && (sync & KVM_SYNC_X86_REGS))
		vm->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
	return 0;
}

int vm_add_device(struct vm *vm, struct io_device *dev)
{
	if (vm->n_devices == VMM_MAX_DEVICES)
		return -ENOSPC;
	vm->devices[vm->n_devices++] = dev;
	return 0;
}

int vm_irq_line(struct vm *vm, unsigned gsi, struct irq_line *irq)
{
	irq->gsi = gsi;
	irq->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (irq->fd < 0)
		return -errno;
	struct kvm_irqfd req = {.fd = (uint32_t)irq->fd, .gsi = gsi};
	if (ioctl(vm->vm_fd, KVM_IRQFD, &req) < 0)
		return kvm_ioctl_failed("IRQFD");
	return 0;
}

void irq_raise(const struct irq_line *irq)
{
	uint64_t one = 1;
	(void)!write(irq->fd, &one, sizeof one);
}

static void on_kick(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

void vm_request_stop(struct vm *vm, int status)
{
	(void)vm;
	stop_status = status;
	__atomic_store_n(&stop_requested, 1, __ATOMIC_SEQ_CST);
	if (running)
		running->immediate_exit = 1;
	if (vcpu_thread_known && !pthread_equal(pthread_self(), vcpu_thread))
		pthread_kill(vcpu_thread, SIGUSR1);
}

void vm_request_report(struct vm *vm, const char *why)
{
	(void)vm;
	__atomic_store_n(&report_requested, why, __ATOMIC_SEQ_CST);
	if (running)
		running->immediate_exit = 1;
	if (vcpu_thread_known && !pthread_equal(pthread_self(), vcpu_thread))
		pthread_kill(vcpu_thread, SIGUSR1);
}

/* What a triple fault (KVM_EXIT_SHUTDOWN) was. It is how the guest reboots itself: Linux with
 * reboot=t (the agent's end; a panic, with panic=-1) loads an empty IDT and raises int3. With
 * any other IDT it is a crash the guest did not ask for. On AMD, KVM resets the vCPU at a
 * triple fault (svm.c, shutdown_interception: the VMCB is undefined after it), so its state
 * cannot tell the two apart. */
enum triple_fault { REBOOT, CRASH, UNKNOWN };

static enum triple_fault triple_fault_kind(struct vm *vm, struct kvm_sregs *sregs)
{
	if (ioctl(vm->vcpu_fd, KVM_GET_SREGS, sregs) < 0) {
		kvm_ioctl_failed("GET_SREGS");
		return UNKNOWN;
	}
	if (sregs->idt.limit == 0)
		return REBOOT;
	bool reset = sregs->cs.selector == 0xf000 && sregs->cs.base == 0xffff0000 &&
		     !(sregs->cr0 & 1) && sregs->idt.limit == 0xffff && sregs->idt.base == 0;
	return reset ? UNKNOWN : CRASH;
}

static struct io_device *find_device(struct vm *vm, bool port, uint64_t addr, unsigned len)
{
	for (unsigned i = 0; i < vm->n_devices; i++) {
		struct io_device *d = vm->devices[i];
		if (d->is_port == port && addr >= d->base && addr - d->base < d->size &&
		    len <= d->size - (addr - d->base))
			return d;
	}
	return NULL;
}

static int handle_io(struct vm *vm)
{
	struct kvm_run *run = vm->run;
	unsigned size = run->io.size;
	uint64_t total = (uint64_t)size * run->io.count;
	if ((size != 1 && size != 2 && size != 4) || run->io.data_offset > vm->run_size ||
	    total > vm->run_size - run->io.data_offset) {
		vmm_log("KVM: malformed port I/O exit");
		return -EINVAL;
	}
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	struct io_device *dev = find_device(vm, true, run->io.port, size);
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			if (dev)
				dev->write(dev, run->io.port - dev->base, data, size);
		} else if (dev) {
			dev->read(dev, run->io.port - dev->base, data, size);
		} else {
			memset(data, 0xff, size); /* nothing there: the bus floats high */
		}
	}
	return 0;
}

static void handle_mmio(struct vm *vm)
{
	struct kvm_run *run = vm->run;
	unsigned len = run->mmio.len > sizeof run->mmio.data ? sizeof run->mmio.data : run->mmio.len;
	struct io_device *dev = find_device(vm, false, run->mmio.phys_addr, len);
	if (!dev) {
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, len);
		return;
	}
	if (run->mmio.is_write)
		dev->write(dev, run->mmio.phys_addr - dev->base, run->mmio.data, len);
	else
		dev->read(dev, run->mmio.phys_addr - dev->base, run->mmio.data, len);
}

int vcpu_complete_exit(struct vm *vm)
{
	vm->run->immediate_exit = 1;
	int rc = ioctl(vm->vcpu_fd, KVM_RUN, 0);
	int err = errno;
	vm->run->immediate_exit = 0;
	if (rc == 0 || err != EINTR) {
		vmm_log("KVM: ioctl (RUN) with immediate_exit did not return EINTR");
		return rc == 0 ? -EIO : -err;
	}
	return 0;
}

int vm_run(struct vm *vm)
{
	struct sigaction sa = {.sa_handler = on_kick}; /* no SA_RESTART: KVM_RUN returns EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	vcpu_thread = pthread_self();
	vcpu_thread_known = true;
	running = vm->run;
	for (;;) {
		if (__atomic_load_n(&stop_requested, __ATOMIC_SEQ_CST))
			return stop_status;
		if (ioctl(vm->vcpu_fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vm->run->immediate_exit = 0;
				/* out of KVM_RUN with its last exit completed: the state is whole */
				const char *why = __atomic_exchange_n(&report_requested, NULL,
								      __ATOMIC_SEQ_CST);
				if (why)
					vm_report_state(vm, why);
				continue;
			}
			kvm_ioctl_failed("RUN");
			vm_report_state(vm, "KVM_RUN failed");
			return 1;
		}
		vm_record_exit(vm->run);
		struct kvm_sregs sregs;
		switch (vm->run->exit_reason) {
		case KVM_EXIT_IO:
			if (handle_io(vm) != 0)
				return 1;
			break;
		case KVM_EXIT_MMIO:
			handle_mmio(vm);
			break;
		case KVM_EXIT_SHUTDOWN: /* a triple fault: how the guest reboots (reboot=t) */
			switch (triple_fault_kind(vm, &sregs)) {
			case REBOOT:
				if (vm->verbose)
					vmm_log("the guest shut down");
				return 0;
			case CRASH:
				vm_report_state(vm, "the guest triple-faulted");
				vmm_log("the guest crashed: a triple fault it did not ask for (IDT "
					"%#llx/%#x, not the empty one of a reboot); its state is logged "
					"above",
					(unsigned long long)sregs.idt.base, sregs.idt.limit);
				return 1;
			case UNKNOWN:
				/* most often the agent's own end: one line, what is known */
				vm_report_end(vm, "the guest ended with a triple fault: its own reboot or a "
						  "crash (KVM resets an AMD vCPU then: no state to tell)");
				return 0;
			}
			return 0;
		case KVM_EXIT_SYSTEM_EVENT:
			vm_report_state(vm, "the guest ended with a system event");
			vmm_log("the guest ended with system event %u", vm->run->system_event.type);
			return 0;
		case KVM_EXIT_HLT:
			/* never with the in-kernel irqchip, which halts the vCPU in KVM itself */
			vm_report_state(vm, "the guest halted out of KVM");
			vmm_log("the guest halted (KVM_EXIT_HLT); its state is logged above");
			return 0;
		case KVM_EXIT_FAIL_ENTRY:
			vm_report_state(vm, "VM entry failed");
			vmm_log("KVM: VM entry failed (hardware reason 0x%llx); the VM's state is "
				"logged above",
				(unsigned long long)vm->run->fail_entry.hardware_entry_failure_reason);
			return 1;
		case KVM_EXIT_INTERNAL_ERROR:
			vm_report_state(vm, "KVM internal error");
			vmm_log("KVM: internal error (suberror %u): the guest ran an instruction KVM "
				"cannot emulate; the VM's state is logged above",
				vm->run->internal.suberror);
			return 1;
		default:
			vm_report_state(vm, "unexpected exit");
			vmm_log("KVM: unexpected exit (reason %u); the VM's state is logged above",
				vm->run->exit_reason);
			return 1;
		}
	}
}
