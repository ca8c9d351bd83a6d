/* Files a VM may only read (confine.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "confine.h"

#define MAX_FILES 16 /* a kernel, a root disk and the snapshots' states and memories */

struct anchor {
	char path[PATH_MAX]; /* the real path (symlinks resolved) */
	dev_t dev;	     /* of the file at path when the anchor was made */
	ino_t ino;
	struct timespec ctime;
	int fd; /* on the read-only mount, or the sealed copy; each VM gets a reopen of it */
};

static struct anchor anchors[MAX_FILES];
static size_t anchor_count;
static const char *method;
static bool force_sealed_copy;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

const char *readonly_method(void)
{
	return method;
}

void readonly_force_sealed_copy(void)
{
	force_sealed_copy = true;
}

/* ---- the read-only mount, made by a child in namespaces of its own ---- */

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, text, strlen(text));
	int rc = n == (ssize_t)strlen(text) ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return rc;
}

/* The flags of the mount under path that a user namespace may not clear (they are locked). */
static unsigned long locked_flags(const char *path)
{
	struct statvfs v;
	if (statvfs(path, &v) != 0)
		return 0;
	unsigned long flags = 0;
	flags |= v.f_flag & ST_NOSUID ? MS_NOSUID : 0;
	flags |= v.f_flag & ST_NODEV ? MS_NODEV : 0;
	flags |= v.f_flag & ST_NOEXEC ? MS_NOEXEC : 0;
	flags |= v.f_flag & ST_NOATIME ? MS_NOATIME : 0;
	flags |= v.f_flag & ST_NODIRATIME ? MS_NODIRATIME : 0;
	flags |= v.f_flag & ST_RELATIME ? MS_RELATIME : 0;
	return flags;
}

/* In the child (fork of a possibly threaded process: syscalls and stack buffers only). Returns
 * the fd of path on a read-only bind mount, or -errno. */
static int open_on_readonly_mount(const char *path, uid_t uid, gid_t gid)
{
	if (uid != 0) {
		char map[64];
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			return -errno;
		int rc = write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof map, "%u %u 1", (unsigned)uid, (unsigned)uid);
		if (rc == 0)
			rc = write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof map, "%u %u 1", (unsigned)gid, (unsigned)gid);
		if (rc == 0)
			rc = write_file("/proc/self/gid_map", map);
		if (rc)
			return rc;
	} else if (unshare(CLONE_NEWNS) != 0) {
		return -errno;
	}
	if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount(path, path, "none", MS_BIND, NULL) != 0 ||
	    mount("none", path, "none", MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(path),
		  NULL) != 0)
		return -errno;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct statvfs v;
	if (fstatvfs(fd, &v) != 0 || !(v.f_flag & ST_RDONLY)) {
		close(fd);
		return -EROFS; /* not what was asked for: never hand it over */
	}
	return fd;
}

/* Sends an fd (rc >= 0) or an error (rc < 0) over sock. */
static void send_result(int sock, int rc)
{
	struct iovec iov = {&rc, sizeof rc};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (rc >= 0) {
		memset(&control, 0, sizeof control);
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof control.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &rc, sizeof rc);
	}
	(void)!sendmsg(sock, &msg, MSG_NOSIGNAL);
}

/* Receives what send_result sent: the fd, or -errno. */
static int receive_result(int sock)
{
	int rc = -EIO;
	struct iovec iov = {&rc, sizeof rc};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control.buf,
			     .msg_controllen = sizeof control.buf};
	ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	if (n != sizeof rc)
		return -EIO;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (rc >= 0) {
		if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
			return -EIO;
		memcpy(&rc, CMSG_DATA(c), sizeof rc);
	}
	return rc;
}

static int anchor_on_readonly_mount(const char *path)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	uid_t uid = geteuid();
	gid_t gid = getegid();
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		send_result(sv[1], open_on_readonly_mount(path, uid, gid));
		_exit(0);
	}
	close(sv[1]);
	int rc = pid < 0 ? -errno : receive_result(sv[0]);
	close(sv[0]);
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	return rc;
}

/* ---- the sealed copy ---- */

/* Copies the file's data into a memfd, holes left as holes (a snapshot's memory file is
 * mostly holes), then seals it. */
static int anchor_sealed_copy(const char *path)
{
	int src = open(path, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return -errno;
	int fd = memfd_create("airlock-readonly", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	struct stat st;
	int rc = fd < 0 || fstat(src, &st) != 0 || ftruncate(fd, st.st_size) != 0 ? -errno : 0;
	static char buf[1 << 16];
	for (off_t data = 0; rc == 0 && data < st.st_size;) {
		data = lseek(src, data, SEEK_DATA);
		if (data < 0)
			break; /* ENXIO: no more data */
		off_t hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0) {
			rc = -errno;
			break;
		}
		while (rc == 0 && data < hole) {
			size_t want =
			    (size_t)(hole - data) < sizeof buf ? (size_t)(hole - data) : sizeof buf;
			ssize_t n = pread(src, buf, want, data);
			if (n <= 0 || pwrite(fd, buf, (size_t)n, data) != n)
				rc = n == 0 ? -EIO : -errno;
			else
				data += n;
		}
	}
	if (rc == 0 &&
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
		rc = -errno;
	close(src);
	if (rc) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

/* ---- the cache of anchors ---- */

static struct anchor *find_anchor(const char *path, const struct stat *st)
{
	for (size_t i = 0; i < anchor_count; i++) {
		struct anchor *a = &anchors[i];
		if (strcmp(a->path, path) != 0)
			continue;
		if (a->dev == st->st_dev && a->ino == st->st_ino &&
		    a->ctime.tv_sec == st->st_ctim.tv_sec &&
		    a->ctime.tv_nsec == st->st_ctim.tv_nsec)
			return a;
		close(a->fd); /* the file was replaced or changed since: a new anchor */
		*a = anchors[--anchor_count];
		return NULL;
	}
	return NULL;
}

static int reopen(int fd)
{
	char self[64];
	snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
	int new_fd = open(self, O_RDONLY | O_CLOEXEC);
	return new_fd >= 0 ? new_fd : -errno;
}

int readonly_open_once(const char *path)
{
	char real[PATH_MAX];
	if (!realpath(path, real))
		return -errno;
	int fd = force_sealed_copy ? -ENOSYS : anchor_on_readonly_mount(real);
	if (fd < 0)
		fd = anchor_sealed_copy(real);
	return fd;
}

int readonly_open(const char *path)
{
	char real[PATH_MAX];
	struct stat st;
	if (!realpath(path, real) || stat(real, &st) != 0)
		return -errno;
	pthread_mutex_lock(&lock);
	struct anchor *a = find_anchor(real, &st);
	int rc = 0;
	if (!a) {
		int fd = force_sealed_copy ? -ENOSYS : anchor_on_readonly_mount(real);
		const char *how = "a read-only mount";
		if (fd < 0) {
			fd = anchor_sealed_copy(real);
			how = "a sealed memfd";
		}
		if (fd < 0) {
			rc = fd;
		} else if (anchor_count == MAX_FILES) {
			close(fd);
			rc = -EMFILE;
		} else {
			a = &anchors[anchor_count++];
			*a = (struct anchor){
			    .dev = st.st_dev, .ino = st.st_ino, .ctime = st.st_ctim, .fd = fd};
			snprintf(a->path, sizeof a->path, "%s", real);
			method = how;
		}
	}
	if (a)
		rc = reopen(a->fd);
	pthread_mutex_unlock(&lock);
	return rc;
}
