/* The files a program left under /work/out, collected for the EXIT frame without trusting
 * anything there. A child that is the sandbox user (no capabilities, no_new_privs) walks the
 * tree by file descriptor, never following a link, and sends the agent a ustar of the regular
 * files it could read and the list of those it left out. The agent (root) reads that stream as
 * untrusted input: it checks every length against the limits before it keeps a byte.
 *
 * The stream from the child: struct collect_report, then the tar (tar_len bytes), then the
 * "SIZE PATH\n" lines (skipped_len bytes), then its end.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define OUT_MAX_ENTRIES 1000 /* regular files listed from /work/out */
#define OUT_MAX_DEPTH 16
#define OUT_SKIPPED_LINE_MAX (PATH_MAX + 32)
#define OUT_SKIPPED_MAX ((size_t)OUT_MAX_ENTRIES * OUT_SKIPPED_LINE_MAX)
/* a header block and at most a block of padding per file, then the two blocks that end it */
#define OUT_TAR_OVERHEAD_MAX (((size_t)OUT_MAX_ENTRIES + 1) * 1024)
/* The content cap the host asks for, bounded so that the EXIT frame always fits. */
#define OUT_CONTENT_MAX                                                                            \
	((uint64_t)AL_FRAME_MAX_PAYLOAD - sizeof(struct al_exit) - OUT_TAR_OVERHEAD_MAX -          \
	 OUT_SKIPPED_MAX)
#define COLLECT_CHILD_FD 3

struct collect_report {
	uint32_t tar_len;
	uint32_t skipped_len;
	uint32_t truncated;
	uint32_t reserved;
};

/* ---- in the child: the sandbox user's walk ---- */

struct walk {
	struct tar_writer tar;
	char *skipped;
	size_t skipped_len;
	uint64_t returned; /* content bytes in the tar */
	uint64_t cap;
	unsigned entries;
	int truncated;
	struct timespec since; /* only files whose status changed since (0: all) */
};

static int changed_before(const struct stat *st, const struct timespec *since)
{
	return st->st_ctim.tv_sec < since->tv_sec ||
	       (st->st_ctim.tv_sec == since->tv_sec && st->st_ctim.tv_nsec < since->tv_nsec);
}

static int note_skipped(struct walk *w, const char *rel, uint64_t size)
{
	char line[OUT_SKIPPED_LINE_MAX];
	int n = snprintf(line, sizeof line, "%llu %s\n", (unsigned long long)size, rel);
	if (n < 0 || (size_t)n >= sizeof line)
		return 0;
	char *p = realloc(w->skipped, w->skipped_len + (size_t)n);
	if (!p)
		return -ENOMEM;
	memcpy(p + w->skipped_len, line, (size_t)n);
	w->skipped = p;
	w->skipped_len += (size_t)n;
	w->truncated = 1;
	return 0;
}

/* Adds the open regular file fd (size bytes when it was looked at) as rel, or lists it as left
 * out when it is over the cap. */
