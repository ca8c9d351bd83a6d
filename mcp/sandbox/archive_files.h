/* Files into and out of the guest as ustar archives (libarchive). Paths are checked both ways:
 * what the caller sends and what the untrusted guest returns.
 */
#ifndef AIRLOCK_ARCHIVE_FILES_H
#define AIRLOCK_ARCHIVE_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARCHIVE_MAX_PATH 255 /* ustar's prefix + name */

struct file_entry {
	char *path;
	uint8_t *data;
	size_t size;
	bool returned; /* for output files: content included (false: listed only) */
};

struct file_list {
	struct file_entry *items;
	size_t len, cap;
};

/* Adds a copy of path and data. Returns 0 or -ENOMEM. */
int file_list_add(struct file_list *list, const char *path, const void *data, size_t size,
		  bool returned);
void file_list_free(struct file_list *list);

/* Whether path may name a file under /work: relative, no "." or ".." component, no empty
 * component, at most ARCHIVE_MAX_PATH bytes. why says what is wrong. */
bool archive_path_ok(const char *path, char *why, size_t why_len);

/* Packs files into a ustar archive (malloc'd *out). Returns 0 or -errno with err set. */
int archive_pack(const struct file_list *files, uint8_t **out, size_t *out_len, char *err,
		 size_t err_len);
/* Unpacks regular files from a ustar archive into out, at most max_files, in their order: each
 * with its content (returned = true) while the contents so far stay within cap bytes, else listed
 * with its size only (returned = false; nothing is read or allocated for it). Members with unsafe
 * paths or other types are skipped. Sparse members are refused: libarchive would expand them to
 * their logical size. Returns 0, -EPROTO for a bad archive, or -ENOMEM. */
int archive_unpack(const uint8_t *tar, size_t len, size_t max_files, uint64_t cap,
		   struct file_list *out);

#endif
