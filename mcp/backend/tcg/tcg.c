/* The tcg backend: QEMU full-system emulation of a `microvm` machine. Same kernel, root file
 * system and agent as the kvm backend; the host channel is a virtio-console port on a socket the
 * host passes in as an fd. No network device, no firmware tables, QEMU's own seccomp sandbox.
 * Snapshots go through QEMU's machine protocol (qmp.c) on a socket of their own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "layout.h" /* vmm/: the guest kernel command line both backends give */
#include "qmp.h"
#include "confine.h"

/* The VM process's fds beyond the sandbox's (backend.h): QEMU's QMP monitor, the migration
 * stream a restore loads, and the files QEMU uses, opened here, so that it opens no host path
 * itself (but for the VM that makes a snapshot). */
#define FD_CONTROL 4
#define FD_STATE 5
#define FD_KERNEL 6
#define FD_ROOTFS 7
#define FD_MEMORY 8
#define FD_PAGES_IN 9  /* restoring a kept state: its pages (vmm/pages.h) */
#define FD_PAGES_OUT 10 /* a VM that may be kept: where its pages go at QEMU's exit */
#define STRINGIFY(x) #x
#define STRINGIFY_FD(x) STRINGIFY(x)

static const char *qemu_binary(void)
{
	const char *env = getenv("AIRLOCK_QEMU");
	return env && *env ? env : "qemu-system-x86_64";
}

/* Preloaded into every jailed QEMU: qemu_preload.c. Its jail binds it at a fixed path, not
 * under airlock's own directory. */
#define PRELOAD_IN_JAIL "/airlock-qemu-preload.so"

