/* airlock-vmm: one process per microVM, started by airlock (never by users). Boots the guest's
 * vmlinux on /dev/kvm with a read-only virtio-blk root disk, a virtio-console port on the host
 * channel (an fd it inherits) and an 8250 UART for the boot log, and runs until the guest ends.
 * With --snapshot-to DIR, SIGUSR2 stops the guest and writes a snapshot to DIR instead (exit 0
 * once it is on disk); --restore DIR resumes a VM from one (snapshot.c) without booting.
 * Kept state (vmm/pages.h): --keep-to-fds S,P makes SIGUSR2 write the state into fd S and only
 * the pages changed since the restore into fd P; --state-in-fd and --pages-in-fd restore such a
 * state over DIR's memory. Those fds are opened by airlock: the monitor names no path for them.
 * It keeps no fd but stdio and the channel. First it forks into a pid namespace of its own, a
 * supervisor outside (jail_supervisor.c); once its files are open it enters a jail (jail.c: a
 * user of its own outside, --run-as when started as root, its own namespaces, an empty root, no
 * capabilities, limits), and once its devices are attached a seccomp filter (seccomp.c): any
 * syscall outside it kills it with SIGSYS. --jail-check builds the same jail with no VM.
 * Exit status: 0 when the guest shut down (or the snapshot was written), 1 when the VM failed,
 * 2 for bad arguments, 3 when a snapshot was refused (corrupt, or from another build or host).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jail.h"
#include "layout.h"
#include "pages.h"
#include "snapshot.h"
#include "vmm.h"


struct options {
	const char *kernel, *rootfs, *serial_log, *cmdline_extra;
	const char *snapshot_to, *restore;
	int state_in_fd, pages_in_fd;          /* a kept state to restore, or -1 */
	int keep_state_fd, keep_pages_fd;      /* where SIGUSR2 saves a kept state, or -1 */
	bool serial_stdout; /* --serial-stdout: the guest console to our stdout, opened by the
			     * starter (a file it owns, which our own user could not open) */
	int channel_fd;
	unsigned memory_mb;
	bool verbose;
	bool seccomp_log, seccomp_selftest;
	bool unconfined; /* --unconfined: no jail, no filter (the benchmark's "before") */
	const char *run_as; /* --run-as UID:GID (started as root) */
	bool jail_check;    /* --jail-check: build the jail, no VM, and say whether it holds */
};

static void usage(void)
{
	fprintf(stderr, "usage: airlock-vmm --kernel VMLINUX --rootfs IMAGE --channel-fd N\n"
			"                   [--memory-mb N] [--vcpus 1] [--serial-log FILE | --serial-stdout]\n"
			"                   [--cmdline-extra ARGS] [--snapshot-to DIR] [--verbose]\n"
			"       airlock-vmm --restore DIR --rootfs IMAGE --channel-fd N\n"
			"                   [--serial-log FILE | --serial-stdout] [--snapshot-to DIR]\n"
			"                   [--state-in-fd N --pages-in-fd N] [--keep-to-fds N,N]\n"
			"                   [--verbose]\n"
			"       airlock-vmm --jail-check [--run-as UID:GID]\n"
			"  --run-as UID:GID    started as root: the VM and its supervisor become this user\n"
			"                      and group outside (default: nobody)\n"
			"  --jail-check        set up the jail as a VM would, with no VM, and exit 0 if it\n"
			"                      holds (airlock doctor)\n"
			"  --seccomp-log       development: log syscalls outside the filter, not kill\n"
			"  --seccomp-selftest  tests: make a forbidden syscall once the filter is on\n"
			"  --unconfined        benchmark only: no jail and no filter, to measure their cost\n");
}

