/* ustar in and out with libarchive (see archive.h). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"

int file_list_add(struct file_list *list, const char *path, const void *data, size_t size,
		  bool returned)
{
	if (list->len == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 8;
		struct file_entry *items = realloc(list->items, cap * sizeof *items);
		if (!items)
			return -ENOMEM;
		list->items = items;
		list->cap = cap;
	}
	struct file_entry *e = &list->items[list->len];
	e->path = strdup(path);
	e->data = malloc(size ? size : 1);
	if (!e->path || !e->data) {
		free(e->path);
		free(e->data);
		return -ENOMEM;
	}
	if (size)
		memcpy(e->data, data, size);
	e->size = size;
	e->returned = returned;
	list->len++;
	return 0;
}

void file_list_free(struct file_list *list)
{
	for (size_t i = 0; i < list->len; i++) {
		free(list->items[i].path);
		free(list->items[i].data);
	}
	free(list->items);
	memset(list, 0, sizeof *list);
}

bool archive_path_ok(const char *path, char *why, size_t why_len)
{
	size_t len = strlen(path);
	const char *problem = NULL;
	if (len == 0)
		problem = "is empty";
	else if (len > ARCHIVE_MAX_PATH)
		problem = "is longer than 255 bytes";
	else if (path[0] == '/')
		problem = "must be relative to /work";
	else if (path[len - 1] == '/')
		problem = "names a directory, not a file";
	for (const char *p = path; !problem && *p;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 0)
			problem = "has an empty component";
		else if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			problem = "may not contain '.' or '..' components";
		p += n + (slash ? 1 : 0);
	}
	for (const char *p = path; !problem && *p; p++)
		if ((unsigned char)*p < 0x20)
			problem = "contains a control character";
	if (problem)
		snprintf(why, why_len, "%s", problem);
	return problem == NULL;
}

static la_ssize_t sink_write(struct archive *a, void *ctx, const void *buf, size_t len)
{
	(void)a;
	struct archive_memory *s = ctx;
	if (s->len + len > s->cap) {
		size_t cap = s->cap ? s->cap : 65536;
		while (cap < s->len + len)
			cap *= 2;
		uint8_t *p = realloc(s->data, cap);
		if (!p)
			return -1;
		s->data = p;
		s->cap = cap;
	}
	memcpy(s->data + s->len, buf, len);
	s->len += len;
	return (la_ssize_t)len;
}

int archive_write_open_growing(struct archive *a, struct archive_memory *m)
{
	return archive_write_open(a, m, NULL, sink_write, NULL);
}

int archive_pack(const struct file_list *files, uint8_t **out, size_t *out_len, char *err,
		 size_t err_len)
{
	struct archive_memory sink = {0};
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	int rc = 0;
	if (!a || !e || archive_write_set_format_ustar(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
	    archive_write_open_growing(a, &sink) != ARCHIVE_OK) {
		snprintf(err, err_len, "cannot start a tar archive: %s",
			 a ? archive_error_string(a) : "out of memory");
		rc = -ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < files->len; i++) {
		const struct file_entry *f = &files->items[i];
		archive_entry_clear(e);
		archive_entry_set_pathname(e, f->path);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_size(e, (la_int64_t)f->size);
		if (archive_write_header(a, e) != ARCHIVE_OK ||
		    (f->size && archive_write_data(a, f->data, f->size) != (la_ssize_t)f->size)) {
			snprintf(err, err_len, "files: cannot pack %s: %s", f->path,
				 archive_error_string(a));
			rc = -EINVAL;
		}
	}
	if (a && rc == 0 && archive_write_close(a) != ARCHIVE_OK) {
		snprintf(err, err_len, "cannot finish the tar archive: %s", archive_error_string(a));
		rc = -EIO;
	}
	if (e)
		archive_entry_free(e);
	if (a)
		archive_write_free(a);
	if (rc) {
		free(sink.data);
		return rc;
	}
	*out = sink.data;
	*out_len = sink.len;
	return 0;
}

int archive_unpack(const uint8_t *tar, size_t len, size_t max_files, uint64_t cap,
		   struct file_list *out)
{
	struct archive *a = archive_read_new();
	if (!a)
		return -ENOMEM;
	archive_read_support_format_tar(a);
	int rc = 0;
	if (archive_read_open_memory(a, tar, len) != ARCHIVE_OK) {
		archive_read_free(a);
		return -EPROTO;
	}
	uint64_t returned = 0; /* content bytes taken so far: nothing is allocated past cap */
	struct archive_entry *e;
	int r = ARCHIVE_EOF;
	while (rc == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
		/* libarchive expands a sparse entry to its logical size, however few bytes the
		 * archive holds: a small tar could ask for gigabytes. The agent never writes one. */
		if (archive_entry_sparse_count(e) > 0) {
			rc = -EPROTO;
			break;
		}
		const char *path = archive_entry_pathname(e);
		la_int64_t size = archive_entry_size(e);
		char why[64];
		if (!path || archive_entry_filetype(e) != AE_IFREG || size < 0 ||
		    (uint64_t)size > len || !archive_path_ok(path, why, sizeof why))
			continue; /* the guest is not trusted to name files sensibly */
		if (out->len >= max_files)
			break;
		if (returned + (uint64_t)size > cap) { /* listed, its content left unread */
			rc = file_list_add(out, path, NULL, 0, false);
			if (rc == 0)
				out->items[out->len - 1].size = (size_t)size;
			continue;
		}
		uint8_t *data = malloc(size ? (size_t)size : 1);
		if (!data) {
			rc = -ENOMEM;
			break;
		}
		la_ssize_t got = size ? archive_read_data(a, data, (size_t)size) : 0;
		if (got != size)
			rc = -EPROTO;
		else
			rc = file_list_add(out, path, data, (size_t)size, true);
		free(data);
		returned += (uint64_t)size;
	}
	if (rc == 0 && r != ARCHIVE_EOF && out->len < max_files)
		rc = -EPROTO;
	archive_read_free(a);
	return rc;
}
