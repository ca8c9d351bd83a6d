/* A kept state's pages (vmm/pages.c): from a private mapping of a file, exactly the pages this
 * process wrote are written, and applying them over a fresh private mapping gives the same
 * memory; a file that does not fit is refused before anything is copied. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "pages.h"

#define PAGES 64
#define SIZE ((size_t)PAGES * PAGES_PAGE_SIZE)

/* A memory file like a snapshot's: every page filled with its number. */
static int memory_file(void)
{
	int fd = memfd_create("memory", MFD_CLOEXEC);
	uint8_t page[PAGES_PAGE_SIZE];
	for (int i = 0; fd >= 0 && i < PAGES; i++) {
		memset(page, i, sizeof page);
		if (write(fd, page, sizeof page) != (ssize_t)sizeof page)
			return -1;
	}
	return fd;
}

static uint8_t *map_private(int fd)
{
	void *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void only_the_pages_written_are_kept_and_come_back(void)
{
	int mem = memory_file(), pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	CHECK(mem >= 0 && pagemap >= 0);
	uint8_t *vm = map_private(mem);
	CHECK(vm != NULL);
	if (!vm)
		return;
	volatile uint8_t sum = 0;
	for (size_t i = 0; i < SIZE; i += PAGES_PAGE_SIZE)
		sum += vm[i]; /* read: still the file's pages */
	(void)sum;
	vm[3 * PAGES_PAGE_SIZE + 5] = 0xaa;
	memset(vm + 40 * PAGES_PAGE_SIZE, 0, PAGES_PAGE_SIZE); /* zeroed: a change too */
	vm[63 * PAGES_PAGE_SIZE] = 0xbb;
	int out = memfd_create("pages", MFD_CLOEXEC);
	uint64_t count = 0;
	CHECK(pages_write(out, pagemap, vm, SIZE, &count) == 0);
	CHECK(count == 3);
	CHECK(lseek(out, 0, SEEK_END) == PAGES_HEADER_SIZE + 3 * (8 + PAGES_PAGE_SIZE));

	uint8_t *fresh = map_private(mem);
	CHECK(fresh != NULL && lseek(out, 0, SEEK_SET) == 0);
	CHECK(pages_apply(out, fresh, SIZE) == 0);
	CHECK(memcmp(fresh, vm, SIZE) == 0);
	munmap(vm, SIZE);
	munmap(fresh, SIZE);
	close(out);
	close(mem);
	close(pagemap);
}

/* A pages file from parts, for the refusals. */
static int pages_file(uint64_t mem_size, const uint64_t *offsets, uint64_t count, size_t extra)
{
	struct pages_header h = {.version = PAGES_VERSION, .page_size = PAGES_PAGE_SIZE,
				 .mem_size = mem_size, .count = count};
	memcpy(h.magic, PAGES_MAGIC, sizeof h.magic);
	int fd = memfd_create("pages", MFD_CLOEXEC);
	uint8_t page[PAGES_PAGE_SIZE];
	memset(page, 0x5a, sizeof page);
	if (write(fd, &h, sizeof h) != (ssize_t)sizeof h ||
	    write(fd, offsets, count * 8) != (ssize_t)(count * 8))
		return -1;
	for (uint64_t i = 0; i < count; i++)
		if (write(fd, page, sizeof page) != (ssize_t)sizeof page)
			return -1;
	for (size_t i = 0; i < extra; i++)
		if (write(fd, "x", 1) != 1)
			return -1;
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static int refused_untouched(int fd)
{
	static uint8_t ram[SIZE];
	memset(ram, 0, sizeof ram);
	int rc = pages_apply(fd, ram, SIZE);
	close(fd);
	for (size_t i = 0; i < SIZE; i++)
		if (ram[i])
			return 0;
	return rc != 0;
}

static void files_that_do_not_fit_are_refused_whole(void)
{
	const uint64_t good[] = {0, 4096}, unordered[] = {8192, 4096}, twice[] = {4096, 4096},
		       unaligned[] = {0, 4097}, outside[] = {0, SIZE};
	CHECK(refused_untouched(pages_file(SIZE, unordered, 2, 0)));
	CHECK(refused_untouched(pages_file(SIZE, twice, 2, 0)));
	CHECK(refused_untouched(pages_file(SIZE, unaligned, 2, 0)));
	CHECK(refused_untouched(pages_file(SIZE, outside, 2, 0)));
	CHECK(refused_untouched(pages_file(SIZE * 2, good, 2, 0))); /* another RAM size */
	CHECK(refused_untouched(pages_file(SIZE, good, 2, 1)));     /* a byte too many */
	int truncated = pages_file(SIZE, good, 2, 0);
	CHECK(ftruncate(truncated, PAGES_HEADER_SIZE + 16 + PAGES_PAGE_SIZE) == 0);
	CHECK(refused_untouched(truncated));
	const uint64_t many = SIZE / PAGES_PAGE_SIZE + 1; /* more pages than RAM has */
	struct pages_header h = {.version = PAGES_VERSION, .page_size = PAGES_PAGE_SIZE,
				 .mem_size = SIZE, .count = many};
	memcpy(h.magic, PAGES_MAGIC, sizeof h.magic);
	CHECK(pages_check(&h, NULL, PAGES_HEADER_SIZE + many * (8 + PAGES_PAGE_SIZE), SIZE) != 0);
	int fd = pages_file(SIZE, good, 2, 0);
	static uint8_t ram[SIZE];
	CHECK(pages_apply(fd, ram, SIZE) == 0 && ram[0] == 0x5a && ram[4096 + 4095] == 0x5a &&
	      ram[8192] == 0);
	close(fd);
}

int main(void)
{
	TEST(only_the_pages_written_are_kept_and_come_back);
	TEST(files_that_do_not_fit_are_refused_whole);
	return TEST_EXIT_STATUS();
}
