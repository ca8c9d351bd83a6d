/* One cgroup per VM process (confine.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confine.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define CPU_PERIOD_US 100000

static const char *const v1_controllers[] = {"memory", "pids", "cpu"};
#define N_V1 (sizeof v1_controllers / sizeof v1_controllers[0])

static enum cgroup_mode mode = CGROUP_NONE;
static char v2_parent[1024];      /* v2: the server's group for its VMs */
static char v1_parent[N_V1][1024]; /* v1: the same, per hierarchy */

/* dir/name into out; false when it does not fit */
static bool join(char *out, size_t len, const char *dir, const char *name)
{
	int n = snprintf(out, len, "%s/%s", dir, name);
	return n >= 0 && (size_t)n < len;
}

static int write_file(const char *dir, const char *file, const char *text)
{
	char path[1200];
	if (!join(path, sizeof path, dir, file))
		return -ENAMETOOLONG;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t len = (ssize_t)strlen(text), n = write(fd, text, (size_t)len);
	int err = n == len ? 0 : (n < 0 ? -errno : -EIO);
	close(fd);
	return err;
}

/* The server's own group in the hierarchy whose /proc/self/cgroup line has this controller list
 * (v2: the "0::" line, controller ""). */
static bool own_group(const char *controller, char *path, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return false;
	char line[1024];
	bool found = false;
	while (!found && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		char *list = strchr(line, ':'), *group = list ? strchr(list + 1, ':') : NULL;
		if (!group)
			continue;
		*group++ = '\0';
		*list++ = '\0';
		if (controller[0] == '\0') /* v2's line: "0::/path" */
			found = strcmp(line, "0") == 0 && list[0] == '\0';
		else
			for (char *c = strtok(list, ","); c && !found; c = strtok(NULL, ","))
				found = strcmp(c, controller) == 0;
		if (found)
			snprintf(path, len, "%s", strcmp(group, "/") == 0 ? "" : group);
	}
	fclose(f);
	return found;
}

/* SIGKILL to every process in the group dir: what is left of a VM whose process is gone (a
 * wrapper's child that missed its parent-death signal). */
static void kill_members(const char *dir)
{
	char path[1200];
	if (!join(path, sizeof path, dir, "cgroup.procs"))
		return;
	FILE *f = fopen(path, "re");
	int pid;
	while (f && fscanf(f, "%d", &pid) == 1)
		if (pid > 1)
			kill(pid, SIGKILL);
	if (f)
		fclose(f);
}

/* Calls fn on each "vm-*" group in parent. */
static void each_vm_group(const char *parent, void (*fn)(const char *dir))
{
	DIR *d = opendir(parent);
	for (struct dirent *e; d && (e = readdir(d));) {
		char dir[1100];
		if (strncmp(e->d_name, "vm-", 3) == 0 && join(dir, sizeof dir, parent, e->d_name))
			fn(dir);
	}
	if (d)
		closedir(d);
}

static void remove_if_empty(const char *dir)
{
	rmdir(dir); /* EBUSY while a process is still in it */
}

/* A VM behind a wrapper may outlive the wrapper's reaping by a moment (its group is busy then),
 * so each removal also takes the empty groups left before. */
static void remove_empty_vm_groups(const char *parent)
{
	each_vm_group(parent, remove_if_empty);
}

/* Every VM group in parent: its processes killed, the group removed (the server is ending, or
 * parent was left by a server that was killed). */
static void empty_all_vm_groups(const char *parent)
{
	each_vm_group(parent, kill_members);
	each_vm_group(parent, remove_if_empty);
}

/* Groups left by a server that was killed: "airlock-<pid>" directories in dir whose pid is gone.
 * Its VMs died with it by their parent-death signal; anything that missed it is killed now. */
