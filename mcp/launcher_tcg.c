/* The tcg backend: QEMU full-system emulation of a `microvm` machine. Same kernel, root file
 * system and agent as the kvm backend; the host channel is a virtio-console port on a socket the
 * host passes in as an fd. No network device, no firmware tables, QEMU's own seccomp sandbox.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher.h"
#include "paths.h"

static const char *qemu_binary(void)
{
	const char *env = getenv("AIRLOCK_QEMU");
	return env && *env ? env : "qemu-system-x86_64";
}

/* QEMU restoring a snapshot holds its RAM file read-only: qemu_ram_readonly.c, preloaded. Its
 * jail binds it at a fixed path, not under airlock's own directory. */
#define RAM_SHIM_IN_JAIL "/airlock-qemu-ram.so"

static int ram_shim_path(char *out, size_t out_len)
{
	return locate_program("AIRLOCK_QEMU_RAM_SHIM", "airlock-qemu-ram.so", "airlock-qemu-ram.so",
			      out, out_len);
}

/* Resolves a command name through PATH the way execvp would. */
static bool find_in_path(const char *name, char *out, size_t out_len)
{
	if (strchr(name, '/')) {
		size_t n = strlen(name);
		if (n >= out_len)
			return false;
		memcpy(out, name, n + 1);
		return access(name, X_OK) == 0;
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		const char *colon = strchr(path, ':');
		size_t n = colon ? (size_t)(colon - path) : strlen(path);
		if ((size_t)snprintf(out, out_len, "%.*s/%s", (int)n, path, name) < out_len &&
		    access(out, X_OK) == 0)
			return true;
		path += n + (colon ? 1 : 0);
	}
	return false;
}

static int tcg_probe(char *why, size_t why_len)
{
	char path[4096];
	if (!find_in_path(qemu_binary(), path, sizeof path)) {
		snprintf(why, why_len,
			 "%s not found: install Debian's qemu-system-x86 package "
			 "(apt-get install qemu-system-x86)",
			 qemu_binary());
		return -ENOENT;
	}
	char shim[4096];
	if (ram_shim_path(shim, sizeof shim) != 0) {
		snprintf(why, why_len, "airlock-qemu-ram.so not found (looked beside airlock and at "
				       "%s; set AIRLOCK_QEMU_RAM_SHIM)", shim);
		return -ENOENT;
	}
	char bwrap[4096];
	snprintf(why, why_len, "QEMU TCG emulation with %s, %s", path,
		 find_in_path("bwrap", bwrap, sizeof bwrap)
			 ? "jailed by bubblewrap"
			 : "NOT jailed: install bubblewrap (apt-get install bubblewrap)");
	return 0;
}

/* QEMU splits option values at commas; a literal comma in a path is written twice. */
static char *qemu_escape(const char *path)
{
	size_t n = strlen(path), commas = 0;
	for (size_t i = 0; i < n; i++)
		commas += path[i] == ',';
	char *out = malloc(n + commas + 1);
	if (!out)
		return NULL;
	char *o = out;
	for (size_t i = 0; i < n; i++) {
		*o++ = path[i];
		if (path[i] == ',')
			*o++ = ',';
	}
	*o = '\0';
	return out;
}

static int tcg_program(char *out, size_t out_len)
{
	return find_in_path(qemu_binary(), out, out_len) ? 0 : -ENOENT;
}

/* The name QEMU opens a file by: the fd airlock passed (launcher.h), through /proc/self/fd, where
 * there is one, else its path. Returns a string to free, escaped for QEMU's option syntax. */
static char *file_name(int fd, const char *path)
{
	char by_fd[32];
	if (fd >= 0)
		snprintf(by_fd, sizeof by_fd, "/proc/self/fd/%d", fd);
	return qemu_escape(fd >= 0 ? by_fd : path);
}

/* Snapshots: guest RAM is the file DIR/memory. Making one, QEMU maps it shared, so the file is
 * the RAM and the migration stream (x-ignore-shared, driven over QMP by snapshot.c) carries only
 * device state. Restoring, it maps the file private: copy-on-write over the page cache that
 * every VM of the snapshot shares, and only the device state is loaded (-incoming defer, then
 * migrate-incoming from state_fd, sent by sandbox.c). The rest of the command line must be the
 * same both times, kernel and command line included (they size the ROMs in the stream); how
 * QEMU reaches the files (path or fd) is not part of it. */
