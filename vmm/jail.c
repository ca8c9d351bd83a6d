/* airlock-vmm's jail, in three steps before the first KVM_RUN. jail_begin (jail_supervisor.c):
 * first of all, the process forks into a pid namespace of its own, the VM's child in it as pid 1
 * and a small supervisor outside. jail_enter: once every file the VM needs is open (as fds) and
 * before any other thread exists (a process joins a new user namespace only while it is
 * single-threaded). jail_seal: once the devices' threads run. Then the seccomp filter
 * (seccomp.c) narrows what is left.
 *
 *   - its own pid namespace, pid 1 in it: there is no other process it could name;
 *   - started as root, it ends as a user of its own outside (--run-as UID:GID, which airlock
 *     gives each VM; nobody when started by hand), whose user namespace root owns: no other
 *     process of the host may signal, trace or read it. Root itself only where it must write a
 *     snapshot into a directory only root may write (image builds, which run no user code).
 *     Started as anyone else, it stays that user;
 *   - never dumpable when started as root (main.c), so that nothing attaches while it changes;
 *   - new user, mount, net, ipc, uts and cgroup namespaces: inside it is root of nothing
 *     (uid 0 maps to that one outside uid), sees no network interface but its own loopback, no
 *     other process, and no host host name;
 *   - an empty root: a tiny tmpfs, read-only, pivot_root'ed to, the old root detached: no path
 *     of the host resolves any more (from an initramfs's own root, which cannot be pivoted
 *     from, moved on top of it and chrooted to, as switch_root does);
 *   - every capability dropped (effective, permitted, inheritable, ambient, bounding set);
 *   - no_new_privs; no core dumps; bounded fds, file size (the serial log) and address space.
 * cgroups are not set here: airlock puts the process in one (mcp/confine/cgroup.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "jail.h"
#include "vmm.h"

#define JAIL_MAX_FDS 64        /* it holds about a dozen */
#define JAIL_MAX_FILE_SIZE (64ull << 20) /* the serial log, written by a guest that may flood it */
#define JAIL_ADDRESS_SPACE_EXTRA (1ull << 30) /* beyond guest RAM: code, heap, thread stacks */
/* The directory the empty root is mounted on, in the jail's own mount namespace (the host's
 * /tmp is not touched). */
#define JAIL_MOUNT_POINT "/tmp"

int jail_failed(const char *what)
{
	return jail_refused(what, NULL);
}

int jail_refused(const char *what, const char *why)
{
	int err = errno;
	vmm_log("jail: %s: %s%s%s", what, strerror(err), why ? ": " : "", why ? why : "");
	return -err;
}

static long read_sysctl(const char *path)
{
	char value[32] = "";
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	bool ok = fgets(value, sizeof value, f) != NULL;
	fclose(f);
	return ok ? strtol(value, NULL, 10) : -1;
}

const char *jail_unshare_refused_because(int err)
{
	if (err == ENOSPC)
		return "a namespace limit is 0 or used up (user.max_user_namespaces or another "
		       "user.max_*_namespaces): raise it, e.g. sysctl -w user.max_user_namespaces=15000";
	if (err == EPERM && geteuid() != 0 &&
	    read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == 0)
		return "user namespaces are for root only here (kernel.unprivileged_userns_clone=0): "
		       "sysctl -w kernel.unprivileged_userns_clone=1, or run airlock as root";
	if (err == EPERM)
		return "the kernel refuses new namespaces to this process: it runs chrooted (start "
		       "airlock in a root switched to with switch_root or pivot_root instead) or under "
		       "a seccomp policy that forbids unshare (a container's: allow it)";
	if (err == EINVAL)
		return "this kernel lacks a namespace the jail needs (CONFIG_USER_NS, CONFIG_NET_NS, "
		       "CONFIG_PID_NS, CONFIG_IPC_NS, CONFIG_UTS_NS, CONFIG_CGROUPS)";
	return NULL;
}

/* A number for --run-as: decimal, no sign, not 0 (root) and not -1 (no id). */
static bool parse_id(const char *s, char **end, unsigned *out)
{
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long v = strtoul(s, end, 10);
	if (errno || v == 0 || v >= UINT32_MAX)
		return false;
	*out = (unsigned)v;
	return true;
}

int jail_identity_choose(const char *run_as, bool writes_snapshot, struct jail_identity *out)
{
	*out = (struct jail_identity){.from_root = geteuid() == 0, .uid = geteuid(),
				      .gid = getegid()};
	if (run_as) {
		unsigned uid, gid;
		char *end;
		if (!parse_id(run_as, &end, &uid) || *end != ':' || !parse_id(end + 1, &end, &gid) ||
		    *end) {
			vmm_log("--run-as: want UID:GID, two numbers other than 0 (e.g. 61234:61234)");
			return -EINVAL;
		}
		if (!out->from_root) {
			vmm_log("--run-as: only a monitor started as root changes its user");
			return -EPERM;
		}
		out->uid = uid;
		out->gid = gid;
	} else if (out->from_root && !writes_snapshot) {
		/* direct use by hand: airlock always names a user of the VM's own */
		out->uid = JAIL_NOBODY_UID;
		out->gid = JAIL_NOBODY_GID;
	}
	return 0;
}