/* An fd number this process holds. */
static int parse_fd(const char *text, int *out)
{
	char *end;
	long fd = strtol(text, &end, 10);
	if (*end || *text == '\0' || fd < 0 || fd > 1023 || fcntl((int)fd, F_GETFD) < 0) {
		vmm_log("'%s' is not an open file descriptor", text);
		return -EINVAL;
	}
	*out = (int)fd;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option options[] = {
		{"kernel", required_argument, NULL, 'k'},
		{"rootfs", required_argument, NULL, 'r'},
		{"channel-fd", required_argument, NULL, 'c'},
		{"memory-mb", required_argument, NULL, 'm'},
		{"vcpus", required_argument, NULL, 'n'},
		{"serial-log", required_argument, NULL, 's'},
		{"serial-stdout", no_argument, NULL, 'O'},
		{"cmdline-extra", required_argument, NULL, 'x'},
		{"verbose", no_argument, NULL, 'v'},
		{"snapshot-to", required_argument, NULL, 'S'},
		{"restore", required_argument, NULL, 'R'},
		{"seccomp-log", no_argument, NULL, 'L'},
		{"seccomp-selftest", no_argument, NULL, 'T'},
		{"unconfined", no_argument, NULL, 'U'},
		{"run-as", required_argument, NULL, 'u'},
		{"jail-check", no_argument, NULL, 'J'},
		{"state-in-fd", required_argument, NULL, 'i'},
		{"pages-in-fd", required_argument, NULL, 'p'},
		{"keep-to-fds", required_argument, NULL, 'K'},
		{NULL, 0, NULL, 0},
	};
	*o = (struct options){.channel_fd = -1, .memory_mb = 512, .state_in_fd = -1,
			      .pages_in_fd = -1, .keep_state_fd = -1, .keep_pages_fd = -1};
	int c;
	char *end;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case 'k': o->kernel = optarg; break;
		case 'r': o->rootfs = optarg; break;
		case 's': o->serial_log = optarg; break;
		case 'O': o->serial_stdout = true; break;
		case 'x': o->cmdline_extra = optarg; break;
		case 'v': o->verbose = true; break;
		case 'S': o->snapshot_to = optarg; break;
		case 'R': o->restore = optarg; break;
		case 'L': o->seccomp_log = true; break;
		case 'T': o->seccomp_selftest = true; break;
		case 'U': o->unconfined = true; break;
		case 'u': o->run_as = optarg; break;
		case 'J': o->jail_check = true; break;
		case 'i':
		case 'p':
			if (parse_fd(optarg, c == 'i' ? &o->state_in_fd : &o->pages_in_fd) != 0)
				return -EINVAL;
			break;
		case 'K': {
			char *comma = strchr(optarg, ',');
			if (!comma) {
				vmm_log("--keep-to-fds: want STATE_FD,PAGES_FD");
				return -EINVAL;
			}
			*comma = '\0';
			if (parse_fd(optarg, &o->keep_state_fd) != 0 ||
			    parse_fd(comma + 1, &o->keep_pages_fd) != 0)
				return -EINVAL;
			break;
		}
		case 'c':
			o->channel_fd = (int)strtol(optarg, &end, 10);
			if (*end || o->channel_fd < 0 || fcntl(o->channel_fd, F_GETFD) < 0) {
				vmm_log("--channel-fd: '%s' is not an open file descriptor", optarg);
				return -EINVAL;
			}
			break;
		case 'm':
			o->memory_mb = (unsigned)strtoul(optarg, &end, 10);
			if (*end || o->memory_mb < 64 || o->memory_mb > (LAYOUT_MAX_RAM >> 20)) {
				vmm_log("--memory-mb: want 64..%llu", LAYOUT_MAX_RAM >> 20);
				return -EINVAL;
			}
			break;
		case 'n':
			if (strcmp(optarg, "1") != 0) {
				vmm_log("--vcpus: only 1 vCPU is supported");
				return -EINVAL;
			}
			break;
		default:
			return -EINVAL;
		}
	}
	if (optind < argc)
		return -EINVAL;
	if (o->serial_log && o->serial_stdout) {
		vmm_log("--serial-log and --serial-stdout: one console, one place");
		return -EINVAL;
	}
	if (o->jail_check)
		return o->unconfined ? -EINVAL : 0;
	if (!o->rootfs || o->channel_fd < 0)
		return -EINVAL;
	/* a restored VM has its kernel and memory size in the snapshot (and may be snapshotted
	 * again: a snapshot of a restored VM shows its state, e.g. when it stopped answering) */
	if (!o->restore && o->kernel == NULL)
		return -EINVAL;
	if ((o->state_in_fd >= 0) != (o->pages_in_fd >= 0) || (o->state_in_fd >= 0 && !o->restore) ||
	    (o->keep_state_fd >= 0 && (!o->restore || o->snapshot_to))) {
		vmm_log("a kept state is restored (--state-in-fd with --pages-in-fd) and kept "
			"(--keep-to-fds) only with --restore, and not with --snapshot-to");
		return -EINVAL;
	}
	return 0;
}

