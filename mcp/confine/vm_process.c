/* A VM process's environment, fds and identity (confine.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "confine.h"

char *const *vm_environment(void)
{
	static char *env[8];
	if (!env[0]) {
		size_t n = 0;
		env[n++] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
		static const char *const passed[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS",
						     "LSAN_OPTIONS"};
		static char values[3][512];
		for (size_t i = 0; i < 3; i++) {
			const char *v = getenv(passed[i]);
			if (v && (size_t)snprintf(values[i], sizeof values[i], "%s=%s", passed[i],
						  v) < sizeof values[i])
				env[n++] = values[i];
		}
		env[n] = NULL;
	}
	return env;
}

int vm_process_close_inherited_fds(void)
{
	if (close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) == 0)
		return 0;
	/* kernels before 5.11: one by one */
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -errno;
	int self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (fd > 2 && fd != self)
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	closedir(d);
	return 0;
}

/* The lock directory, made by root for root only (anything else found there is refused): under
 * /run, or /tmp where there is no /run (an initramfs, say). */
static int identity_dir(void)
{
	static const char *const dirs[][2] = {{"/run/airlock", VM_IDENTITY_DIR},
					      {"/tmp/.airlock-vm-ids", NULL}};
	int rc = -ENOENT;
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		for (size_t j = 0; j < 2 && dirs[i][j]; j++)
			if (mkdir(dirs[i][j], 0700) != 0 && errno != EEXIST)
				rc = -errno;
		const char *path = dirs[i][1] ? dirs[i][1] : dirs[i][0];
		int dir = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (dir >= 0 && fstat(dir, &st) == 0 && st.st_uid == 0 && !(st.st_mode & 0077))
			return dir;
		rc = dir < 0 ? -errno : -EPERM;
		if (dir >= 0)
			close(dir);
	}
	return rc;
}

int vm_identity_take(struct vm_identity *id)
{
	*id = (struct vm_identity){0, -1};
	if (geteuid() != 0 || vm_unconfined())
		return 0;
	int dir = identity_dir();
	if (dir < 0)
		return dir;
	uint32_t start;
	if (getrandom(&start, sizeof start, 0) != sizeof start)
		start = (uint32_t)getpid();
	int rc = -EAGAIN;
	for (uint32_t i = 0; i < VM_IDENTITY_COUNT && rc == -EAGAIN; i++) {
		uint32_t slot = (start + i) % VM_IDENTITY_COUNT;
		char name[16];
		snprintf(name, sizeof name, "%u", slot);
		int fd = openat(dir, name, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = -errno;
			break;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
			close(fd);
			continue; /* another VM's, in this process or another */
		}
		*id = (struct vm_identity){VM_IDENTITY_BASE + slot, fd};
		rc = 0;
	}
	close(dir);
	return rc;
}

void vm_identity_release(struct vm_identity *id)
{
	if (id->lock_fd >= 0)
		close(id->lock_fd);
	*id = (struct vm_identity){0, -1};
}

bool vm_unconfined(void)
{
	static int unconfined = -1;
	if (unconfined < 0) {
		const char *v = getenv("AIRLOCK_BENCH_UNCONFINED");
		unconfined = v && strcmp(v, "1") == 0;
		if (unconfined)
			fprintf(stderr, "airlock: AIRLOCK_BENCH_UNCONFINED=1: VMs run WITHOUT their jail "
					"(benchmark only)\n");
	}
	return unconfined;
}