static int write_proc_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return jail_refused(path, "/proc is not mounted: mount -t proc proc /proc");
	if (fd < 0)
		return jail_refused(path, "the kernel refused the VM's user namespace its id maps "
					  "(a /proc of another pid namespace, or mounted with hidepid?)");
	ssize_t len = (ssize_t)strlen(text);
	ssize_t n = write(fd, text, (size_t)len);
	int err = errno;
	close(fd);
	if (n != len) {
		errno = n < 0 ? err : EIO;
		return jail_failed(path);
	}
	return 0;
}

int jail_map_ids(const char *pid, uid_t inside_uid, uid_t uid, gid_t inside_gid, gid_t gid)
{
	char path[64], map[64];
	snprintf(path, sizeof path, "/proc/%s/setgroups", pid);
	int rc = write_proc_file(path, "deny");
	snprintf(path, sizeof path, "/proc/%s/uid_map", pid);
	snprintf(map, sizeof map, "%u %u 1", (unsigned)inside_uid, (unsigned)uid);
	if (rc == 0)
		rc = write_proc_file(path, map);
	snprintf(path, sizeof path, "/proc/%s/gid_map", pid);
	snprintf(map, sizeof map, "%u %u 1", (unsigned)inside_gid, (unsigned)gid);
	if (rc == 0)
		rc = write_proc_file(path, map);
	return rc;
}

