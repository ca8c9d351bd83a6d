/* libFuzzer target: a kept state's pages file (vmm/pages.h), as airlock-vmm and the preload in
 * QEMU restore it: pages_apply() over a small guest RAM, from a file holding the input. The file
 * is airlock's own and MACed, so only a bug or a tampered store could make it hostile; the
 * restore checks it whole all the same, and this proves the order that promises: an input it
 * refuses leaves RAM untouched (never half-applied), and one it takes writes exactly the pages
 * its index names, with exactly their bytes.
 *
 * Input: the pages file. The first input byte's low bits also pick the RAM size (64-512 KiB:
 * small, so that each input is cheap), so that both the file's mem_size and the index's bound
 * are reached. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pages.h"

static uint8_t *ram;
static size_t ram_cap;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t mem_size = ((size ? (data[0] & 7u) : 0) + 1) << 16;
	if (!ram) {
		ram_cap = 8u << 16;
		ram = malloc(ram_cap);
		if (!ram)
			abort();
	}
	memset(ram, 0, mem_size);
	int fd = memfd_create("pages", MFD_CLOEXEC);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	int rc = pages_apply(fd, ram, mem_size);
	close(fd);
	if (rc != 0) {
		for (size_t i = 0; i < mem_size; i++)
			if (ram[i])
				abort(); /* refused, yet something was copied */
		return 0;
	}
	struct pages_header h;
	memcpy(&h, data, sizeof h); /* taken: the header and the index are there */
	const uint8_t *index = data + sizeof h, *pages = index + h.count * 8;
	for (uint64_t i = 0; i < h.count; i++) {
		uint64_t offset;
		memcpy(&offset, index + i * 8, sizeof offset);
		if (offset >= mem_size || memcmp(ram + offset, pages + i * PAGES_PAGE_SIZE,
						 PAGES_PAGE_SIZE) != 0)
			abort();
	}
	return 0;
}
