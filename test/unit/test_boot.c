/* Direct boot: ELF loading (good, truncated, hostile segments), the zero page and the page
 * tables. No KVM: guest memory is a plain buffer. */
#include <asm/bootparam.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "layout.h"
#include "vmm.h"

#define MEM_SIZE (64u << 20)

static struct guest_memory mem;

/* An ELF with one PT_LOAD of `filesz` bytes (memsz = filesz + bss) at paddr. */
static size_t make_elf(uint8_t *buf, uint64_t paddr, uint64_t filesz, uint64_t bss, uint64_t entry)
{
	Elf64_Ehdr eh = {0};
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_entry = entry;
	eh.e_phoff = sizeof eh;
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 1;
	Elf64_Phdr ph = {.p_type = PT_LOAD, .p_offset = 4096, .p_paddr = paddr, .p_filesz = filesz,
			 .p_memsz = filesz + bss};
	memcpy(buf, &eh, sizeof eh);
	memcpy(buf + sizeof eh, &ph, sizeof ph);
	memset(buf + 4096, 0xab, filesz);
	return 4096 + filesz;
}

static void fresh(void)
{
	if (!mem.host) {
		mem.host = malloc(MEM_SIZE);
		mem.size = MEM_SIZE;
	}
	memset(mem.host, 0x55, MEM_SIZE);
}

static void loads_segments_at_their_physical_addresses(void)
{
	fresh();
	static uint8_t image[8192];
	size_t len = make_elf(image, 0x1000000, 100, 50, 0x1000000);
	uint64_t entry = 0;
	CHECK(boot_load_elf(&mem, image, len, &entry) == 0);
	CHECK(entry == 0x1000000);
	CHECK(mem.host[0x1000000] == 0xab && mem.host[0x1000000 + 99] == 0xab);
	CHECK(mem.host[0x1000000 + 100] == 0 && mem.host[0x1000000 + 149] == 0); /* bss zeroed */
	CHECK(mem.host[0x1000000 + 150] == 0x55);
}

static void refuses_bad_images(void)
{
	static uint8_t image[8192];
	uint64_t entry;
	fresh();
	size_t len = make_elf(image, 0x1000000, 100, 0, 0x1000000);
	CHECK(boot_load_elf(&mem, image, 10, &entry) == -ENOEXEC);        /* truncated header */
	CHECK(boot_load_elf(&mem, image, len - 1, &entry) == -ENOEXEC);   /* truncated segment */
	image[EI_CLASS] = ELFCLASS32;
	CHECK(boot_load_elf(&mem, image, len, &entry) == -ENOEXEC);
	make_elf(image, MEM_SIZE - 50, 100, 0, MEM_SIZE - 50); /* past the end of RAM */
	CHECK(boot_load_elf(&mem, image, len, &entry) == -ERANGE);
	make_elf(image, 0x1000000, 100, 0xffffffffffff0000ULL, 0x1000000); /* huge bss */
	CHECK(boot_load_elf(&mem, image, len, &entry) == -ERANGE);
	make_elf(image, 0x1000, 100, 0, 0x1000); /* below 1 MiB: over the zero page */
	CHECK(boot_load_elf(&mem, image, len, &entry) == -ERANGE);
	make_elf(image, 0x1000000, 100, 0, 0x2000000); /* entry in no segment */
	CHECK(boot_load_elf(&mem, image, len, &entry) == -ENOEXEC);
	make_elf(image, 0x1000000, 100, 0, 0x1000000);
	Elf64_Ehdr eh;
	memcpy(&eh, image, sizeof eh);
	eh.e_phnum = 0xffff; /* program headers past the file */
	memcpy(image, &eh, sizeof eh);
	CHECK(boot_load_elf(&mem, image, len, &entry) == -ENOEXEC);
}

static void writes_the_zero_page(void)
{
	fresh();
	const char *cmdline = "console=ttyS0 root=/dev/vda ro";
	CHECK(boot_write_zero_page(&mem, cmdline) == 0);
	struct boot_params *zp = (struct boot_params *)(mem.host + LAYOUT_ZERO_PAGE);
	CHECK(zp->hdr.boot_flag == 0xaa55 && zp->hdr.header == 0x53726448);
	CHECK(zp->hdr.cmd_line_ptr == LAYOUT_CMDLINE);
	CHECK(strcmp((char *)mem.host + LAYOUT_CMDLINE, cmdline) == 0);
	CHECK(zp->e820_entries == 3);
	CHECK(zp->e820_table[0].addr == 0 && zp->e820_table[0].type == 1);
	CHECK(zp->e820_table[1].type == 2);
	CHECK(zp->e820_table[2].addr == 0x100000 && zp->e820_table[2].size == MEM_SIZE - 0x100000);
	char too_long[LAYOUT_CMDLINE_MAX + 1];
	memset(too_long, 'x', sizeof too_long - 1);
	too_long[sizeof too_long - 1] = '\0';
	CHECK(boot_write_zero_page(&mem, too_long) == -E2BIG);
	struct guest_memory tiny = {mem.host, LAYOUT_ZERO_PAGE}; /* zero page outside RAM */
	CHECK(boot_write_zero_page(&tiny, cmdline) == -ERANGE);
}

static void writes_identity_page_tables(void)
{
	fresh();
	CHECK(boot_write_page_tables(&mem) == 0);
	uint64_t *pml4 = (uint64_t *)(mem.host + LAYOUT_PML4);
	uint64_t *pd = (uint64_t *)(mem.host + LAYOUT_PD);
	CHECK(pml4[0] == (LAYOUT_PDPT | 3) && pml4[1] == 0);
	CHECK(pd[0] == 0x83 && pd[8] == ((8ULL << 21) | 0x83) && pd[511] == ((511ULL << 21) | 0x83));
	uint64_t *gdt = (uint64_t *)(mem.host + LAYOUT_GDT);
	CHECK(gdt[2] == 0x00af9b000000ffffULL && gdt[3] == 0x00cf93000000ffffULL);
}

int main(void)
{
	TEST(loads_segments_at_their_physical_addresses);
	TEST(refuses_bad_images);
	TEST(writes_the_zero_page);
	TEST(writes_identity_page_tables);
	free(mem.host);
	return TEST_EXIT_STATUS();
}