static int push_snapshot_args(const struct vm_spec *s, struct argv_list *a)
{
	char memory_path[4096];
	snprintf(memory_path, sizeof memory_path, "%s/memory", s->snapshot_dir);
	char *memory = file_name(s->memory_fd, memory_path);
	if (!memory)
		return -ENOMEM;
	int rc = 0;
	rc |= argv_push(a, "-object");
	rc |= argv_push(a, "memory-backend-file,id=ram,size=%uM,mem-path=%s,share=%s", s->memory_mb,
			memory, s->restore ? "off" : "on");
	rc |= argv_push(a, "-chardev");
	rc |= argv_push(a, "socket,id=control,fd=%d", s->control_fd);
	rc |= argv_push(a, "-mon");
	rc |= argv_push(a, "chardev=control,mode=control");
	if (s->restore) {
		rc |= argv_push(a, "-incoming");
		rc |= argv_push(a, "defer");
	}
	free(memory);
	return rc ? -ENOMEM : 0;
}

/* The name QEMU opens the RAM file of the snapshot it restores by, which the shim must know. */
static void restored_ram_name(const struct vm_spec *s, char *out, size_t out_len)
{
	if (s->memory_fd >= 0)
		snprintf(out, out_len, "/proc/self/fd/%d", s->memory_fd);
	else
		snprintf(out, out_len, "%s/memory", s->snapshot_dir);
}

/* The same without bubblewrap to set the environment: through env(1). */
static int push_unjailed_ram_shim(const struct vm_spec *s, struct argv_list *a)
{
	char shim[4096], ram[4096];
	if (!s->snapshot_dir || !s->restore)
		return 0;
	if (ram_shim_path(shim, sizeof shim) != 0)
		return -ENOENT;
	restored_ram_name(s, ram, sizeof ram);
	int rc = argv_push(a, "env");
	rc |= argv_push(a, "LD_PRELOAD=%s", shim);
	rc |= argv_push(a, "AIRLOCK_READONLY_RAM=%s", ram);
	return rc ? -ENOMEM : 0;
}

/* QEMU's jail: bubblewrap (Debian's bubblewrap) gives it its own user, mount, pid, net, ipc,
 * uts and cgroup namespaces, no capabilities and no_new_privs, and a root holding only /usr (the
 * program, its libraries and firmware), the dynamic linker's cache, a minimal /dev and /proc of
 * its own, and, restoring, the shim that keeps the RAM file read-only (qemu_ram_readonly.c).
 * The files the VM uses are fds airlock opened read-only (launcher.h), the serial console goes
 * to stdout: started by root, QEMU then runs as nobody (setpriv), with nothing of the host it
 * may write. Only the VM that makes a snapshot (an image build, no user code) names its files by
 * path, bound in: the kernel and the root disk read-only, its temporary directory and the new
 * snapshot writable, as airlock's user. prlimit sets its limits: no core dumps, bounded fds and
 * address space. QEMU's own seccomp filter (-sandbox) comes on top.
 * No --new-session: sandbox.c starts the VM in a session of its own (no terminal to reach) and
 * kills its whole process group. QEMU does not end with its parent: setpriv (util-linux,
 * essential on Debian, like prlimit) makes the kernel kill bubblewrap when airlock dies, however
 * it dies, and --die-with-parent passes that on to QEMU (airlock-vmm does this itself). Without
 * bubblewrap QEMU runs unjailed under setpriv alone (doctor says so). */
#define QEMU_MAX_FDS 256                     /* it holds a few dozen */
#define QEMU_ADDRESS_SPACE_EXTRA (4ull << 30) /* TCG's 1 GiB code buffer, libraries, threads */
#define QEMU_UID 65534                       /* nobody, when airlock runs as root */
#define QEMU_GID 65534

/* bubblewrap started by nobody needs user namespaces for everyone (Debian's kernels can turn
 * them off); where they are off, QEMU stays airlock's user, and doctor says so. */
