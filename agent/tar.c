/* Just enough ustar for the agent: unpack the request's files under /work, and pack /work/out
 * for the host. The host writes plain ustar (libarchive); anything else is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define BLOCK 512u
#define MEMBER_PATH_MAX (155 + 1 + 100) /* prefix "/" name */

struct ustar_header {
	char name[100];
	char mode[8];
	char uid[8];
	char gid[8];
	char size[12];
	char mtime[12];
	char chksum[8];
	char typeflag;
	char linkname[100];
	char magic[6];
	char version[2];
	char uname[32];
	char gname[32];
	char devmajor[8];
	char devminor[8];
	char prefix[155];
	char pad[12];
};
_Static_assert(sizeof(struct ustar_header) == BLOCK, "ustar header is one block");

static int parse_octal(const char *field, size_t width, uint64_t *value)
{
	uint64_t v = 0;
	size_t i = 0;
	while (i < width && field[i] == ' ')
		i++;
	for (; i < width && field[i] >= '0' && field[i] <= '7'; i++) {
		if (v > (UINT64_MAX >> 3))
			return -1;
		v = (v << 3) | (uint64_t)(field[i] - '0');
	}
	for (; i < width; i++)
		if (field[i] != ' ' && field[i] != '\0')
			return -1;
	*value = v;
	return 0;
}

/* The ustar checksum: the sum of the header's bytes with the checksum field read as spaces. */
static unsigned header_checksum(const struct ustar_header *h)
{
	const unsigned char *p = (const unsigned char *)h;
	unsigned sum = 0;
	for (size_t i = 0; i < BLOCK; i++)
		sum += p[i];
	for (size_t i = 0; i < sizeof h->chksum; i++)
		sum += (unsigned)' ' - (unsigned char)h->chksum[i];
	return sum;
}

static int is_zero_block(const uint8_t *b)
{
	for (size_t i = 0; i < BLOCK; i++)
		if (b[i])
			return 0;
	return 1;
}

/* Accepts a relative path of plain components; rejects "", "/x", ".." anywhere. */
static int path_is_safe(const char *path)
{
	if (path[0] == '\0' || path[0] == '/')
		return 0;
	const char *p = path;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return 0;
		p += n;
		if (*p == '/')
			p++;
	}
	return 1;
}

/* mkdir -p for every parent of rel under dir, owned by uid/gid. */
static int make_parents(const char *full, size_t dir_len, uid_t uid, gid_t gid)
{
	char buf[PATH_MAX];
	size_t len = strlen(full);
	if (len >= sizeof buf)
		return -ENAMETOOLONG;
	memcpy(buf, full, len + 1);
	for (size_t i = dir_len + 1; i < len; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0755) == 0) {
			if (chown(buf, uid, gid) != 0)
				return -errno;
		} else if (errno != EEXIST) {
			return -errno;
		}
		buf[i] = '/';
	}
	return 0;
}

static int write_member(const char *full, const uint8_t *content, uint64_t size, mode_t mode,
			uid_t uid, gid_t gid)
{
	int fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	int rc = 0;
	while (size > 0 && rc == 0) {
		ssize_t n = write(fd, content, size);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		if (n > 0) {
			content += n;
			size -= (uint64_t)n;
		}
	}
	if (rc == 0 && (fchown(fd, uid, gid) != 0 || fchmod(fd, mode) != 0))
		rc = -errno;
	close(fd);
	return rc;
}

/* Reads the header of a member: size and mode parsed, checksum and magic checked. Returns 0 or
 * -EPROTO. */
static int read_header(const struct ustar_header *h, uint64_t *size, uint64_t *mode)
{
	uint64_t chksum;
	if (parse_octal(h->size, sizeof h->size, size) ||
	    parse_octal(h->chksum, sizeof h->chksum, &chksum) ||
	    parse_octal(h->mode, sizeof h->mode, mode) || chksum != header_checksum(h) ||
	    memcmp(h->magic, "ustar", 5) != 0)
		return -EPROTO;
	return 0;
}

/* The member's path: prefix "/" name, without a trailing slash (directories). */
static void member_path(const struct ustar_header *h, char member[MEMBER_PATH_MAX + 1])
{
	size_t plen = strnlen(h->prefix, sizeof h->prefix);
	size_t nlen = strnlen(h->name, sizeof h->name);
	if (plen) {
		memcpy(member, h->prefix, plen);
		member[plen] = '/';
		memcpy(member + plen + 1, h->name, nlen);
		member[plen + 1 + nlen] = '\0';
	} else {
		memcpy(member, h->name, nlen);
		member[nlen] = '\0';
	}
	size_t mlen = strlen(member);
	while (mlen > 0 && member[mlen - 1] == '/')
		member[--mlen] = '\0';
}

