/* A kept state's RAM: only the pages a VM changed since it was restored from its snapshot.
 *
 * A restored VM maps its snapshot's memory file private, so the pages it wrote (and only those)
 * are anonymous copies in that mapping: /proc/self/pagemap tells them apart from the file's
 * pages. A pages file holds those pages; restoring it means mapping the snapshot's memory file
 * private again and copying the pages over it before the vCPU runs. Both backends use it: the
 * preload inside QEMU (mcp/backend/tcg/qemu_preload.c) and airlock-vmm.
 *
 * Format (little-endian, the host's layout):
 *
 *     offset  size       field
 *     0       8          magic "ALCKPAGE"
 *     8       4          version (PAGES_VERSION)
 *     12      4          page size (PAGES_PAGE_SIZE)
 *     16      8          mem_size: the guest RAM the pages belong to, in bytes
 *     24      8          count: the pages that follow
 *     32      8 * count  each page's offset in guest RAM: page-aligned, below mem_size, each
 *                        larger than the one before
 *     ...     4096 * count  the pages, in the index's order
 *
 * and nothing after. A pages file is checked whole (its size, the header, the index) before any
 * page is copied: a file that does not fit is refused, never half-applied.
 */
#ifndef AIRLOCK_PAGES_H
#define AIRLOCK_PAGES_H

#include <stddef.h>
#include <stdint.h>

#define PAGES_MAGIC "ALCKPAGE"
#define PAGES_VERSION 1u
#define PAGES_PAGE_SIZE 4096u
#define PAGES_HEADER_SIZE 32u

struct pages_header {
	char magic[8];
	uint32_t version;
	uint32_t page_size;
	uint64_t mem_size;
	uint64_t count;
};
_Static_assert(sizeof(struct pages_header) == PAGES_HEADER_SIZE, "the header has no padding");

/* Whether a pages file of file_size bytes with header h (as read) and index (h->count offsets)
 * fits guest RAM of mem_size bytes. Returns 0 or -EINVAL. index may be NULL to check the header
 * and the size alone. */
int pages_check(const struct pages_header *h, const uint64_t *index, uint64_t file_size,
		uint64_t mem_size);

/* Writes the pages of mem (mem_size bytes, mapped private from a memory file) that are the
 * process's own copies, as pagemap_fd (/proc/self/pagemap, open) shows them, into out_fd.
 * Returns 0 or -errno. *count gets the pages written, when not NULL. */
int pages_write(int out_fd, int pagemap_fd, const uint8_t *mem, uint64_t mem_size,
		uint64_t *count);

/* Checks the pages file in_fd whole, then copies its pages into mem (mem_size bytes). Returns 0,
 * -EINVAL for a file that does not fit (nothing copied), or -errno. */
int pages_apply(int in_fd, uint8_t *mem, uint64_t mem_size);

#endif