static int preload_path(char *out, size_t out_len)
{
	return locate_program("AIRLOCK_QEMU_PRELOAD", "airlock-qemu-preload.so",
			      "airlock-qemu-preload.so", out, out_len);
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
	char preload[4096];
	if (preload_path(preload, sizeof preload) != 0) {
		snprintf(why, why_len, "airlock-qemu-preload.so not found (looked beside airlock and "
				       "at %s; set AIRLOCK_QEMU_PRELOAD)", preload);
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

/* Snapshots: guest RAM is the file DIR/memory. Making one, QEMU maps it shared, so the file is
 * the RAM and the migration stream (x-ignore-shared, driven over QMP by tcg_save) carries only
 * device state. Restoring, it maps the file private: copy-on-write over the page cache that
 * every VM of the snapshot shares, and only the device state is loaded (-incoming defer, then
 * migrate-incoming from FD_STATE, queued by tcg_prepare). The rest of the command line must be
 * the same both times, kernel and command line included (they size the ROMs in the stream); how
 * QEMU reaches the files (path or fd) is not part of it. */
static int push_snapshot_args(const struct vm_spec *s, const char *memory, struct argv_list *a)
{
	bool restore = s->mode == VM_RESTORE;
	char *escaped = qemu_escape(memory);
	if (!escaped)
		return -ENOMEM;
	int rc = 0;
	rc |= argv_push(a, "-object");
	/* shared also in a VM that may be kept: the migration then skips RAM, and the preload
	 * makes the mapping private all the same and writes the changed pages (qemu_preload.c) */
	rc |= argv_push(a, "memory-backend-file,id=ram,size=%uM,mem-path=%s,share=%s", s->memory_mb,
			escaped, restore && !s->keep_to_dir ? "off" : "on");
	rc |= argv_push(a, "-chardev");
	rc |= argv_push(a, "socket,id=control,fd=%d", FD_CONTROL);
	rc |= argv_push(a, "-mon");
	rc |= argv_push(a, "chardev=control,mode=control");
	if (restore) {
		rc |= argv_push(a, "-incoming");
		rc |= argv_push(a, "defer");
	}
	free(escaped);
	return rc ? -ENOMEM : 0;
}

/* QEMU's jail: bubblewrap (Debian's bubblewrap) gives it its own user, mount, pid, net, ipc,
 * uts and cgroup namespaces, no capabilities and no_new_privs, and a root holding only /usr (the
 * program, its libraries and firmware), the dynamic linker's cache, a minimal /dev and /proc of
 * its own, and qemu_preload.c (not dumpable; the snapshot's RAM file opened read-only; a full
 * log fails a write instead of killing it). prlimit sets its limits: no core dumps, bounded fds,
 * address space and file size (its log). QEMU's own seccomp filter (-sandbox) comes on top. Its
 * environment is airlock's minimal one (confine.h). Its serial console goes to its stdout,
 * the VM's log, a file airlock opened.
 *
 * Its files (struct qemu_plan) it can write none of, the snapshot's RAM file least of all (every
 * later VM starts from it): airlock hands them over as fds opened through read-only mounts
 * (confine.h), which QEMU reopens as /proc/self/fd/N; such a reopen meets EROFS if it
 * asks to write, whoever QEMU runs as, and the jail binds none of the files. Only the VM that
 * makes a snapshot (an image build, no user code) names its files by path: the kernel and root
 * disk bound in read-only, its snapshot directory writable, as airlock's user.
 *
 * Whom it runs as: started by root, as the VM's own uid (vm_spec.run_as_uid), which no other
 * process of the host shares, so none may signal or trace it (bubblewrap's user namespace is
 * that uid's). This needs unprivileged user namespaces for bubblewrap, and files others may
 * read (its reopen checks permissions again); without them it stays root, with no capability.
 * Started by a user, as that user: the user's own processes are the same trust domain.
 *
 * No --new-session: the sandbox starts the VM in a session of its own (no terminal to reach) and
 * kills its whole process group. QEMU does not end with its parent: setpriv (util-linux,
 * essential on Debian, like prlimit) makes the kernel kill bubblewrap when airlock dies, however
 * it dies, and --die-with-parent passes that on to QEMU (airlock-vmm does this itself). Without
 * bubblewrap QEMU runs unjailed under setpriv and prlimit alone, preloaded all the same (doctor
 * says so). */

struct qemu_plan {
	char bwrap[4096]; /* jailed: bubblewrap's path; empty: not jailed */
	bool by_fd;       /* its files by fd, on read-only mounts (else by path) */
	unsigned uid;     /* its own uid and gid, or 0: airlock's */
	char preload[4096];
	/* the names QEMU opens its files by: /proc/self/fd/N or paths */
	char kernel[4096], rootfs[4096], memory[4096];
};

/* bubblewrap started by a user needs user namespaces for everyone; kernels can turn them off
 * (Debian's sysctl, Ubuntu's AppArmor restriction, a zero limit). */
static bool unprivileged_jail_possible(void)
{
	static int possible = -1;
	if (possible < 0) {
		possible = 1;
		const struct {
			const char *path;
			long refuses;
		} sysctls[] = {
			{"/proc/sys/kernel/unprivileged_userns_clone", 0},
			{"/proc/sys/user/max_user_namespaces", 0},
			{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns", 1},
		};
		for (size_t i = 0; i < sizeof sysctls / sizeof sysctls[0]; i++) {
			FILE *f = fopen(sysctls[i].path, "r");
			long value;
			if (f && fscanf(f, "%ld", &value) == 1 && value == sysctls[i].refuses)
				possible = 0;
			if (f)
				fclose(f);
		}
	}
	return possible;
}

/* Another user may read the file (QEMU as the VM's uid reopens it). */
static bool readable_by_others(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && (st.st_mode & S_IROTH);
}

static int plan_qemu(const struct vm_spec *s, struct qemu_plan *p)
{
	char memory[4096] = "";
	bool confined = !vm_unconfined();
	bool restore = s->mode == VM_RESTORE;
	if (s->snapshot_dir)
		snprintf(memory, sizeof memory, "%s/memory", s->snapshot_dir);
	if (!confined || !find_in_path("bwrap", p->bwrap, sizeof p->bwrap))
		p->bwrap[0] = '\0';
	p->by_fd = s->mode != VM_MAKE_SNAPSHOT;
	bool own_uid = confined && s->run_as_uid != 0 && p->by_fd &&
		       (!p->bwrap[0] || unprivileged_jail_possible()) &&
		       readable_by_others(s->kernel) && readable_by_others(s->rootfs) &&
		       (!restore || readable_by_others(memory));
	p->uid = own_uid ? s->run_as_uid : 0;
	if (p->by_fd) {
		snprintf(p->kernel, sizeof p->kernel, "/proc/self/fd/%d", FD_KERNEL);
		snprintf(p->rootfs, sizeof p->rootfs, "/proc/self/fd/%d", FD_ROOTFS);
		snprintf(p->memory, sizeof p->memory, "/proc/self/fd/%d", FD_MEMORY);
	} else {
		snprintf(p->kernel, sizeof p->kernel, "%s", s->kernel);
		snprintf(p->rootfs, sizeof p->rootfs, "%s", s->rootfs);
		snprintf(p->memory, sizeof p->memory, "%s", memory);
	}
	if (preload_path(p->preload, sizeof p->preload) != 0)
		return -ENOENT;
	return 0;
}

/* Files named by path (the VM that makes a snapshot): bound in, read-only but for the
 * snapshot being made. */
static int push_bound_paths(const struct vm_spec *s, struct argv_list *a)
{
	int rc = 0;
	const char *ro[] = {s->kernel, s->rootfs};
	for (size_t i = 0; i < 2; i++) {
		rc |= argv_push(a, "--ro-bind");
		rc |= argv_push(a, "%s", ro[i]);
		rc |= argv_push(a, "%s", ro[i]);
	}
	if (s->snapshot_dir) {
		rc |= argv_push(a, s->mode == VM_RESTORE ? "--ro-bind" : "--bind");
		rc |= argv_push(a, "%s", s->snapshot_dir);
		rc |= argv_push(a, "%s", s->snapshot_dir);
	}
	return rc;
}

/* The preload's kept-state settings (qemu_preload.c) as name, value pairs into out (room for 6).
 * Returns how many strings it wrote. */
static size_t kept_state_env(const struct vm_spec *s, const char *out[6])
{
	size_t n = 0;
	if (s->mode != VM_RESTORE)
		return 0;
	if (s->keep_to_dir) {
		out[n++] = "AIRLOCK_PRIVATE_RAM";
		out[n++] = "1";
		out[n++] = "AIRLOCK_PAGES_OUT";
		out[n++] = STRINGIFY_FD(FD_PAGES_OUT);
	}
	if (s->kept_state_dir) {
		out[n++] = "AIRLOCK_PAGES_IN";
		out[n++] = STRINGIFY_FD(FD_PAGES_IN);
	}
	return n;
}

/* The preload through env(1), where there is no bubblewrap to set it (its RAM file read-only
 * is what lets QEMU open it at all: the file's fd lies on a read-only mount). */
static int push_preload_env(const struct vm_spec *s, const struct qemu_plan *p,
			    struct argv_list *a)
{
	int rc = argv_push(a, "env");
	rc |= argv_push(a, "LD_PRELOAD=%s", p->preload);
	if (s->mode == VM_RESTORE)
		rc |= argv_push(a, "AIRLOCK_READONLY_RAM=%s", p->memory);
	const char *kept[6];
	size_t n = kept_state_env(s, kept);
	for (size_t i = 0; i < n; i += 2)
		rc |= argv_push(a, "%s=%s", kept[i], kept[i + 1]);
	return rc;
}

static int push_jail_args(const struct vm_spec *s, const struct qemu_plan *p, struct argv_list *a)
{
	int rc = 0;
	rc |= argv_push(a, "setpriv");
	if (p->uid) {
		rc |= argv_push(a, "--reuid=%u", p->uid);
		rc |= argv_push(a, "--regid=%u", p->uid);
		rc |= argv_push(a, "--clear-groups");
	}
	rc |= argv_push(a, "--pdeathsig");
	rc |= argv_push(a, "KILL");
	rc |= argv_push(a, "--");
	if (vm_unconfined())
		return push_preload_env(s, p, a) | rc ? -ENOMEM : 0;
	/* limits (prlimit, util-linux too): no core dump (it would hold guest memory), a bounded
	 * number of fds, an address space of guest RAM plus TCG's code buffer and the rest, and
	 * a bounded log (not for the VM that makes a snapshot: its RAM file is as large as RAM) */
	rc |= argv_push(a, "prlimit");
	rc |= argv_push(a, "--core=0");
	rc |= argv_push(a, "--nofile=%u", VM_QEMU_MAX_FDS);
	rc |= argv_push(a, "--as=%llu",
			((unsigned long long)s->memory_mb << 20) + VM_QEMU_ADDRESS_SPACE_EXTRA);
	/* a VM that may be kept: the pages it writes at its exit may take all of RAM; the log
	 * stays within the soft limit until then (qemu_preload.c raises it only for the pages) */
	if (s->mode != VM_MAKE_SNAPSHOT && s->keep_to_dir)
		rc |= argv_push(a, "--fsize=%llu:%llu", VM_LOG_MAX_BYTES,
				VM_LOG_MAX_BYTES + ((unsigned long long)s->memory_mb << 20));
	else if (s->mode != VM_MAKE_SNAPSHOT)
		rc |= argv_push(a, "--fsize=%llu", VM_LOG_MAX_BYTES);
	rc |= argv_push(a, "--");
	if (!p->bwrap[0]) /* preloaded all the same */
		return push_preload_env(s, p, a) | rc ? -ENOMEM : 0;
	static const char *const fixed[] = {
		"--die-with-parent", "--unshare-all", "--cap-drop", "ALL",
		"--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
		"--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache", "--dev", "/dev", "--proc", "/proc",
	};
	rc |= argv_push(a, "%s", p->bwrap);
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		rc |= argv_push(a, "%s", fixed[i]);
	if (!p->by_fd)
		rc |= push_bound_paths(s, a);
	rc |= argv_push(a, "--ro-bind");
	rc |= argv_push(a, "%s", p->preload);
	rc |= argv_push(a, "%s", PRELOAD_IN_JAIL);
	rc |= argv_push(a, "--setenv");
	rc |= argv_push(a, "LD_PRELOAD");
	rc |= argv_push(a, "%s", PRELOAD_IN_JAIL);
	if (s->mode == VM_RESTORE) {
		rc |= argv_push(a, "--setenv");
		rc |= argv_push(a, "AIRLOCK_READONLY_RAM");
		rc |= argv_push(a, "%s", p->memory);
	}
	const char *kept[6];
	size_t n = kept_state_env(s, kept);
	for (size_t i = 0; i < n; i += 2) {
		rc |= argv_push(a, "--setenv");
		rc |= argv_push(a, "%s", kept[i]);
		rc |= argv_push(a, "%s", kept[i + 1]);
	}
	rc |= argv_push(a, "--");
	return rc ? -ENOMEM : 0;
}

static int push_command(const struct vm_spec *s, struct argv_list *a)
{
	struct qemu_plan *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	int rc = plan_qemu(s, p);
	char *kernel = qemu_escape(p->kernel), *rootfs = qemu_escape(p->rootfs);
	if (rc == 0)
		rc = kernel && rootfs ? push_jail_args(s, p, a) : -ENOMEM;
	if (rc) {
		free(kernel);
		free(rootfs);
		free(p);
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
	unsigned tsc_khz = s->mode == VM_RESTORE ? s->guest_tsc_khz : host_tsc_khz();
	if (tsc_khz)
		snprintf(tsc, sizeof tsc, " tsc_early_khz=%u tsc=reliable", tsc_khz);
	rc |= argv_push(a, "-append");
	rc |= argv_push(a, GUEST_CMDLINE_CONSOLE " quiet " GUEST_CMDLINE_SYSTEM " nolapic_timer%s%s%s",
			tsc, s->language ? " airlock.warm=" : "", s->language ? s->language : "");
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
	rc |= argv_push(a, "socket,id=channel,fd=%d", VM_FD_CHANNEL);
	rc |= argv_push(a, "-device");
	rc |= argv_push(a, "virtserialport,chardev=channel,nr=1,name=airlock");
	rc |= argv_push(a, "-serial");
	rc |= argv_push(a, "stdio");
	if (s->snapshot_dir)
		rc |= push_snapshot_args(s, p->memory, a);
	free(kernel);
	free(rootfs);
	free(p);
	return rc ? -ENOMEM : 0;
}

/* The kernel, the root disk and, restoring, the snapshot's RAM file, all read-only such that
 * nothing holding them can write them (confine.h). */
static int open_files(const struct vm_spec *s, struct vm_launch *launch, char *err, size_t err_len)
{
	char memory[4096 + 8] = "";
	if (s->mode == VM_RESTORE)
		snprintf(memory, sizeof memory, "%s/memory", s->snapshot_dir);
	const char *paths[] = {s->kernel, s->rootfs, memory};
	const int numbers[] = {FD_KERNEL, FD_ROOTFS, FD_MEMORY};
	for (int i = 0; i < 3; i++) {
		if (!paths[i][0])
			continue;
		int fd = readonly_open(paths[i]);
		if (fd < 0) {
			snprintf(err, err_len, "cannot open %s: %s", paths[i], strerror(-fd));
			return fd;
		}
		launch->fds[numbers[i]] = fd;
	}
	return 0;
}

/* QEMU's QMP monitor on a socket of its own. Restoring, QEMU waits (-incoming defer) for the
 * commands that load the stream from FD_STATE: they are queued on the socket at once, and their
 * answers are not read (a failed load ends QEMU, and its message reaches the log). Making a
 * snapshot, the stream's file is opened here and handed over when saving. */
static int open_control(const struct vm_spec *s, struct vm_launch *launch, char *err,
			size_t err_len)
{
	int control[2];
	char path[4096 + 8], commands[512];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control) != 0) {
		int rc = -errno;
		snprintf(err, err_len, "cannot make QEMU's control socket: %s", strerror(-rc));
		return rc;
	}
	launch->control_fd = control[0];
	launch->fds[FD_CONTROL] = control[1];
	snprintf(path, sizeof path, "%s/state", s->snapshot_dir);
	if (s->mode == VM_MAKE_SNAPSHOT) {
		launch->save_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (launch->save_fd < 0) {
			int rc = -errno;
			snprintf(err, err_len, "cannot create %s: %s", path, strerror(-rc));
			return rc;
		}
		return 0;
	}
	/* a kept state's own stream, when there is one (open_kept_state_files) */
	int fd = launch->fds[FD_STATE] >= 0 ? launch->fds[FD_STATE] : readonly_open(path);
	int rc = fd < 0 ? fd : qmp_restore_commands(FD_STATE, commands, sizeof commands);
	launch->fds[FD_STATE] = fd;
	if (rc == 0 && write(control[0], commands, strlen(commands)) != (ssize_t)strlen(commands))
		rc = -errno;
	if (rc)
		snprintf(err, err_len, "cannot open the snapshot %s: %s", s->snapshot_dir,
			 strerror(-rc));
	return rc;
}

/* Kept state: the files of the state restored and of the state a save would write, as fds
 * (kept_files_open): the device state loaded as a restore's stream (FD_STATE) and saved as a
 * save's (save_fd), the pages through the preload. */
static int open_kept_state_files(const struct vm_spec *s, struct vm_launch *launch, char *err,
				 size_t err_len)
{
	struct kept_files f;
	int rc = kept_files_open(s, &f, err, err_len);
	if (rc)
		return rc;
	launch->fds[FD_STATE] = f.state_in;
	launch->fds[FD_PAGES_IN] = f.pages_in;
	launch->save_fd = f.state_out;
	launch->fds[FD_PAGES_OUT] = f.pages_out;
	launch->save_restored = s->keep_to_dir != NULL;
	return 0;
}

static int tcg_prepare(const struct vm_spec *s, struct vm_launch *launch, char *err,
		       size_t err_len)
{
	int rc = s->mode == VM_MAKE_SNAPSHOT ? 0 : open_files(s, launch, err, err_len);
	if (rc == 0 && s->mode == VM_RESTORE)
		rc = open_kept_state_files(s, launch, err, err_len);
	if (rc == 0 && s->mode != VM_BOOT)
		rc = open_control(s, launch, err, err_len);
	if (rc == 0 && (rc = push_command(s, &launch->argv)) != 0)
		snprintf(err, err_len, "cannot build QEMU's command line: %s", strerror(-rc));
	return rc;
}

static int tcg_save(struct vm_launch *launch, pid_t pid, char *err, size_t err_len)
{
	(void)pid;
	struct qmp_save *save;
	int rc = qmp_save_start(launch->control_fd, launch->save_fd, launch->save_restored, &save,
				err, err_len);
	if (rc == 0)
		launch->backend_state = save;
	return rc;
}

static int tcg_save_progress(struct vm_launch *launch, const char *data, size_t len, char *err,
			     size_t err_len)
{
	return qmp_save_progress(launch->backend_state, data, len, err, err_len);
}

static unsigned tcg_snapshot_tsc_khz(void)
{
	return host_tsc_khz(); /* what push_command told the kernel: measured once per process */
}

const struct backend backend_tcg = {
	.name = "tcg",
	.probe = tcg_probe,
	.program = tcg_program,
	.prepare = tcg_prepare,
	.save = tcg_save,
	.save_progress = tcg_save_progress,
	.snapshot_tsc_khz = tcg_snapshot_tsc_khz,
};
