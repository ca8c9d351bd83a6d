/* The guest-physical memory map of an airlock microVM, as named constants. */
#ifndef AIRLOCK_LAYOUT_H
#define AIRLOCK_LAYOUT_H

#define LAYOUT_GDT 0x500          /* boot GDT: null, null, code (0x10), data (0x18) */
#define LAYOUT_ZERO_PAGE 0x7000   /* struct boot_params */
#define LAYOUT_BOOT_STACK 0x8ff0  /* rsp at entry; the kernel sets its own at once */
#define LAYOUT_PML4 0x9000        /* identity page tables for the first 1 GiB */
#define LAYOUT_PDPT 0xa000
#define LAYOUT_PD 0xb000
#define LAYOUT_CMDLINE 0x20000
#define LAYOUT_CMDLINE_MAX 4096
#define LAYOUT_EBDA_START 0x9fc00 /* e820: RAM below it, reserved up to 1 MiB */
#define LAYOUT_MP_TABLE LAYOUT_EBDA_START /* mptable.c: where Linux looks (the last KiB) */
#define LAYOUT_HIGH_MEMORY 0x100000
#define LAYOUT_KERNEL_MIN 0x100000 /* a vmlinux may not load below 1 MiB */

/* Guest RAM ends before the MMIO hole; devices live in it. */
#define LAYOUT_MMIO_BASE 0xd0000000ULL
#define LAYOUT_VIRTIO_MMIO_SIZE 0x1000
#define LAYOUT_MAX_RAM LAYOUT_MMIO_BASE

/* KVM's in-kernel IOAPIC and LAPIC, at their usual places (named in the MP table) */
#define LAYOUT_IOAPIC 0xfec00000u
#define LAYOUT_LAPIC 0xfee00000u

/* x86 housekeeping pages KVM needs (Intel VMX), above the MMIO devices, below 4 GiB */
#define LAYOUT_IDENTITY_MAP 0xfeffc000ULL
#define LAYOUT_TSS 0xfeffd000ULL

/* Interrupt lines (GSIs; below 16 they also reach the legacy PIC) */
#define LAYOUT_IRQ_SERIAL 4
#define LAYOUT_IRQ_VIRTIO_FIRST 5

#endif
