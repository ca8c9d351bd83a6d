/* airlock run --dir PATH: a host directory packed as the request's files, to become /work; and
 * --repo URL: the bash code that clones a repository into /work/repo inside the VM.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cli.h"

/* What the guest unpacks (agent/tar.c) is regular files and directories only, so that is all the
 * archive holds. The tree is the operator's, but what it holds may not be: a checkout can carry
 * a link to ~/.ssh/id_ed25519. So no symbolic link is ever followed out of PATH. A link is
 * resolved with openat2(RESOLVE_BENEATH) from PATH itself (by hand where there is no openat2):
 * when it names a regular file inside PATH, that file's content is sent under the link's name;
 * a link that is absolute, leaves PATH through "..", leads nowhere or to a directory (which
 * could hold the link itself) is skipped and said on the warning stream, as are fifos, devices
 * and sockets. Hidden names are sent like
 * any other (.git too). Names are sorted, so the same tree makes the same archive.
 */

#define TAR_BLOCK 512u
#define TAR_END (2 * TAR_BLOCK)


struct packer {
	const char *top; /* PATH as given, for messages */
	int root;	 /* PATH, opened once: every link is resolved beneath it */
	FILE *warn;
	struct archive *a;
	struct archive_entry *e;
	struct archive_memory sink;
	size_t max_bytes, max_entries;
	uint64_t bytes; /* the archive's size so far: headers, content, padding, its end */
	size_t entries; /* everything met on the walk, skipped or not */
	bool over;	/* past a cap: go on counting what the tree holds, pack nothing more */
	char *err;
	size_t err_len;
};

/* A name as it may be printed: control bytes as \xNN, so that a file name cannot drive the
 * terminal that reads the warning. */
static void print_name(FILE *f, const char *name)
{
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
}

static void skipped(struct packer *p, const char *rel, const char *why)
{
	if (p->over)
		return; /* the walk only counts now; the refusal is what will be said */
	fprintf(p->warn, "airlock: --dir %s: skipped ", p->top);
	print_name(p->warn, rel);
	fprintf(p->warn, ": %s\n", why);
}

