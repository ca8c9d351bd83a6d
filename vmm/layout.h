/* The guest-physical memory map of an airlock microVM, as named constants, and what its kernel is
 * told of its devices. mcp/backend/tcg/tcg.c includes this file too (the one header vmm/ and mcp/
 * share), for the kernel command line both backends give the same guest. */
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

/* The virtio-mmio devices, one page each from LAYOUT_MMIO_BASE in this order, each with the next
 * IRQ: main.c attaches them and names them on the kernel command line from these alone. The
 * disk comes first, so that it is /dev/vda (GUEST_CMDLINE_SYSTEM). A new device is a slot here
 * (before LAYOUT_VIRTIO_SLOTS), its file and its line in main.c's attach_devices. */
enum layout_virtio_slot {
	LAYOUT_VIRTIO_BLK,
	LAYOUT_VIRTIO_CONSOLE,
	LAYOUT_VIRTIO_SLOTS,
};
#define LAYOUT_VIRTIO_BASE(slot)                                                                   \
	(LAYOUT_MMIO_BASE + (unsigned long long)(slot) * LAYOUT_VIRTIO_MMIO_SIZE)
#define LAYOUT_VIRTIO_IRQ(slot) (LAYOUT_IRQ_VIRTIO_FIRST + (unsigned)(slot))

/* What every guest kernel is told, on both backends: its console, then (after "quiet", or not)
 * how it ends and what it runs. reboot=t with panic=-1 turns the agent's end and a panic into a
 * triple fault, which ends the VM; the root is the first virtio disk, read-only; init is the
 * agent. */
#define GUEST_CMDLINE_CONSOLE "console=ttyS0"
#define GUEST_CMDLINE_SYSTEM "reboot=t panic=-1 root=/dev/vda ro rootfstype=ext4 init=/sbin/init"

#endif
