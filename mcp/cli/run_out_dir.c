/* airlock run --out DIR: the files the program left in /work/out, written under DIR: only new
 * files, never over one that exists, through a symbolic link or under a hidden name.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "protocol.h"
#include "cli.h"

int run_write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The names are the guest's, so the directory is treated as the guest's adversary would: no
 * file is written outside DIR, through a symbolic link, over a file that exists, or under a
 * hidden name (.git/config, .envrc, .bashrc configure tools that run later in that directory).
 * Each file not written is said on stderr and, with --json, listed in "out_skipped".
 */

/* openat2() confined to dirfd: nothing outside it, no symbolic link anywhere on the way. On a
 * kernel without openat2 (before 5.6), or a container filter that refuses it (ENOSYS or
 * EPERM), openat() with O_NOFOLLOW holds the same here: callers pass one component that
 * archive_path_ok() accepted (no '/', no ".."). Returns an fd or -errno (-ELOOP for a link). */
static int open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, dirfd, name, &how, sizeof how);
	if (fd < 0 && (errno == ENOSYS || errno == EPERM))
		fd = openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW, mode);
	return fd < 0 ? -errno : fd;
}

/* Why name under dir could not be opened with err; a symbolic link is named as such whatever
 * the error (openat2 says ELOOP, openat's O_DIRECTORY ENOTDIR, O_EXCL EEXIST). */
static const char *open_failure(int dir, const char *name, int err)
{
	struct stat st;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
		return "a symbolic link is on its way or in its place (never followed)";
	switch (err) {
	case -ELOOP: return "a symbolic link is on its way or in its place (never followed)";
	case -ENOTDIR: return "a file on its way is not a directory";
	case -EEXIST: return "it exists on the host (never overwritten)";
	case -EXDEV: return "it would leave the output directory";
	default: return strerror(-err);
	}
}

/* Writes one file under root, creating the directories on its way. Returns 0, or -errno with
 * why saying what stopped it. */
static int save_one(int root, const struct file_entry *f, const char **why)
{
	char path[ARCHIVE_MAX_PATH + 1], problem[128];
	if (strlen(f->path) > ARCHIVE_MAX_PATH || !archive_path_ok(f->path, problem, sizeof problem)) {
		*why = "its path is not a safe relative path"; /* unpacking checked it: defence */
		return -EINVAL;
	}
	/* no empty component (checked above): a component starts with '.' just where these are */
	if (f->path[0] == '.' || strstr(f->path, "/.")) {
		*why = "a hidden name (starting with '.'): such files configure tools";
		return -EPERM;
	}
	strcpy(path, f->path);
	int dir = root, rc = 0;
	char *name = path;
	for (char *slash; (slash = strchr(name, '/')) != NULL; name = slash + 1) {
		*slash = '\0';
		int next = open_beneath(dir, name, O_RDONLY | O_DIRECTORY, 0);
		if (next == -ENOENT) {
			/* mkdirat never follows a link in place of name: EEXIST, then ELOOP below */
			if (mkdirat(dir, name, 0755) != 0 && errno != EEXIST)
				next = -errno;
			else
				next = open_beneath(dir, name, O_RDONLY | O_DIRECTORY, 0);
		}
		if (next < 0) {
			*why = open_failure(dir, name, next);
			if (dir != root)
				close(dir);
			return next;
		}
		if (dir != root)
			close(dir);
		dir = next;
	}
	int fd = open_beneath(dir, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0) {
		*why = open_failure(dir, name, fd);
		rc = fd;
	} else {
		rc = run_write_all(fd, f->data, f->size);
		if (close(fd) != 0 && rc == 0)
			rc = -errno;
		if (rc != 0) {
			*why = strerror(-rc);
			unlinkat(dir, name, 0); /* ours, just made: no half file left behind */
		}
	}
	if (dir != root)
		close(dir);
	return rc;
}

/* The guest's name made fit for a terminal and for JSON: UTF-8 (what is not becomes U+FFFD),
 * control characters (C0, DEL, C1) as \xNN. NULL when out of memory. */
static char *display_name(const char *path)
{
	size_t len;
	char *utf8 = utf8_sanitize((const uint8_t *)path, strlen(path), &len);
	char *out = utf8 ? malloc(len * 4 + 1) : NULL;
	size_t o = 0;
	for (size_t i = 0; out && i < len; i++) {
		unsigned char c = (unsigned char)utf8[i];
		if (c == 0xc2 && i + 1 < len && (unsigned char)utf8[i + 1] < 0xa0) {
			o += (size_t)sprintf(out + o, "\\x%02x", (unsigned char)utf8[++i]);
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)sprintf(out + o, "\\x%02x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	if (out)
		out[o] = '\0';
	free(utf8);
	return out;
}

static void report_skipped(const struct file_entry *f, const char *name, const char *why,
			   json_t *skipped)
{
	fprintf(stderr, "airlock: --out: did not write %s (%zu bytes): %s\n", name, f->size, why);
	if (skipped)
		json_array_append_new(skipped,
				      json_pack("{s:s, s:s}", "path", name, "reason", why));
}

/* Writes the returned output files under dir (see above); skipped, when not NULL, gets a
 * {path, reason} for each file not written. */
void run_save_output_files(const char *dir, const struct file_list *files, json_t *skipped)
{
	char why[PATH_MAX + 64] = "";
	int root = -1;
	/* dir is the user's own choice: its path is followed as given */
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		snprintf(why, sizeof why, "cannot create %s: %s", dir, strerror(errno));
	else if ((root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		snprintf(why, sizeof why, "cannot open %s: %s", dir, strerror(errno));
	for (size_t i = 0; i < files->len; i++) {
		const struct file_entry *f = &files->items[i];
		const char *reason = why;
		char limit[96];
		char *name = display_name(f->path);
		if (!name) {
			fprintf(stderr, "airlock: --out: out of memory\n");
			break;
		}
		if (!f->returned) {
			snprintf(limit, sizeof limit, "not returned: over the %u MiB limit for "
				 "output files", CALL_OUT_FILES_CAP >> 20);
			reason = limit;
		} else if (strcmp(name, f->path) != 0) {
			/* a name that a terminal or a script may take for something else */
			reason = "a name with control characters or bytes that are not UTF-8";
		} else if (root >= 0 && save_one(root, f, &reason) == 0) {
			free(name);
			continue;
		}
		report_skipped(f, name, reason, skipped);
		free(name);
	}
	if (root >= 0)
		close(root);
}