static void remove_stale_groups(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	for (struct dirent *e; (e = readdir(d));) {
		int pid;
		char rest;
		if (sscanf(e->d_name, "airlock-%d%c", &pid, &rest) != 1 || pid <= 0 ||
		    kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char group[1100];
		if (!join(group, sizeof group, dir, e->d_name))
			continue;
		empty_all_vm_groups(group);
		rmdir(group);
	}
	closedir(d);
}

static enum cgroup_mode init_v2(char *why, size_t why_len)
{
	char own[400], dir[600];
	if (!own_group("", own, sizeof own)) {
		snprintf(why, why_len, "cgroup v2: this process is in no unified group");
		return CGROUP_NONE;
	}
	snprintf(dir, sizeof dir, CGROUP_ROOT "%s", own);
	/* the server's group must hand the controllers down: the root group, or one delegated */
	int rc = write_file(dir, "cgroup.subtree_control", "+memory +pids +cpu");
	if (rc) {
		snprintf(why, why_len, "cgroup v2: cannot enable memory, pids and cpu below %s: %s",
			 dir, strerror(-rc));
		return CGROUP_NONE;
	}
	remove_stale_groups(dir);
	snprintf(v2_parent, sizeof v2_parent, "%s/airlock-%d", dir, (int)getpid());
	if (mkdir(v2_parent, 0755) != 0 && errno != EEXIST) {
		snprintf(why, why_len, "cgroup v2: cannot create %s: %s", v2_parent, strerror(errno));
		return CGROUP_NONE;
	}
	rc = write_file(v2_parent, "cgroup.subtree_control", "+memory +pids +cpu");
	if (rc) {
		rmdir(v2_parent);
		snprintf(why, why_len, "cgroup v2: cannot enable controllers in %s: %s", v2_parent,
			 strerror(-rc));
		return CGROUP_NONE;
	}
	return CGROUP_V2;
}

static enum cgroup_mode init_v1(char *why, size_t why_len)
{
	for (size_t i = 0; i < N_V1; i++) {
		char own[400];
		if (!own_group(v1_controllers[i], own, sizeof own)) {
			snprintf(why, why_len, "cgroup v1: no %s hierarchy", v1_controllers[i]);
			goto undo;
		}
		char dir[600];
		snprintf(dir, sizeof dir, CGROUP_ROOT "/%s%s", v1_controllers[i], own);
		remove_stale_groups(dir);
		snprintf(v1_parent[i], sizeof v1_parent[i], "%s/airlock-%d", dir, (int)getpid());
		if (mkdir(v1_parent[i], 0755) != 0 && errno != EEXIST) {
			snprintf(why, why_len, "cgroup v1: cannot create %s: %s", v1_parent[i],
				 strerror(errno));
			v1_parent[i][0] = '\0';
			goto undo;
		}
	}
	return CGROUP_V1;
undo:
	for (size_t i = 0; i < N_V1; i++)
		if (v1_parent[i][0])
			rmdir(v1_parent[i]);
	memset(v1_parent, 0, sizeof v1_parent);
	return CGROUP_NONE;
}

enum cgroup_mode cgroup_init(char *why, size_t why_len)
{
	why[0] = '\0';
	if (access(CGROUP_ROOT "/cgroup.controllers", F_OK) == 0)
		mode = init_v2(why, why_len);
	else if (access(CGROUP_ROOT "/memory", F_OK) == 0)
		mode = init_v1(why, why_len);
	else
		snprintf(why, why_len, "no cgroup file system at " CGROUP_ROOT);
	return mode;
}

/* Moves pid and every process below it into dir (a VM process may be a wrapper, bubblewrap,
 * whose children are the VM). Bounded: a VM's tree is a handful of processes. */
static int move_tree(const char *dir, pid_t pid, int depth)
{
	char text[32], path[96];
	snprintf(text, sizeof text, "%d", (int)pid);
	int rc = write_file(dir, "cgroup.procs", text);
	if (rc || depth >= 4)
		return rc;
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0; /* gone meanwhile, or no children file: nothing below */
	int child;
	while (rc == 0 && fscanf(f, "%d", &child) == 1)
		rc = move_tree(dir, child, depth + 1);
	fclose(f);
	return rc == -ESRCH ? 0 : rc;
}

static int enter_v2(const struct vm_cgroup *cg, pid_t pid, uint64_t memory, unsigned cpus)
{
	char dir[1100], text[64];
	if (!join(dir, sizeof dir, v2_parent, cg->name))
		return -ENAMETOOLONG;
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return -errno;
	snprintf(text, sizeof text, "%llu", (unsigned long long)memory);
	int rc = write_file(dir, "memory.max", text);
	if (rc == 0)
		(void)write_file(dir, "memory.swap.max", "0"); /* absent without swap accounting */
	snprintf(text, sizeof text, "%d", VM_CGROUP_PIDS_MAX);
	if (rc == 0)
		rc = write_file(dir, "pids.max", text);
	snprintf(text, sizeof text, "%u %u", cpus * CPU_PERIOD_US, CPU_PERIOD_US);
	if (rc == 0)
		rc = write_file(dir, "cpu.max", text);
	if (rc == 0)
		rc = move_tree(dir, pid, 0);
	return rc;
}

static int enter_v1(const struct vm_cgroup *cg, pid_t pid, uint64_t memory, unsigned cpus)
{
	char text[64];
	for (size_t i = 0; i < N_V1; i++) {
		char dir[1100];
		if (!join(dir, sizeof dir, v1_parent[i], cg->name))
			return -ENAMETOOLONG;
		if (mkdir(dir, 0755) != 0 && errno != EEXIST)
			return -errno;
		int rc = 0;
		if (strcmp(v1_controllers[i], "memory") == 0) {
			snprintf(text, sizeof text, "%llu", (unsigned long long)memory);
			rc = write_file(dir, "memory.limit_in_bytes", text);
		} else if (strcmp(v1_controllers[i], "pids") == 0) {
			snprintf(text, sizeof text, "%d", VM_CGROUP_PIDS_MAX);
			rc = write_file(dir, "pids.max", text);
		} else {
			snprintf(text, sizeof text, "%d", CPU_PERIOD_US);
			rc = write_file(dir, "cpu.cfs_period_us", text);
			snprintf(text, sizeof text, "%u", cpus * CPU_PERIOD_US);
			if (rc == 0)
				rc = write_file(dir, "cpu.cfs_quota_us", text);
		}
		if (rc == 0)
			rc = move_tree(dir, pid, 0);
		if (rc)
			return rc;
	}
	return 0;
}

int vm_cgroup_enter(struct vm_cgroup *cg, pid_t pid, uint64_t guest_ram, unsigned vcpus)
{
	cg->name[0] = '\0';
	if (mode == CGROUP_NONE)
		return 0;
	snprintf(cg->name, sizeof cg->name, "vm-%d", (int)pid);
	uint64_t memory = guest_ram + VM_CGROUP_MEMORY_OVERHEAD;
	unsigned cpus = vcpus + 1; /* the vCPUs and the monitor's own I/O */
	int rc = mode == CGROUP_V2 ? enter_v2(cg, pid, memory, cpus) : enter_v1(cg, pid, memory, cpus);
	if (rc)
		vm_cgroup_remove(cg); /* a half-made group goes; the process stays where it was */
	return rc;
}

int vm_cgroup_gather(const struct vm_cgroup *cg, pid_t pid)
{
	if (!cg->name[0])
		return 0;
	char dir[1100];
	if (mode == CGROUP_V2)
		return join(dir, sizeof dir, v2_parent, cg->name) ? move_tree(dir, pid, 0)
								  : -ENAMETOOLONG;
	for (size_t i = 0; i < N_V1; i++) {
		int rc = join(dir, sizeof dir, v1_parent[i], cg->name) ? move_tree(dir, pid, 0)
									: -ENAMETOOLONG;
		if (rc)
			return rc;
	}
	return 0;
}

void vm_cgroup_remove(struct vm_cgroup *cg)
{
	if (!cg->name[0])
		return;
	char dir[1100];
	if (mode == CGROUP_V2) {
		if (join(dir, sizeof dir, v2_parent, cg->name))
			kill_members(dir);
		remove_empty_vm_groups(v2_parent);
	} else {
		for (size_t i = 0; i < N_V1; i++) {
			if (join(dir, sizeof dir, v1_parent[i], cg->name))
				kill_members(dir);
			remove_empty_vm_groups(v1_parent[i]);
		}
	}
	cg->name[0] = '\0';
}

/* At the end every VM process has been killed; a wrapped one may take a moment to be gone. */
static void remove_parent(const char *parent)
{
	for (int tries = 0; tries < 25; tries++) { /* at most half a second */
		empty_all_vm_groups(parent);
		if (rmdir(parent) == 0 || errno == ENOENT)
			return;
		usleep(20000);
	}
}

void cgroup_cleanup(void)
{
	if (mode == CGROUP_V2)
		remove_parent(v2_parent);
	else if (mode == CGROUP_V1)
		for (size_t i = 0; i < N_V1; i++)
			remove_parent(v1_parent[i]);
	mode = CGROUP_NONE;
}