static bool unprivileged_jail_possible(void)
{
	static int possible = -1;
	if (possible < 0) {
		possible = 1;
		const char *sysctls[] = {"/proc/sys/kernel/unprivileged_userns_clone",
					 "/proc/sys/user/max_user_namespaces"};
		for (int i = 0; i < 2; i++) {
			FILE *f = fopen(sysctls[i], "r");
			long value = 1;
			if (f && fscanf(f, "%ld", &value) == 1 && value == 0)
				possible = 0;
			if (f)
				fclose(f);
		}
	}
	return possible;
}

static bool files_by_fd(const struct vm_spec *s)
{
	return s->kernel_fd >= 0 && s->rootfs_fd >= 0 && s->serial_on_stdout &&
	       (!s->restore || s->memory_fd >= 0);
}

static int push_bound_paths(const struct vm_spec *s, struct argv_list *a)
{
	char tmpdir[4096];
	snprintf(tmpdir, sizeof tmpdir, "%s", s->serial_log);
	char *slash = strrchr(tmpdir, '/');
	if (slash && slash != tmpdir)
		*slash = '\0';
	int rc = 0;
	const char *ro[] = {s->kernel, s->rootfs};
	for (size_t i = 0; i < 2; i++) {
		rc |= argv_push(a, "--ro-bind");
		rc |= argv_push(a, "%s", ro[i]);
		rc |= argv_push(a, "%s", ro[i]);
	}
	rc |= argv_push(a, "--bind");
	rc |= argv_push(a, "%s", tmpdir);
	rc |= argv_push(a, "%s", tmpdir);
	if (s->snapshot_dir) {
		rc |= argv_push(a, s->restore ? "--ro-bind" : "--bind");
		rc |= argv_push(a, "%s", s->snapshot_dir);
		rc |= argv_push(a, "%s", s->snapshot_dir);
	}
	return rc;
}

static int push_jail_args(const struct vm_spec *s, struct argv_list *a)
{
	char bwrap[4096];
	bool confined = !launcher_unconfined();
	int rc = 0;
	rc |= argv_push(a, "setpriv");
	if (confined && files_by_fd(s) && geteuid() == 0 && unprivileged_jail_possible()) {
		rc |= argv_push(a, "--reuid=%d", QEMU_UID);
		rc |= argv_push(a, "--regid=%d", QEMU_GID);
		rc |= argv_push(a, "--clear-groups");
	}
	rc |= argv_push(a, "--pdeathsig");
	rc |= argv_push(a, "KILL");
	rc |= argv_push(a, "--");
	if (!confined || !find_in_path("bwrap", bwrap, sizeof bwrap))
		return rc ? -ENOMEM : push_unjailed_ram_shim(s, a);
	/* limits (prlimit, util-linux too): no core dump (it would hold guest memory), a bounded
	 * number of fds, and an address space of guest RAM plus TCG's code buffer and the rest */
	rc |= argv_push(a, "prlimit");
	rc |= argv_push(a, "--core=0");
	rc |= argv_push(a, "--nofile=%u", QEMU_MAX_FDS);
	rc |= argv_push(a, "--as=%llu",
			((unsigned long long)s->memory_mb << 20) + QEMU_ADDRESS_SPACE_EXTRA);
	rc |= argv_push(a, "--");
	static const char *const fixed[] = {
		"--die-with-parent", "--unshare-all", "--cap-drop", "ALL",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
		"--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache", "--dev", "/dev", "--proc", "/proc",
	};
	rc |= argv_push(a, "%s", bwrap);
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		rc |= argv_push(a, "%s", fixed[i]);
	if (!files_by_fd(s))
		rc |= push_bound_paths(s, a);
	if (s->snapshot_dir && s->restore) {
		char shim[4096], ram[4096];
		if (ram_shim_path(shim, sizeof shim) != 0)
			return -ENOENT;
		restored_ram_name(s, ram, sizeof ram);
		rc |= argv_push(a, "--ro-bind");
		rc |= argv_push(a, "%s", shim);
		rc |= argv_push(a, "%s", RAM_SHIM_IN_JAIL);
		rc |= argv_push(a, "--setenv");
		rc |= argv_push(a, "LD_PRELOAD");
		rc |= argv_push(a, "%s", RAM_SHIM_IN_JAIL);
		rc |= argv_push(a, "--setenv");
		rc |= argv_push(a, "AIRLOCK_READONLY_RAM");
		rc |= argv_push(a, "%s", ram);
	}
	rc |= argv_push(a, "--");
	return rc ? -ENOMEM : 0;
}

