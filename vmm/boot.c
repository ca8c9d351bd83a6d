/* Direct boot of an ELF vmlinux (the 64-bit boot protocol, Documentation/x86/boot.rst): its
 * PT_LOAD segments at their physical addresses, the zero page with the e820 map and the command
 * line, identity page tables and the boot GDT. No firmware, no setup code, no initrd.
 */
#include <asm/bootparam.h>
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "layout.h"
#include "vmm.h"

#define E820_RAM 1
#define E820_RESERVED 2

int boot_load_elf(struct guest_memory *mem, const uint8_t *image, size_t len, uint64_t *entry)
{
	Elf64_Ehdr eh;
	if (len < sizeof eh)
		return -ENOEXEC;
	memcpy(&eh, image, sizeof eh);
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_machine != EM_X86_64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
		return -ENOEXEC;
	if (eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return -ENOEXEC;
	bool entry_loaded = false;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, image + eh.e_phoff + i * sizeof ph, sizeof ph);
		if (ph.p_type != PT_LOAD)
			continue;
		if (ph.p_filesz > ph.p_memsz || ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
			return -ENOEXEC;
		uint8_t *dst = gpa_ptr(mem, ph.p_paddr, ph.p_memsz);
		if (!dst || ph.p_paddr < LAYOUT_KERNEL_MIN)
			return -ERANGE; /* does not fit in guest RAM above 1 MiB */
		memcpy(dst, image + ph.p_offset, ph.p_filesz);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_filesz)
			entry_loaded = true;
	}
	if (!entry_loaded)
		return -ENOEXEC; /* the entry point is in no loaded segment */
	*entry = eh.e_entry;
	return 0;
}

int boot_write_zero_page(struct guest_memory *mem, const char *cmdline)
{
	size_t cmdline_len = strlen(cmdline);
	char *dst_cmdline = gpa_ptr(mem, LAYOUT_CMDLINE, LAYOUT_CMDLINE_MAX);
	struct boot_params *zp = gpa_ptr(mem, LAYOUT_ZERO_PAGE, sizeof *zp);
	if (!dst_cmdline || !zp)
		return -ERANGE;
	if (cmdline_len >= LAYOUT_CMDLINE_MAX)
		return -E2BIG;
	memcpy(dst_cmdline, cmdline, cmdline_len + 1);

	memset(zp, 0, sizeof *zp);
	zp->hdr.boot_flag = 0xaa55;
	zp->hdr.header = 0x53726448; /* "HdrS" */
	zp->hdr.type_of_loader = 0xff;
	zp->hdr.loadflags = LOADED_HIGH;
	zp->hdr.cmd_line_ptr = LAYOUT_CMDLINE;
	zp->hdr.cmdline_size = (uint32_t)cmdline_len;
	zp->hdr.kernel_alignment = 0x1000000;

	const struct boot_e820_entry map[] = {
		{0, LAYOUT_EBDA_START, E820_RAM},
		{LAYOUT_EBDA_START, LAYOUT_HIGH_MEMORY - LAYOUT_EBDA_START, E820_RESERVED},
		{LAYOUT_HIGH_MEMORY, mem->size - LAYOUT_HIGH_MEMORY, E820_RAM},
	};
	memcpy(zp->e820_table, map, sizeof map);
	zp->e820_entries = sizeof map / sizeof map[0];
	return 0;
}

int boot_write_page_tables(struct guest_memory *mem)
{
	uint64_t *pml4 = gpa_ptr(mem, LAYOUT_PML4, 4096);
	uint64_t *pdpt = gpa_ptr(mem, LAYOUT_PDPT, 4096);
	uint64_t *pd = gpa_ptr(mem, LAYOUT_PD, 4096);
	uint64_t *gdt = gpa_ptr(mem, LAYOUT_GDT, 4 * 8);
	if (!pml4 || !pdpt || !pd || !gdt)
		return -ERANGE;
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	pml4[0] = LAYOUT_PDPT | 0x3; /* present, writable */
	pdpt[0] = LAYOUT_PD | 0x3;
	for (uint64_t i = 0; i < 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00af9b000000ffffULL; /* 0x10: 64-bit code */
	gdt[3] = 0x00cf93000000ffffULL; /* 0x18: data */
	return 0;
}
