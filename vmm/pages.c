/* A kept state's changed pages (pages.h): written from a private mapping's anonymous pages,
 * applied over a fresh private mapping. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pages.h"

/* /proc/PID/pagemap, one u64 per page (Documentation/admin-guide/mm/pagemap.rst) */
#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_SWAPPED (1ull << 62)
#define PAGEMAP_FILE (1ull << 61) /* a file page or shared anonymous: not a private copy */
#define PAGEMAP_CHUNK 4096u       /* entries read at a time */
#define WRITE_BATCH 64u           /* pages per writev */

int pages_check(const struct pages_header *h, const uint64_t *index, uint64_t file_size,
		uint64_t mem_size)
{
	if (memcmp(h->magic, PAGES_MAGIC, sizeof h->magic) != 0 || h->version != PAGES_VERSION ||
	    h->page_size != PAGES_PAGE_SIZE || h->mem_size != mem_size ||
	    mem_size % PAGES_PAGE_SIZE != 0 || h->count > mem_size / PAGES_PAGE_SIZE)
		return -EINVAL;
	/* count is at most mem_size / 4096, so this cannot overflow for any real RAM size */
	if (file_size != PAGES_HEADER_SIZE + h->count * (8 + PAGES_PAGE_SIZE))
		return -EINVAL;
	for (uint64_t i = 0; index && i < h->count; i++) {
		if (index[i] % PAGES_PAGE_SIZE != 0 || index[i] >= mem_size ||
		    (i > 0 && index[i] <= index[i - 1]))
			return -EINVAL;
	}
	return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_exactly(int fd, void *data, size_t len)
{
	uint8_t *p = data;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EINVAL; /* shorter than its header says */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The offsets of the private copies in mem, from pagemap. Returns 0 with a malloc'd *index. */
static int find_own_pages(int pagemap_fd, const uint8_t *mem, uint64_t mem_size,
			  uint64_t **index, uint64_t *count)
{
	uint64_t pages = mem_size / PAGES_PAGE_SIZE, n = 0;
	uint64_t *found = malloc((pages ? pages : 1) * sizeof *found);
	uint64_t *entries = malloc(PAGEMAP_CHUNK * sizeof *entries);
	int rc = found && entries ? 0 : -ENOMEM;
	uint64_t first = (uintptr_t)mem / PAGES_PAGE_SIZE;
	for (uint64_t at = 0; rc == 0 && at < pages; at += PAGEMAP_CHUNK) {
		uint64_t want = pages - at < PAGEMAP_CHUNK ? pages - at : PAGEMAP_CHUNK;
		ssize_t got = pread(pagemap_fd, entries, want * sizeof *entries,
				    (off_t)((first + at) * sizeof *entries));
		if (got != (ssize_t)(want * sizeof *entries)) {
			rc = got < 0 ? -errno : -EIO;
			break;
		}
		for (uint64_t i = 0; i < want; i++) {
			uint64_t e = entries[i];
			bool own = (e & PAGEMAP_SWAPPED) || ((e & PAGEMAP_PRESENT) && !(e & PAGEMAP_FILE));
			if (own)
				found[n++] = (at + i) * PAGES_PAGE_SIZE;
		}
	}
	free(entries);
	if (rc) {
		free(found);
		return rc;
	}
	*index = found;
	*count = n;
	return 0;
}

int pages_write(int out_fd, int pagemap_fd, const uint8_t *mem, uint64_t mem_size,
		uint64_t *count)
{
	uint64_t *index, n;
	int rc = find_own_pages(pagemap_fd, mem, mem_size, &index, &n);
	if (rc)
		return rc;
	struct pages_header h = {.version = PAGES_VERSION, .page_size = PAGES_PAGE_SIZE,
				 .mem_size = mem_size, .count = n};
	memcpy(h.magic, PAGES_MAGIC, sizeof h.magic);
	rc = write_all(out_fd, &h, sizeof h);
	if (rc == 0 && n)
		rc = write_all(out_fd, index, n * sizeof *index);
	for (uint64_t i = 0; rc == 0 && i < n;) {
		struct iovec iov[WRITE_BATCH];
		unsigned k = 0;
		for (; k < WRITE_BATCH && i + k < n; k++)
			iov[k] = (struct iovec){(void *)(mem + index[i + k]), PAGES_PAGE_SIZE};
		size_t len = (size_t)k * PAGES_PAGE_SIZE;
		ssize_t w = writev(out_fd, iov, (int)k);
		if (w == (ssize_t)len) {
			i += k;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = -errno;
			break;
		}
		/* a short write: the rest of the batch page by page */
		size_t done = (size_t)w;
		for (unsigned j = 0; rc == 0 && j < k; j++) {
			size_t page_start = (size_t)j * PAGES_PAGE_SIZE;
			if (done >= page_start + PAGES_PAGE_SIZE)
				continue;
			size_t skip = done > page_start ? done - page_start : 0;
			rc = write_all(out_fd, mem + index[i + j] + skip, PAGES_PAGE_SIZE - skip);
		}
		i += k;
	}
	if (rc == 0 && count)
		*count = n;
	free(index);
	return rc;
}

int pages_apply(int in_fd, uint8_t *mem, uint64_t mem_size)
{
	struct stat st;
	struct pages_header h;
	if (fstat(in_fd, &st) != 0)
		return -errno;
	int rc = read_exactly(in_fd, &h, sizeof h);
	if (rc)
		return rc;
	if ((rc = pages_check(&h, NULL, (uint64_t)st.st_size, mem_size)) != 0)
		return rc;
	uint64_t *index = malloc((h.count ? h.count : 1) * sizeof *index);
	if (!index)
		return -ENOMEM;
	rc = read_exactly(in_fd, index, h.count * sizeof *index);
	if (rc == 0)
		rc = pages_check(&h, index, (uint64_t)st.st_size, mem_size);
	for (uint64_t i = 0; rc == 0 && i < h.count; i++)
		rc = read_exactly(in_fd, mem + index[i], PAGES_PAGE_SIZE);
	free(index);
	return rc;
}