/* Maps the whole vmlinux read-only. */
static int map_file(const char *path, const uint8_t **data, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -errno;
	*data = p;
	*len = (size_t)st.st_size;
	return 0;
}

static int boot(struct vm *vm, const struct options *o)
{
	const uint8_t *image = NULL;
	size_t image_len = 0;
	int rc = map_file(o->kernel, &image, &image_len);
	if (rc) {
		vmm_log("cannot read the kernel %s: %s", o->kernel, strerror(-rc));
		return rc;
	}
	uint64_t entry;
	rc = boot_load_elf(&vm->mem, image, image_len, &entry);
	munmap((void *)image, image_len);
	if (rc) {
		vmm_log("cannot load %s: %s", o->kernel,
			rc == -ENOEXEC ? "not an x86_64 ELF vmlinux" : "it does not fit in guest RAM");
		return rc;
	}
	/* The guest's TSC rate, from KVM: left to measure it against the PIT, the guest's kernel
	 * fails now and then (every time in the KVM test host) and keeps the 4 ms jiffies clock for
	 * good, in every VM of a snapshot. tsc=reliable: nor is the TSC to be judged against the
	 * tick, which a loaded host loses. */
	char tsc[64] = "";
	unsigned tsc_khz = vcpu_tsc_khz(vm);
	if (tsc_khz)
		snprintf(tsc, sizeof tsc, "tsc_early_khz=%u tsc=reliable ", tsc_khz);
	/* no ACPI, no PCI: the kernel learns each virtio-mmio device from one parameter */
	char devices[LAYOUT_VIRTIO_SLOTS * 48] = "";
	size_t used = 0;
	for (unsigned slot = 0; slot < LAYOUT_VIRTIO_SLOTS; slot++) {
		int k = snprintf(devices + used, sizeof devices - used,
				 "virtio_mmio.device=%uK@0x%llx:%u ", LAYOUT_VIRTIO_MMIO_SIZE >> 10,
				 LAYOUT_VIRTIO_BASE(slot), LAYOUT_VIRTIO_IRQ(slot));
		if (k < 0 || (size_t)k >= sizeof devices - used)
			return -E2BIG;
		used += (size_t)k;
	}
	char cmdline[LAYOUT_CMDLINE_MAX];
	int n = snprintf(cmdline, sizeof cmdline, GUEST_CMDLINE_CONSOLE " %s " GUEST_CMDLINE_SYSTEM
			 " %s%s%s", o->verbose ? "" : "quiet", devices, tsc,
			 o->cmdline_extra ? o->cmdline_extra : "");
	if (n < 0 || (size_t)n >= sizeof cmdline) {
		vmm_log("kernel command line too long");
		return -E2BIG;
	}
	if ((rc = boot_write_page_tables(&vm->mem)) != 0 ||
	    (rc = boot_write_zero_page(&vm->mem, cmdline)) != 0 ||
	    (rc = boot_write_mp_table(&vm->mem)) != 0) {
		vmm_log("cannot write the boot structures: %s", strerror(-rc));
		return rc;
	}
	return vcpu_setup_x86_64(vm, entry);
}

/* The files the devices use, opened before the jail hides every path. */
struct device_files {
	int log_fd;  /* the 8250's output, -1 for none */
	int disk_fd; /* the root disk */
};