int jail_switch_ids(uid_t uid, gid_t gid, bool drop_groups)
{
	if (drop_groups && setgroups(0, NULL) != 0)
		return jail_failed("setgroups");
	if (setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
		return jail_failed("changing the user");
	/* the change set dumpable to fs.suid_dumpable, which an administrator may have set to 1 */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return jail_failed("PR_SET_DUMPABLE");
	/* it also cleared the parent-death signal: airlock's end (or the supervisor's) is ours */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		return jail_failed("PR_SET_PDEATHSIG");
	if (jail_parent_gone())
		return -ESRCH; /* it died meanwhile */
	return 0;
}

int jail_close_fds_except(const int *keep, size_t n)
{
	int sorted[8];
	if (n > sizeof sorted / sizeof sorted[0])
		return -EINVAL;
	for (size_t i = 0; i < n; i++) { /* insertion sort: a handful of fds */
		size_t j = i;
		for (; j > 0 && sorted[j - 1] > keep[i]; j--)
			sorted[j] = sorted[j - 1];
		sorted[j] = keep[i];
	}
	unsigned first = 0;
	for (size_t i = 0; i < n; i++) {
		if (sorted[i] < 0 || (unsigned)sorted[i] < first)
			continue; /* none, or kept already */
		if ((unsigned)sorted[i] > first && close_range(first, (unsigned)sorted[i] - 1, 0) != 0)
			return jail_failed("close_range");
		first = (unsigned)sorted[i] + 1;
	}
	if (close_range(first, ~0u, 0) != 0)
		return jail_failed("close_range");
	return 0;
}

/* Started as root: the user namespace is made while the process is still root, so that root
 * owns it (a process of the VM's user outside holds no capability in it: no signal, no
 * ptrace), and the supervisor, root outside, maps its root to the VM's user; only then does
 * the process become that user, inside. It is never dumpable meanwhile (main.c). Started as
 * anyone else, the process maps itself. */
static int enter_namespaces(const struct jail_identity *id)
{
	const int spaces = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
			   CLONE_NEWUTS | CLONE_NEWCGROUP;
	int rc;
	if (id->from_root) {
		/* the supplementary groups while root may still drop them (setgroups is denied in
		 * the namespace) */
		if (setgroups(0, NULL) != 0)
			return jail_failed("setgroups");
		if (unshare(spaces) != 0)
			return jail_refused("unshare", jail_unshare_refused_because(errno));
		rc = jail_request_id_maps();
		if (rc == 0)
			rc = jail_switch_ids(0, 0, false); /* root inside is id's uid and gid outside */
	} else {
		if (unshare(spaces) != 0)
			return jail_refused("unshare", jail_unshare_refused_because(errno));
		rc = jail_map_ids("self", 0, id->uid, 0, id->gid);
	}
	if (rc == 0 && sethostname("airlock-vmm", 11) != 0)
		rc = jail_failed("sethostname");
	return rc;
}

/* Whether this mount namespace's root is its first mount, the one the kernel starts with:
 * airlock runs from an initramfs, straight from the initial ramfs. pivot_root cannot leave
 * that mount (it has no parent; EINVAL). mountinfo names a namespace's first mount as its own
 * parent. */
static bool root_is_first_mount(void)
{
	/* that first mount is always a ramfs or tmpfs ("rootfs"): anything else is not it, and
	 * mountinfo need not be read (a few ms per VM in the emulated test host) */
	struct statfs root;
	if (statfs("/", &root) == 0 && root.f_type != RAMFS_MAGIC && root.f_type != TMPFS_MAGIC)
		return false;
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false; /* pivot_root will say more */
	char *line = NULL;
	size_t cap = 0;
	bool first = false;
	while (getline(&line, &cap, f) > 0) {
		unsigned id, parent;
		char point[3];
		if (sscanf(line, "%u %u %*s %*s %2s", &id, &parent, point) == 3 &&
		    strcmp(point, "/") == 0 && id == parent)
			first = true;
	}
	free(line);
	fclose(f);
	return first;
}

static int enter_empty_root(void)
{
	bool first_mount = root_is_first_mount();
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return jail_failed("making the mounts private");
	if (mount("airlock-jail", JAIL_MOUNT_POINT, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=4k,nr_inodes=2,mode=0500") != 0)
		return jail_refused("mounting the empty root on " JAIL_MOUNT_POINT,
				    errno == ENOENT ? "the host's root has no " JAIL_MOUNT_POINT
						      " directory: create it"
						    : NULL);
	if (chdir(JAIL_MOUNT_POINT) != 0)
		return jail_failed("chdir");
	if (!first_mount) {
		/* pivot_root(".", "."): the old root ends up on top of the new one, detached next */
		if (syscall(SYS_pivot_root, ".", ".") != 0)
			return jail_failed("pivot_root");
		if (umount2(".", MNT_DETACH) != 0)
			return jail_failed("detaching the old root");
	} else {
		/* From the initial ramfs, as switch_root does: the empty root moved on top of it and
		 * made the process's root. The host's mounts stay below in this mount namespace (the
		 * first mount cannot be detached), reachable by no path: the root has no way up, and
		 * the jail keeps no directory fd but a snapshot's and drops CAP_SYS_CHROOT; the
		 * seccomp filter allows neither chroot nor mount. */
		if (mount(".", "/", NULL, MS_MOVE, NULL) != 0)
			return jail_failed("moving the empty root onto the initial ramfs");
		if (chroot(".") != 0)
			return jail_failed("chroot");
	}
	if (chdir("/") != 0 ||
	    mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL) != 0)
		return jail_failed("making the root read-only");
	return 0;
}

int jail_drop_bounding_set(void)
{
	/* a capability no longer in the set is skipped: dropping one takes CAP_SETPCAP */
	for (int cap = 0; cap <= 63; cap++)
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 &&
		    prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
			return jail_failed("dropping the bounding set");
	return 0;
}

int jail_drop_capabilities(void)
{
	if (jail_drop_bounding_set() != 0)
		return -EPERM;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		return jail_failed("clearing the ambient set");
	struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = {{0}};
	if (syscall(SYS_capset, &header, none) != 0)
		return jail_failed("capset");
	return 0;
}

static int set_limits(uint64_t guest_ram, bool writes_snapshot, bool keeps_state)
{
	struct rlimit no_core = {0, 0};
	struct rlimit fds = {JAIL_MAX_FDS, JAIL_MAX_FDS};
	struct rlimit space = {guest_ram + JAIL_ADDRESS_SPACE_EXTRA,
			       guest_ram + JAIL_ADDRESS_SPACE_EXTRA};
	if (setrlimit(RLIMIT_CORE, &no_core) != 0 || setrlimit(RLIMIT_NOFILE, &fds) != 0)
		return jail_failed("setrlimit");
#ifndef __SANITIZE_ADDRESS__ /* ASan reserves terabytes of shadow address space */
	if (setrlimit(RLIMIT_AS, &space) != 0)
		return jail_failed("setrlimit");
#else
	(void)space;
#endif
	if (!writes_snapshot) { /* a snapshot's memory file is as large as guest RAM */
		/* a kept state's pages may be too: the soft limit bounds the log while the VM runs,
		 * and the save raises it to the hard one (snapshot_save_kept) */
		struct rlimit file_size = {JAIL_MAX_FILE_SIZE,
					   JAIL_MAX_FILE_SIZE + (keeps_state ? guest_ram : 0)};
		signal(SIGXFSZ, SIG_IGN); /* a full log fails the write, it does not kill */
		if (setrlimit(RLIMIT_FSIZE, &file_size) != 0)
			return jail_failed("setrlimit");
	}
	return 0;
}

int jail_enter(const struct jail_identity *id)
{
	int rc = enter_namespaces(id);
	if (rc == 0)
		rc = enter_empty_root();
	return rc;
}

int jail_seal(uint64_t guest_ram, bool writes_snapshot, bool keeps_state)
{
	int rc = jail_drop_capabilities();
	if (rc == 0)
		rc = set_limits(guest_ram, writes_snapshot, keeps_state);
	if (rc == 0 && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
			prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0))
		rc = jail_failed("prctl");
	return rc;
}