static int tcg_command(const struct vm_spec *s, struct argv_list *a)
{
	char *kernel = file_name(s->kernel_fd, s->kernel);
	char *rootfs = file_name(s->rootfs_fd, s->rootfs);
	char *serial_log = qemu_escape(s->serial_log);
	int rc = kernel && rootfs && serial_log ? push_jail_args(s, a) : -ENOMEM;
	if (rc) {
		free(kernel);
		free(rootfs);
		free(serial_log);
		return rc;
	}
	rc |= argv_push(a, "%s", qemu_binary());
	/* microvm without ACPI: QEMU then declares the virtio-mmio devices on the kernel command
	 * line itself, which our kernel (no ACPI) needs. */
	rc |= argv_push(a, "-M");
	rc |= argv_push(a, "microvm,acpi=off,x-option-roms=off%s",
			s->snapshot_dir ? ",memory-backend=ram" : "");
	rc |= argv_push(a, "-accel");
	rc |= argv_push(a, "tcg");
	rc |= argv_push(a, "-cpu");
	rc |= argv_push(a, "max");
	rc |= argv_push(a, "-m");
	rc |= argv_push(a, "%u", s->memory_mb);
	rc |= argv_push(a, "-smp");
	rc |= argv_push(a, "%u", s->vcpus);
	rc |= argv_push(a, "-nodefaults");
	rc |= argv_push(a, "-no-user-config");
	rc |= argv_push(a, "-nographic");
	/* The guest ends by rebooting (reboot=t): make that the end of the QEMU process. */
	rc |= argv_push(a, "-no-reboot");
	rc |= argv_push(a, "-sandbox");
	rc |= argv_push(a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
	rc |= argv_push(a, "-kernel");
	rc |= argv_push(a, "%s", kernel);
	/* nolapic_timer: calibrating the local APIC timer costs ~230 ms of emulated time at every
	 * boot; the PIT that microvm provides serves as the tick instead.
	 * tsc_early_khz: the TSC's rate, so that the guest does not measure it (see host_tsc_khz);
	 * tsc=reliable: the host's TSC is the clock, not to be judged against the tick (the jiffies
	 * watchdog), which an emulated CPU loses under load. */
	char tsc[64] = "";
	unsigned tsc_khz = s->restore ? s->guest_tsc_khz : host_tsc_khz();
	if (tsc_khz)
		snprintf(tsc, sizeof tsc, " tsc_early_khz=%u tsc=reliable", tsc_khz);
	rc |= argv_push(a, "-append");
	rc |= argv_push(a, "console=ttyS0 quiet reboot=t panic=-1 root=/dev/vda ro rootfstype=ext4 "
			   "init=/sbin/init nolapic_timer%s%s%s",
			tsc, s->warm_language ? " airlock.warm=" : "",
			s->warm_language ? s->warm_language : "");
	rc |= argv_push(a, "-drive");
	rc |= argv_push(a, "id=root,file=%s,format=raw,if=none,read-only=on", rootfs);
	rc |= argv_push(a, "-device");
	rc |= argv_push(a, "virtio-blk-device,drive=root");
	/* A serial port, not a console: QEMU drops console bytes it cannot write at once (a host
	 * slower than the guest's output would lose frames), but throttles a port instead. Ports
	 * other than 0 need the multiport feature; the guest sees /dev/vport0p1. */
	rc |= argv_push(a, "-device");
	rc |= argv_push(a, "virtio-serial-device,max_ports=2");
	rc |= argv_push(a, "-chardev");
	rc |= argv_push(a, "socket,id=channel,fd=%d", s->channel_fd);
	rc |= argv_push(a, "-device");
	rc |= argv_push(a, "virtserialport,chardev=channel,nr=1,name=airlock");
	rc |= argv_push(a, "-serial");
	if (s->serial_on_stdout)
		rc |= argv_push(a, "stdio");
	else
		rc |= argv_push(a, "file:%s", serial_log);
	if (s->snapshot_dir)
		rc |= push_snapshot_args(s, a);
	free(kernel);
	free(rootfs);
	free(serial_log);
	return rc ? -ENOMEM : 0;
}

const struct launcher launcher_tcg = {
	.name = "tcg",
	.probe = tcg_probe,
	.command = tcg_command,
	.program = tcg_program,
};