static int walk_file(struct walk *w, int fd, const char *rel, uint64_t size)
{
	if (strchr(rel, '\n'))
		return 0; /* cannot be named in the skipped list; leave it out */
	if (w->returned + size > w->cap)
		return note_skipped(w, rel, size);
	uint8_t *content = malloc(size ? size : 1);
	if (!content)
		return -ENOMEM;
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, content + got, size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	int rc = 0;
	if (tar_add_file(&w->tar, rel, content, got) == 0)
		w->returned += got;
	else
		rc = note_skipped(w, rel, size);
	free(content);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in the directory dir_fd (not "." or ".."), sorted as scandir's alphasort sorts them
 * in the C locale. Returns how many, or -errno; *names is malloc'd, each name too. */
static int list_names(int dir_fd, char ***names)
{
	uint64_t buf[512]; /* getdents64 itself: opendir's 32 KiB buffer costs more than a look */
	char **list = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	long got;
	while (rc == 0 && (got = getdents64(dir_fd, buf, sizeof buf)) > 0) {
		for (long off = 0; rc == 0 && off < got;) {
			const struct dirent64 *e = (const void *)((const char *)buf + off);
			off += e->d_reclen;
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (n == cap) {
				size_t more = cap ? cap * 2 : 64;
				char **p =
				    more < INT_MAX ? realloc(list, more * sizeof *list) : NULL;
				if (!p) {
					rc = -ENOMEM;
					break;
				}
				list = p;
				cap = more;
			}
			if ((list[n] = strdup(e->d_name)) == NULL)
				rc = -ENOMEM;
			else
				n++;
		}
	}
	if (rc == 0 && got < 0)
		rc = -errno;
	if (rc) {
		while (n > 0)
			free(list[--n]);
		free(list);
		return rc;
	}
	if (n)
		qsort(list, n, sizeof *list, by_name);
	*names = list;
	return (int)n;
}

/* Walks the directory dir_fd (rel: its path under /work/out, "" at the top). Each entry is
 * opened by name relative to its directory with O_NOFOLLOW and judged by what was opened:
 * a link, or anything that changed into one, is never followed. */
static int walk_dir(struct walk *w, int dir_fd, const char *rel, int depth)
{
	char **names = NULL;
	int n = list_names(dir_fd, &names);
	if (n < 0)
		return n == -ENOMEM ? n : 0;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const char *name = names[i];
		char sub[PATH_MAX];
		struct stat st;
		if (rc || (size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", name) >=
			      sizeof sub)
			continue;
		if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (w->entries >= OUT_MAX_ENTRIES) {
			w->truncated = 1;
			continue;
		}
		if (S_ISREG(st.st_mode) && changed_before(&st, &w->since))
			continue; /* a kept state's older file: returned by the call that made it */
		if (S_ISREG(st.st_mode)) {
			w->entries++;
			int fd = openat(dir_fd, name,
					O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
			if (fd < 0) { /* not readable by its owner: say so rather than drop it */
				rc = note_skipped(w, sub, (uint64_t)st.st_size);
				continue;
			}
			if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
				rc = walk_file(w, fd, sub, (uint64_t)st.st_size);
			close(fd);
		} else if (S_ISDIR(st.st_mode) && depth < OUT_MAX_DEPTH) {
			int sub_fd =
			    openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub_fd >= 0) {
				rc = walk_dir(w, sub_fd, sub, depth + 1);
				close(sub_fd);
			}
		}
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* Opens the directory at path with no symbolic link anywhere on the way. Returns the fd or
 * -errno. */
static int open_dir_without_links(const char *path)
{
	struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
			       .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
	long fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
	return fd >= 0 ? (int)fd : -errno;
}

/* Becomes the sandbox user for good: no supplementary groups, no capabilities (they go with
 * uid 0 when all three uids change), no way back through exec, not dumpable. */
static int become_sandbox_user(void)
{
	if (setgroups(0, NULL) != 0 ||
	    setresgid(AGENT_USER_GID, AGENT_USER_GID, AGENT_USER_GID) != 0 ||
	    setresuid(AGENT_USER_UID, AGENT_USER_UID, AGENT_USER_UID) != 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return -errno;
	/* a uid that can come back means capabilities that stayed */
	if (setresuid(0, 0, 0) == 0)
		return -EPERM;
	return 0;
}

/* The child: keeps only the pipe to the agent, becomes the sandbox user, walks dir and sends
 * its report. Never returns. */
static void collect_as_user(int report_fd, const char *dir, uint64_t cap,
			    const struct timespec *since)
{
	int rc = 0;
	if (report_fd != COLLECT_CHILD_FD && dup2(report_fd, COLLECT_CHILD_FD) < 0)
		rc = -errno;
	/* the host channel and the program's pipes are not the walk's business */
	if (rc == 0 && close_range(COLLECT_CHILD_FD + 1, ~0u, 0) != 0)
		rc = -errno;
	/* ahead of every user process, behind the agent (which keeps its deadline); only speed
	 * depends on it */
	struct sched_param fifo = {.sched_priority = AGENT_COLLECT_PRIORITY};
	(void)sched_setscheduler(0, SCHED_FIFO, &fifo);
	if (rc == 0)
		rc = become_sandbox_user();
	if (rc) {
		fprintf(stderr, "airlock-agent: collecting %s: %s\n", dir, strerror(-rc));
		_exit(1);
	}
	struct walk w = {.cap = cap, .since = *since};
	int dir_fd = open_dir_without_links(dir);
	if (dir_fd >= 0) {
		rc = walk_dir(&w, dir_fd, "", 0);
		close(dir_fd);
	}
	if (rc == 0 && w.tar.len > 0)
		rc = tar_finish(&w.tar);
	if (rc == 0 && (w.tar.len > UINT32_MAX || w.skipped_len > UINT32_MAX))
		rc = -E2BIG;
	struct collect_report r = {.tar_len = (uint32_t)w.tar.len,
				   .skipped_len = (uint32_t)w.skipped_len,
				   .truncated = (uint32_t)w.truncated};
	if (rc == 0)
		rc = fd_write_all(COLLECT_CHILD_FD, &r, sizeof r);
	if (rc == 0 && w.tar.len)
		rc = fd_write_all(COLLECT_CHILD_FD, w.tar.data, w.tar.len);
	if (rc == 0 && w.skipped_len)
		rc = fd_write_all(COLLECT_CHILD_FD, w.skipped, w.skipped_len);
	_exit(rc == 0 ? 0 : 1);
}

/* ---- in the agent: the child's report, untrusted ---- */

/* Reads exactly len bytes before deadline. Returns 0, -EPIPE at an early end, -ETIMEDOUT or
 * -errno. */
static int read_exact(int fd, void *buf, size_t len, int64_t deadline)
{
	uint8_t *p = buf;
	while (len > 0) {
		int64_t left = deadline - monotonic_ms();
		struct pollfd pfd = {fd, POLLIN, 0};
		int ready = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0)
			return -errno;
		if (ready == 0)
			return -ETIMEDOUT;
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Checks the tar and the list of a report whose lengths are within the limits. */
static int check_report(const struct collect_report *r, const uint8_t *tar, const char *skipped,
			uint64_t cap)
{
	if (r->tar_len) {
		uint64_t content;
		unsigned files;
		if (tar_check(tar, r->tar_len, &content, &files) != 0 || content > cap ||
		    files > OUT_MAX_ENTRIES)
			return -EPROTO;
	}
	if (r->skipped_len &&
	    (skipped[r->skipped_len - 1] != '\n' || memchr(skipped, '\0', r->skipped_len)))
		return -EPROTO;
	return 0;
}

/* Reads and checks the child's report into f. Returns 0, or -errno when the report is
 * missing, late or bad (f is then left empty). */
static int take_report(int fd, uint64_t cap, int64_t deadline, struct out_files *f)
{
	struct collect_report r;
	int rc = read_exact(fd, &r, sizeof r, deadline);
	if (rc)
		return rc;
	if (r.tar_len > cap + OUT_TAR_OVERHEAD_MAX || r.skipped_len > OUT_SKIPPED_MAX)
		return -EPROTO; /* before anything is allocated for it */
	size_t body = (size_t)r.tar_len + r.skipped_len;
	uint8_t *payload = malloc(sizeof(struct al_exit) + body);
	if (!payload)
		return -ENOMEM;
	uint8_t *tar = payload + sizeof(struct al_exit);
	uint8_t end;
	rc = read_exact(fd, tar, body, deadline);
	if (rc == 0 && read_exact(fd, &end, 1, deadline) != -EPIPE)
		rc = -EPROTO; /* more than it said */
	if (rc == 0)
		rc = check_report(&r, tar, (const char *)tar + r.tar_len, cap);
	if (rc) {
		free(payload);
		return rc;
	}
	*f = (struct out_files){.payload = payload, .tar_len = r.tar_len,
				.skipped_len = r.skipped_len, .truncated = r.truncated != 0};
	return 0;
}

/* An empty /work/out, the usual case, needs no child. Read as root, but only a directory listing,
 * through no link. */
int out_files_any(const char *dir)
{
	int fd = open_dir_without_links(dir);
	if (fd < 0)
		return fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR ? 0 : 1;
	/* getdents64 itself: opendir's buffer and checks cost more than the look */
	uint64_t buf[128];
	int found = 0;
	long n;
	while (!found && (n = getdents64(fd, buf, sizeof buf)) > 0) {
		for (long off = 0; off < n && !found;) {
			const struct dirent64 *e = (const void *)((const char *)buf + off);
			found = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
			off += e->d_reclen;
		}
	}
	close(fd);
	return found || n < 0;
}

int out_files_collect(const char *dir, uint64_t cap, int timeout_ms, const struct timespec *since,
		      struct out_files *f)
{
	*f = (struct out_files){0};
	if (!out_files_any(dir))
		return 0;
	if (cap > OUT_CONTENT_MAX)
		cap = OUT_CONTENT_MAX;
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return -errno;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		static const struct timespec all = {0, 0};
		collect_as_user(p[1], dir, cap, since ? since : &all);
	}
	int err = pid < 0 ? -errno : 0;
	close(p[1]);
	if (err) {
		close(p[0]);
		return err;
	}
	int rc = take_report(p[0], cap, monotonic_ms() + timeout_ms, f);
	close(p[0]);
	if (rc)
		(void)kill(pid, SIGKILL); /* late or lying: it has nothing more to say */
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		rc = -EPROTO;
	if (rc == -ENOMEM) {
		out_files_free(f);
		return rc;
	}
	if (rc) {
		fprintf(stderr, "airlock-agent: collecting %s: %s\n", dir, strerror(-rc));
		out_files_free(f);
		f->truncated = 1; /* none of /work/out is returned */
	}
	return 0;
}

void out_files_warm_up(void)
{
	/* The look into /work/out that most runs end with, translated by an emulated CPU while
	 * the VM waits. Not a whole collection: every restored VM would pay ~19 ms of translation
	 * for what only runs that leave files use. */
	(void)out_files_any(AGENT_WORK_DIR);
}

void out_files_free(struct out_files *f)
{
	free(f->payload);
	*f = (struct out_files){0};
}