int tar_extract(const uint8_t *data, size_t len, const char *dir, uid_t uid, gid_t gid,
		const char **bad_path)
{
	static char member[MEMBER_PATH_MAX + 1];
	size_t dir_len = strlen(dir);
	size_t off = 0;
	*bad_path = NULL;

	while (off + BLOCK <= len) {
		const struct ustar_header *h = (const void *)(data + off);
		if (is_zero_block(data + off))
			return 0;
		uint64_t size, mode;
		if (read_header(h, &size, &mode) != 0)
			return -EPROTO;
		member_path(h, member);
		if (!path_is_safe(member)) {
			*bad_path = member;
			return -EINVAL;
		}

		off += BLOCK;
		uint64_t padded = (size + BLOCK - 1) / BLOCK * BLOCK;
		if (padded < size || padded > len - off)
			return -EPROTO;

		char full[PATH_MAX];
		if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, member) >= sizeof full) {
			*bad_path = member;
			return -ENAMETOOLONG;
		}
		int rc = make_parents(full, dir_len, uid, gid);
		if (rc == 0 && (h->typeflag == '0' || h->typeflag == '\0'))
			rc = write_member(full, data + off, size, (mode_t)(mode & 0755), uid, gid);
		else if (rc == 0 && h->typeflag == '5') {
			if (mkdir(full, 0755) != 0 && errno != EEXIST)
				rc = -errno;
			else if (chown(full, uid, gid) != 0)
				rc = -errno;
		} else if (rc == 0) {
			*bad_path = member; /* links, devices, pax headers: not ours to unpack */
			return -EINVAL;
		}
		if (rc) {
			*bad_path = member;
			return rc;
		}
		off += padded;
	}
	return off == len ? 0 : -EPROTO;
}

int tar_check(const uint8_t *data, size_t len, uint64_t *content, unsigned *files)
{
	char member[MEMBER_PATH_MAX + 1];
	uint64_t sum = 0;
	unsigned count = 0;
	size_t off = 0;
	while (off + BLOCK <= len && !is_zero_block(data + off)) {
		const struct ustar_header *h = (const void *)(data + off);
		uint64_t size, mode;
		if (read_header(h, &size, &mode) != 0 ||
		    (h->typeflag != '0' && h->typeflag != '\0'))
			return -EPROTO;
		member_path(h, member);
		if (!path_is_safe(member))
			return -EPROTO;
		off += BLOCK;
		uint64_t padded = (size + BLOCK - 1) / BLOCK * BLOCK;
		if (padded < size || padded > len - off)
			return -EPROTO;
		off += padded;
		sum += size;
		count++;
	}
	/* the end: exactly the two zero blocks that tar_finish writes */
	if (len - off != 2 * BLOCK || !is_zero_block(data + off) ||
	    !is_zero_block(data + off + BLOCK))
		return -EPROTO;
	*content = sum;
	*files = count;
	return 0;
}

static int writer_reserve(struct tar_writer *w, size_t more)
{
	if (w->len + more <= w->cap)
		return 0;
	size_t cap = w->cap ? w->cap : 4096; /* each page is a fault: most outputs are small */
	while (cap < w->len + more)
		cap *= 2;
	uint8_t *p = realloc(w->data, cap);
	if (!p)
		return -ENOMEM;
	w->data = p;
	w->cap = cap;
	return 0;
}

int tar_add_file(struct tar_writer *w, const char *path, const void *content, size_t size)
{
	struct ustar_header h;
	memset(&h, 0, sizeof h);
	size_t len = strlen(path);
	if (len <= sizeof h.name) {
		memcpy(h.name, path, len);
	} else {
		/* split at a slash so that prefix <= 155 and name <= 100 */
		const char *split = NULL;
		for (const char *s = path; (s = strchr(s, '/')) != NULL; s++) {
			size_t plen = (size_t)(s - path);
			if (plen <= sizeof h.prefix && len - plen - 1 <= sizeof h.name && len - plen > 1) {
				split = s;
				break;
			}
		}
		if (!split)
			return -ENAMETOOLONG;
		memcpy(h.prefix, path, (size_t)(split - path));
		memcpy(h.name, split + 1, len - (size_t)(split - path) - 1);
	}
	snprintf(h.mode, sizeof h.mode, "%07o", 0644);
	snprintf(h.uid, sizeof h.uid, "%07o", 0);
	snprintf(h.gid, sizeof h.gid, "%07o", 0);
	snprintf(h.size, sizeof h.size, "%011llo", (unsigned long long)size);
	snprintf(h.mtime, sizeof h.mtime, "%011o", 0);
	h.typeflag = '0';
	memcpy(h.magic, "ustar", 6);
	memcpy(h.version, "00", 2);
	memset(h.chksum, ' ', sizeof h.chksum);
	snprintf(h.chksum, sizeof h.chksum, "%06o", header_checksum(&h));
	h.chksum[7] = ' ';

	size_t padded = (size + BLOCK - 1) / BLOCK * BLOCK;
	int rc = writer_reserve(w, BLOCK + padded);
	if (rc)
		return rc;
	memcpy(w->data + w->len, &h, BLOCK);
	w->len += BLOCK;
	if (size)
		memcpy(w->data + w->len, content, size);
	memset(w->data + w->len + size, 0, padded - size);
	w->len += padded;
	return 0;
}

int tar_finish(struct tar_writer *w)
{
	int rc = writer_reserve(w, 2 * BLOCK);
	if (rc)
		return rc;
	memset(w->data + w->len, 0, 2 * BLOCK);
	w->len += 2 * BLOCK;
	return 0;
}

void tar_writer_free(struct tar_writer *w)
{
	free(w->data);
	w->data = NULL;
	w->len = w->cap = 0;
}