/* What an entry of size bytes adds to the archive; past a cap, the walk only counts. */
static void account(struct packer *p, uint64_t size)
{
	p->bytes += TAR_BLOCK + (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
	if (p->bytes > p->max_bytes)
		p->over = true;
}

static int pack_failed(struct packer *p, const char *rel, const char *what, int rc)
{
	snprintf(p->err, p->err_len, "--dir %s: cannot %s %s: %s", p->top, what, rel,
		 rc ? strerror(-rc) : archive_error_string(p->a));
	return rc ? rc : -EIO;
}

static int write_header(struct packer *p, const char *rel, mode_t type, mode_t perm, uint64_t size)
{
	archive_entry_clear(p->e);
	archive_entry_set_pathname(p->e, rel);
	archive_entry_set_filetype(p->e, type);
	archive_entry_set_perm(p->e, perm);
	archive_entry_set_size(p->e, (la_int64_t)size);
	if (archive_write_header(p->a, p->e) != ARCHIVE_OK)
		return pack_failed(p, rel, "pack", 0);
	return 0;
}

/* Packs the regular file open at fd (its stat st) as rel: exactly st_size bytes, as the header
 * says; a file that shrank under us is an error rather than a padded lie. */
static int pack_file(struct packer *p, const char *rel, int fd, const struct stat *st)
{
	account(p, (uint64_t)st->st_size);
	if (p->over)
		return 0;
	/* the guest keeps the execute bits only (mode & 0755): a script stays runnable */
	int rc = write_header(p, rel, AE_IFREG, (st->st_mode & 0111) ? 0755 : 0644,
			      (uint64_t)st->st_size);
	if (rc)
		return rc;
	char buf[65536];
	uint64_t left = (uint64_t)st->st_size;
	while (left > 0) {
		ssize_t n = read(fd, buf, left < sizeof buf ? (size_t)left : sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pack_failed(p, rel, "read", -errno);
		if (n == 0) {
			snprintf(p->err, p->err_len, "--dir %s: %s changed while it was read",
				 p->top, rel);
			return -EAGAIN;
		}
		if (archive_write_data(p->a, buf, (size_t)n) != n)
			return pack_failed(p, rel, "pack", 0);
		left -= (uint64_t)n;
	}
	return 0;
}

#define LINK_MAX_COMPONENTS 128

/* Without openat2 (before Linux 5.6, or a container filter that refuses it: ENOSYS or EPERM;
 * valgrind too): the link's target resolved by hand from the link's directory. "." and ".."
 * are taken lexically, and ".." may not climb above PATH; each component is then opened with
 * O_NOFOLLOW, so the lexical reading is the true one, and a link on the way (a chain of links)
 * is not followed. Returns an fd, or -errno with *why set for a link that is only skipped. */
static int open_link_by_hand(struct packer *p, const char *rel, const char **why)
{
	char target[PATH_MAX], path[ARCHIVE_MAX_PATH + 2 + PATH_MAX];
	ssize_t n = readlinkat(p->root, rel, target, sizeof target - 1);
	if (n < 0)
		return -errno;
	target[n] = '\0';
	if (target[0] == '/') {
		*why = "an absolute symbolic link (never followed)";
		return -EXDEV;
	}
	const char *slash = strrchr(rel, '/');
	int dir_len = slash ? (int)(slash - rel) : 0;
	snprintf(path, sizeof path, "%.*s/%s", dir_len, rel, target);
	char *parts[LINK_MAX_COMPONENTS], *save = NULL;
	size_t depth = 0;
	for (char *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0 && depth == 0) {
			*why = "a symbolic link that leads out of the directory (never followed)";
			return -EXDEV;
		}
		if (strcmp(c, "..") == 0)
			depth--;
		else if (depth == LINK_MAX_COMPONENTS)
			return -ENAMETOOLONG;
		else
			parts[depth++] = c;
	}
	int fd = dup(p->root);
	for (size_t i = 0; fd >= 0 && i < depth; i++) {
		int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC |
			    (i + 1 < depth ? O_DIRECTORY : 0);
		int next = openat(fd, parts[i], flags);
		if (next < 0 && (errno == ELOOP || errno == ENOTDIR)) {
			struct stat st;
			if (fstatat(fd, parts[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode))
				*why = "a symbolic link to another link, not followed without "
				       "openat2 (Linux 5.6)";
		}
		int err = errno;
		close(fd);
		fd = next;
		errno = err;
	}
	if (fd < 0 && !*why && (errno == ENOENT || errno == ENOTDIR))
		*why = "a symbolic link that leads nowhere";
	return fd < 0 ? -errno : fd;
}

/* Opens what the link rel names, following links only where they stay inside PATH:
 * openat2(RESOLVE_BENEATH) from PATH itself. Returns an fd, or -errno with *why set for a link
 * that is only skipped (one that leaves PATH, leads nowhere, loops). */
static int open_link_target(struct packer *p, const char *rel, const char **why)
{
	struct open_how how = {
	    .flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	*why = NULL;
	int fd = (int)syscall(SYS_openat2, p->root, rel, &how, sizeof how);
	if (fd < 0 && (errno == ENOSYS || errno == EPERM))
		return open_link_by_hand(p, rel, why);
	if (fd >= 0)
		return fd;
	int rc = -errno;
	char target[2];
	switch (rc) {
	case -EXDEV:
		*why = readlinkat(p->root, rel, target, sizeof target) > 0 && target[0] == '/'
			   ? "an absolute symbolic link (never followed)"
			   : "a symbolic link that leads out of the directory (never followed)";
		break;
	case -ENOENT:
	case -ENOTDIR:
		*why = "a symbolic link that leads nowhere";
		break;
	case -ELOOP:
		*why = "a symbolic link in a loop";
		break;
	}
	return rc;
}

static int pack_link(struct packer *p, const char *rel)
{
	const char *why;
	int fd = open_link_target(p, rel, &why);
	if (fd < 0 && why) {
		/* past a cap, its target is counted where it lies, if inside */
		skipped(p, rel, why);
		return 0;
	}
	if (fd < 0)
		return pack_failed(p, rel, "open", fd);
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0)
		rc = pack_failed(p, rel, "stat", -errno);
	else if (S_ISREG(st.st_mode))
		rc = pack_file(p, rel, fd, &st);
	else if (S_ISDIR(st.st_mode))
		skipped(p, rel,
			"a symbolic link to a directory (not copied; it could hold itself)");
	else
		skipped(p, rel, "a symbolic link to a fifo, device or socket");
	close(fd);
	return rc;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The names in the directory open at dir, sorted, without "." and "..". Stops past the entry
 * cap (p->over then). Returns 0 or -errno. */
static int list_names(struct packer *p, DIR *dir, char ***out, size_t *count)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *d;
	errno = 0;
	while ((d = readdir(dir)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (p->entries + n >= p->max_entries) {
			p->entries += n + 1; /* one past the cap is enough to say "more than" */
			p->over = true;
			free_names(names, n);
			return 1;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			char **more = realloc(names, cap * sizeof *names);
			if (!more) {
				free_names(names, n);
				return -ENOMEM;
			}
			names = more;
		}
		if (!(names[n] = strdup(d->d_name))) {
			free_names(names, n);
			return -ENOMEM;
		}
		n++;
		errno = 0;
	}
	if (errno) {
		int rc = -errno;
		free_names(names, n);
		return rc;
	}
	if (n)
		qsort(names, n, sizeof *names, compare_names);
	*out = names;
	*count = n;
	return 0;
}

static int pack_tree(struct packer *p, int dir_fd, char *rel, size_t rel_len);

/* One entry of the directory open at dir_fd: rel holds its path under PATH (rel_len bytes). */
static int pack_entry(struct packer *p, int dir_fd, const char *name, char *rel, size_t rel_len)
{
	struct stat st;
	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : pack_failed(p, rel, "stat", -errno); /* gone: fine */
	if (S_ISLNK(st.st_mode))
		return pack_link(p, rel);
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		skipped(p, rel, "not a regular file or directory (a fifo, device or socket)");
		return 0;
	}
	if (p->over && S_ISREG(st.st_mode)) {
		account(p, (uint64_t)st.st_size); /* counting only: no need to open it */
		return 0;
	}
	/* O_NOFOLLOW and O_NONBLOCK: swapped for a link or a fifo since the stat, it is refused
	 * or met without blocking, then seen for what it is by fstat */
	int fd = openat(dir_fd, name,
			O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC |
			    (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
		return pack_link(p, rel); /* it became a link since the stat */
	if (fd < 0)
		return pack_failed(p, rel, "open", -errno);
	int rc = 0;
	if (fstat(fd, &st) != 0) {
		rc = pack_failed(p, rel, "stat", -errno);
	} else if (S_ISDIR(st.st_mode)) {
		account(p, 0);
		if (!p->over)
			rc = write_header(p, rel, AE_IFDIR, 0755, 0);
		if (rc == 0) {
			rc = pack_tree(p, fd, rel, rel_len); /* takes fd */
			fd = -1;
		}
	} else if (S_ISREG(st.st_mode)) {
		rc = pack_file(p, rel, fd, &st);
	} else {
		skipped(p, rel, "not a regular file or directory (a fifo, device or socket)");
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Packs what the directory open at dir_fd holds (closing dir_fd); rel is its path under PATH
 * ("" for PATH), in a buffer of ARCHIVE_MAX_PATH + 1 bytes. */
static int pack_tree(struct packer *p, int dir_fd, char *rel, size_t rel_len)
{
	DIR *dir = fdopendir(dir_fd);
	if (!dir) {
		int rc = pack_failed(p, rel_len ? rel : ".", "list", -errno);
		close(dir_fd);
		return rc;
	}
	char **names = NULL;
	size_t count = 0;
	int rc = list_names(p, dir, &names, &count);
	if (rc < 0)
		rc = pack_failed(p, rel_len ? rel : ".", "list", rc);
	if (rc != 0) { /* 1: past the entry cap */
		closedir(dir);
		return rc < 0 ? rc : 0;
	}
	p->entries += count;
	for (size_t i = 0; rc == 0 && i < count && p->entries <= p->max_entries; i++) {
		size_t name_len = strlen(names[i]);
		size_t len = rel_len + (rel_len ? 1 : 0) + name_len;
		if (len > ARCHIVE_MAX_PATH) {
			snprintf(
			    p->err, p->err_len,
			    "--dir %s: the path of %s/%s is longer than the archive's %d bytes",
			    p->top, rel_len ? rel : ".", names[i], ARCHIVE_MAX_PATH);
			rc = -ENAMETOOLONG;
			break;
		}
		if (rel_len)
			rel[rel_len] = '/';
		memcpy(rel + rel_len + (rel_len ? 1 : 0), names[i], name_len + 1);
		rc = pack_entry(p, dirfd(dir), names[i], rel, len);
		rel[rel_len] = '\0';
	}
	free_names(names, count);
	closedir(dir);
	return rc;
}

/* The --put files, after the tree: the guest unpacks in order, so each wins over a file of the
 * same name. */
static int pack_put(struct packer *p, const struct file_list *put)
{
	for (size_t i = 0; i < put->len; i++) {
		const struct file_entry *f = &put->items[i];
		p->entries++;
		account(p, f->size);
		if (p->over || p->entries > p->max_entries) {
			p->over = true;
			continue;
		}
		int rc = write_header(p, f->path, AE_IFREG, 0644, f->size);
		if (rc == 0 && f->size &&
		    archive_write_data(p->a, f->data, f->size) != (la_ssize_t)f->size)
			rc = pack_failed(p, f->path, "pack", 0);
		if (rc)
			return rc;
	}
	return 0;
}

int run_dir_pack(const char *path, const struct file_list *put, size_t max_bytes,
		 size_t max_entries, FILE *warn, uint8_t **tar, size_t *tar_len, char *err,
		 size_t err_len)
{
	struct packer p = {.top = path,
			   .warn = warn,
			   .max_bytes = max_bytes,
			   .max_entries = max_entries,
			   .bytes = TAR_END,
			   .err = err,
			   .err_len = err_len};
	char rel[ARCHIVE_MAX_PATH + 1] = "";
	int rc = 0;
	p.root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (p.root < 0) {
		rc = -errno;
		snprintf(err, err_len, "--dir %s: %s", path, strerror(-rc));
		return rc;
	}
	p.a = archive_write_new();
	p.e = archive_entry_new();
	if (!p.a || !p.e || archive_write_set_format_ustar(p.a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(p.a, 1) != ARCHIVE_OK ||
	    archive_write_open_growing(p.a, &p.sink) != ARCHIVE_OK) {
		snprintf(err, err_len, "--dir %s: cannot start a tar archive: %s", path,
			 p.a ? archive_error_string(p.a) : "out of memory");
		rc = -ENOMEM;
	}
	int top_fd = rc == 0 ? dup(p.root) : -1;
	if (rc == 0 && top_fd < 0) {
		rc = -errno;
		snprintf(err, err_len, "--dir %s: %s", path, strerror(-rc));
	}
	if (rc == 0)
		rc = pack_tree(&p, top_fd, rel, 0);
	if (rc == 0)
		rc = pack_put(&p, put);
	if (rc == 0 && p.entries > max_entries) {
		snprintf(err, err_len,
			 "--dir %s: more than %zu files, directories and links; a run takes at "
			 "most %zu",
			 path, max_entries, max_entries);
		rc = -E2BIG;
	} else if (rc == 0 && p.over) {
		snprintf(err, err_len,
			 "--dir %s: %.1f MiB as an archive (%llu bytes), over the limit of %.0f "
			 "MiB (%zu bytes)",
			 path, (double)p.bytes / (1 << 20), (unsigned long long)p.bytes,
			 (double)max_bytes / (1 << 20), max_bytes);
		rc = -EFBIG;
	}
	if (rc == 0 && archive_write_close(p.a) != ARCHIVE_OK) {
		snprintf(err, err_len, "--dir %s: cannot finish the tar archive: %s", path,
			 archive_error_string(p.a));
		rc = -EIO;
	}
	if (p.e)
		archive_entry_free(p.e);
	if (p.a)
		archive_write_free(p.a);
	close(p.root);
	if (rc) {
		free(p.sink.data);
		return rc;
	}
	*tar = p.sink.data;
	*tar_len = p.sink.len;
	return 0;
}

/* Single quotes for bash: each ' becomes '\'' (close, an escaped quote, reopen). */
static size_t quote_into(char *out, const char *s)
{
	size_t n = 0;
	out[n++] = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(out + n, "'\\''", 4);
			n += 4;
		} else {
			out[n++] = *s;
		}
	}
	out[n++] = '\'';
	return n;
}

int run_repo_code(const char *url, const char *cmd, char **code, char *err, size_t err_len)
{
	const char *host = NULL;
	if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	if (!host || !*host || *host == '/') {
		snprintf(err, err_len, "--repo wants an http:// or https:// URL with a host");
		return -EINVAL;
	}
	for (const unsigned char *c = (const unsigned char *)url; *c; c++)
		if (*c <= ' ' || *c == 0x7f) {
			snprintf(err, err_len,
				 "--repo: the URL holds a space or a control character");
			return -EINVAL;
		}
	/* the command runs as `bash -c CMD` would, in the clone: a CMD of "a || b" cannot reach
	 * back into the clone's && chain */
	static const char clone[] = "git clone --depth 1 -- ", dest[] =
								   " /work/repo && cd "
								   "/work/repo && exec bash -c ";
	size_t len = sizeof clone + sizeof dest + 4 * (strlen(url) + strlen(cmd)) + 8;
	char *s = malloc(len);
	if (!s) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	size_t n = 0;
	memcpy(s, clone, sizeof clone - 1);
	n += sizeof clone - 1;
	n += quote_into(s + n, url);
	memcpy(s + n, dest, sizeof dest - 1);
	n += sizeof dest - 1;
	n += quote_into(s + n, cmd);
	s[n++] = '\n';
	s[n] = '\0';
	*code = s;
	return 0;
}