static int open_device_files(const struct options *o, struct device_files *f)
{
	f->log_fd = -1;
	if (o->serial_stdout) {
		f->log_fd = STDOUT_FILENO;
	} else if (o->serial_log) {
		f->log_fd = open(o->serial_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (f->log_fd < 0)
			vmm_log("cannot open %s: %s (boot log dropped)", o->serial_log, strerror(errno));
	} else if (o->verbose) {
		f->log_fd = STDERR_FILENO;
	}
	f->disk_fd = open(o->rootfs, O_RDONLY | O_CLOEXEC);
	if (f->disk_fd < 0) {
		int err = -errno;
		vmm_log("cannot open the root disk %s: %s", o->rootfs, strerror(errno));
		return err;
	}
	return 0;
}

static int attach_devices(struct vm *vm, const struct options *o, const struct device_files *f)
{
	int rc = serial_create(vm, f->log_fd);
	if (rc == 0)
		rc = i8042_create(vm);
	if (rc == 0)
		rc = rtc_create(vm);
	if (rc == 0)
		rc = virtio_blk_create(vm, f->disk_fd, LAYOUT_VIRTIO_BASE(LAYOUT_VIRTIO_BLK),
				       LAYOUT_VIRTIO_IRQ(LAYOUT_VIRTIO_BLK));
	if (rc == 0)
		rc = virtio_console_create(vm, o->channel_fd, LAYOUT_VIRTIO_BASE(LAYOUT_VIRTIO_CONSOLE),
					   LAYOUT_VIRTIO_IRQ(LAYOUT_VIRTIO_CONSOLE));
	if (rc)
		vmm_log("cannot set up the devices: %s", strerror(-rc));
	return rc;
}

static void on_snapshot_signal(int sig)
{
	(void)sig;
	vm_request_stop(NULL, VM_RUN_SNAPSHOT);
}

/* Restore, first half: the snapshot is checked before any KVM state exists, then the VM is
 * created over its memory. Whatever it holds that this host refuses is the snapshot's fault
 * (status 3). */
static int load_snapshot(struct vm *vm, const struct options *o, struct snapshot *snap)
{
	if (snapshot_load(o->restore, o->state_in_fd, snap) != 0)
		return SNAP_EXIT_REFUSED;
	if (vm_create(vm, snap->img.mem_size, snap->mem_fd) != 0)
		return 1;
	close(snap->mem_fd); /* the mapping keeps the file */
	if (o->pages_in_fd >= 0) { /* a kept state's pages over the snapshot's, before any run */
		int rc = pages_apply(o->pages_in_fd, vm->mem.host, vm->mem.size);
		close(o->pages_in_fd);
		if (rc) {
			vmm_log("kept state refused: its pages do not fit this VM: %s", strerror(-rc));
			return SNAP_EXIT_REFUSED;
		}
	}
	vm->verbose = o->verbose;
	return 0;
}

/* Second half, with the devices attached: their state and KVM's. */
static int apply_snapshot(struct vm *vm, const struct options *o, struct snapshot *snap)
{
	if (snapshot_restore(vm, snap) != 0) {
		vmm_log("snapshot %s refused: its state does not fit this VM or host", o->restore);
		return SNAP_EXIT_REFUSED;
	}
	free(snap->file);
	return 0;
}

/* --jail-check: the jail a VM would get, every step of it, with no VM: what `airlock doctor`
 * runs to know that a VM can start here. Same code, same messages on failure. */
static int jail_check(const struct jail_identity *id)
{
	if (jail_begin(id) != 0 || jail_enter(id) != 0 ||
	    jail_seal(64ull << 20, false, false) != 0)
		return 1;
	struct vmm_seccomp_options filter = {0};
	if (vmm_seccomp_install(&filter) != 0)
		return 1;
	vmm_log("jail: ok (pid, user, mount, net, ipc, uts and cgroup namespaces, an empty root, "
		"no capabilities, seccomp)");
	return 0;
}

int main(int argc, char **argv)
{
	/* Started as root: never dumpable, from the first instruction to the end, so that no
	 * process attaches while it changes user (the user's processes could, were it dumpable
	 * then; a process attached once stays attached). Anyone else stays dumpable until the
	 * seal: writing its own id maps needs /proc/self to be its own. */
	if (geteuid() == 0)
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* airlock owns this VM: if airlock dies, the VM goes with it */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* One malloc arena: a thread's first allocation otherwise creates its own, which reads
	 * /sys for the CPU count, a file the jail and the seccomp filter no longer allow. */
	mallopt(M_ARENA_MAX, 1);
	signal(SIGPIPE, SIG_IGN);
	struct options o;
	if (parse_options(argc, argv, &o) != 0) {
		usage();
		return 2;
	}
	/* Only stdio and the channel: whatever else the starter left open (it should have set
	 * CLOEXEC) would reach the VM and its supervisor. */
	const int keep[] = {STDIN_FILENO,    STDOUT_FILENO,   STDERR_FILENO,   o.channel_fd,
			    o.state_in_fd,   o.pages_in_fd,   o.keep_state_fd, o.keep_pages_fd};
	if (jail_close_fds_except(keep, sizeof keep / sizeof keep[0]) != 0)
		return 1;
	bool confine = !o.unconfined;
	struct jail_identity id = {0};
	if (confine && jail_identity_choose(o.run_as, o.snapshot_to != NULL, &id) != 0)
		return 2;
	if (o.jail_check) { /* no leak check at exit: the jail hides the /proc it reads */
		int status = jail_check(&id);
		fflush(stderr);
		_exit(status);
	}
	bool keeps = o.keep_state_fd >= 0;
	if (o.snapshot_to || keeps) {
		struct sigaction sa = {.sa_handler = on_snapshot_signal}; /* no SA_RESTART */
		sigaction(SIGUSR2, &sa, NULL);
	}
	/* Before anything else: the VM in a pid namespace of its own (jail_supervisor.c) */
	if (confine && jail_begin(&id) != 0)
		return 1;
	/* Everything the VM needs is opened first: the jail leaves no path behind. */
	struct device_files files;
	int rc = open_device_files(&o, &files) == 0 ? 0 : 1;
	int snapshot_dir_fd = -1, pagemap_fd = -1;
	if (rc == 0 && o.snapshot_to && (snapshot_dir_fd = snapshot_open_dir(o.snapshot_to)) < 0)
		rc = 1;
	/* the pages a kept state holds are read from our own page map: this process's, opened
	 * before the jail hides /proc */
	if (rc == 0 && keeps &&
	    (pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0) {
		vmm_log("kept state: cannot open /proc/self/pagemap: %s", strerror(errno));
		rc = 1;
	}
	struct vm vm;
	struct snapshot snap;
	if (rc == 0 && o.restore) {
		rc = load_snapshot(&vm, &o, &snap);
	} else if (rc == 0) {
		rc = vm_create(&vm, (uint64_t)o.memory_mb << 20, -1) != 0 ? 1 : 0;
		vm.verbose = o.verbose;
		if (rc == 0 && boot(&vm, &o) != 0)
			rc = 1;
	}
	/* Still one thread (the console's starts with the devices): into the jail (jail.c). */
	if (rc == 0 && confine && jail_enter(&id) != 0)
		rc = 1;
	if (rc == 0 && attach_devices(&vm, &o, &files) != 0)
		rc = 1;
	if (rc == 0 && confine && jail_seal(vm.mem.size, o.snapshot_to != NULL, keeps) != 0)
		rc = 1;
	if (rc == 0 && o.restore)
		rc = apply_snapshot(&vm, &o, &snap);
	/* Every thread started: from here on the steady state's syscalls only (seccomp.c). */
	struct vmm_seccomp_options filter = {.snapshots = o.snapshot_to != NULL,
					     .kept_state = keeps, .log_only = o.seccomp_log};
	if (rc == 0 && confine && vmm_seccomp_install(&filter) != 0)
		rc = 1;
	if (rc == 0 && o.seccomp_selftest)
		vmm_seccomp_selftest();
	int status = rc == 0 ? vm_run(&vm) : rc;
	if (status == VM_RUN_SNAPSHOT && keeps)
		status = snapshot_save_kept(&vm, o.keep_state_fd, o.keep_pages_fd, pagemap_fd) == 0
			     ? 0
			     : 1;
	else if (status == VM_RUN_SNAPSHOT)
		status = snapshot_save(&vm, snapshot_dir_fd, o.snapshot_to) == 0 ? 0 : 1;
	/* Other threads may still be in a device; exit without unwinding them. */
	fflush(stderr);
	_exit(status);
}
