/* A hostile guest for airlock-vmm: a freestanding 64-bit program booted in place of the Linux
 * kernel (the same ELF entry, in long mode, RSI = the zero page), which attacks the monitor the
 * way a guest kernel running code of an attacker could: malformed virtqueues on both virtio
 * devices, garbage on the serial port, a flood of MMIO and port exits. It reports each case on the
 * serial port ("hostile: CASE status=0x.."), says "hostile: done" if it got through all of them,
 * and ends with the i8042 reset. The host side (test/kvmhost/hostile_guest_test.py) checks that the
 * monitor logged a clear error for each malformed queue, stayed alive, stayed small and exited
 * normally.
 *
 * The command line picks the attacks: "hostile=virtio", "hostile=flood:ROUNDS",
 * "hostile=serial:ROUNDS" or "hostile=fault" (a triple fault at once).
 */
#include <stdint.h>

#include "layout.h"

#define COM1 0x3f8
#define BLK_BASE LAYOUT_MMIO_BASE
#define CONSOLE_BASE (LAYOUT_MMIO_BASE + LAYOUT_VIRTIO_MMIO_SIZE)
#define UNMAPPED_MMIO (LAYOUT_MMIO_BASE + 0x100000)

/* virtio-mmio registers (virtio 1.2, 4.2.2) */
#define R_DRIVER_FEATURES 0x020
#define R_DRIVER_FEATURES_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_STATUS 0x070
#define R_QUEUE_DESC 0x080
#define R_QUEUE_AVAIL 0x090
#define R_QUEUE_USED 0x0a0
#define S_DRIVER_OK_ALL 0x0f /* ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK */
#define S_NEEDS_RESET 0x40

#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4

/* Work memory for rings and buffers, in RAM the program owns (it was loaded at 2 MiB). */
#define RINGS 0x400000ULL
#define DESC (RINGS)
#define AVAIL (RINGS + 0x1000)
#define USED (RINGS + 0x2000)
#define BUFFERS (RINGS + 0x10000)

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4][512] __attribute__((aligned(4096)));
static uint8_t stack[16384] __attribute__((aligned(16), used)); /* _start's */
static uint64_t ram_end; /* from the zero page's e820 map */

/* ---- the machine ---- */

static void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void mmio_write(uint64_t addr, uint32_t v)
{
	*(volatile uint32_t *)addr = v;
}

static uint32_t mmio_read(uint64_t addr)
{
	return *(volatile uint32_t *)addr;
}

static void *mem(uint64_t gpa)
{
	return (void *)gpa; /* identity-mapped */
}

static void zero(void *p, uint64_t n)
{
	for (uint8_t *b = p; n--; b++)
		*b = 0;
}

/* The i8042's reset line: how a guest that is done ends (the monitor exits 0). */
static __attribute__((noreturn)) void reset(void)
{
	outb(0x64, 0xfe);
	for (;;)
		__asm__ volatile("hlt");
}

static __attribute__((noreturn)) void triple_fault(void)
{
	struct __attribute__((packed)) {
		uint16_t limit;
		uint64_t base;
	} empty = {0, 0};
	__asm__ volatile("lidt %0; int3" : : "m"(empty));
	for (;;)
		__asm__ volatile("hlt");
}

/* The boot tables map 1 GiB; the devices live at 3.25 GiB: map the low 4 GiB (2 MiB pages). */
static void map_low_4gib(void)
{
	for (uint64_t g = 0; g < 4; g++) {
		for (uint64_t i = 0; i < 512; i++)
			pd[g][i] = ((g << 30) | (i << 21)) | 0x83 | (g == 3 ? 0x18 : 0); /* PCD|PWT */
		pdpt[g] = (uint64_t)(uintptr_t)pd[g] | 0x3;
	}
	pml4[0] = (uint64_t)(uintptr_t)pdpt | 0x3;
	__asm__ volatile("mov %0, %%cr3" : : "r"((uint64_t)(uintptr_t)pml4) : "memory");
}

/* ---- the serial console ---- */

static void putc_serial(char c)
{
	outb(COM1, (uint8_t)c);
}

static void print(const char *s)
{
	while (*s)
		putc_serial(*s++);
}

static void print_hex(uint64_t v)
{
	print("0x");
	for (int shift = 60; shift >= 0; shift -= 4)
		if ((v >> shift) || shift == 0)
			putc_serial("0123456789abcdef"[(v >> shift) & 0xf]);
}

static int starts_with(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return 0;
	return 1;
}

/* "attack:N": N in decimal after the colon, or dflt */
static uint64_t count_after_colon(const char *what, uint64_t dflt)
{
	while (*what && *what != ' ' && *what != ':')
		what++;
	if (*what != ':')
		return dflt;
	uint64_t n = 0;
	for (what++; *what >= '0' && *what <= '9'; what++)
		n = n * 10 + (uint64_t)(*what - '0');
	return n;
}

static const char *find_option(const char *cmdline, const char *key)
{
	for (const char *p = cmdline; *p; p++)
		if ((p == cmdline || p[-1] == ' ') && starts_with(p, key))
			return p + __builtin_strlen(key);
	return "";
}

/* ---- virtio set-up, right and wrong ---- */

struct queue_setup {
	uint32_t size;
	uint64_t desc, avail, used;
};

static void device_reset(uint64_t base)
{
	mmio_write(base + R_STATUS, 0);
}

/* Brings the device to DRIVER_OK with queue q as described; returns the status it reports. */
static uint32_t device_up(uint64_t base, unsigned q, struct queue_setup s)
{
	device_reset(base);
	mmio_write(base + R_STATUS, 1);
	mmio_write(base + R_STATUS, 3);
	mmio_write(base + R_DRIVER_FEATURES_SEL, 1);
	mmio_write(base + R_DRIVER_FEATURES, 1); /* VIRTIO_F_VERSION_1 (bit 32) */
	mmio_write(base + R_STATUS, 0xb);
	mmio_write(base + R_QUEUE_SEL, q);
	mmio_write(base + R_QUEUE_NUM, s.size);
	mmio_write(base + R_QUEUE_DESC, (uint32_t)s.desc);
	mmio_write(base + R_QUEUE_DESC + 4, (uint32_t)(s.desc >> 32));
	mmio_write(base + R_QUEUE_AVAIL, (uint32_t)s.avail);
	mmio_write(base + R_QUEUE_AVAIL + 4, (uint32_t)(s.avail >> 32));
	mmio_write(base + R_QUEUE_USED, (uint32_t)s.used);
	mmio_write(base + R_QUEUE_USED + 4, (uint32_t)(s.used >> 32));
	mmio_write(base + R_QUEUE_READY, 1);
	mmio_write(base + R_STATUS, S_DRIVER_OK_ALL);
	return mmio_read(base + R_STATUS);
}

static struct queue_setup good_queue(void)
{
	return (struct queue_setup){.size = 8, .desc = DESC, .avail = AVAIL, .used = USED};
}

static struct desc *descs(void)
{
	return mem(DESC);
}

/* Offers head in the avail ring as its next entry (idx moved by step) and notifies queue q. */
static void offer(uint64_t base, unsigned q, uint16_t head, uint16_t step)
{
	volatile uint16_t *avail = mem(AVAIL);
	avail[2 + avail[1] % 8] = head;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	avail[1] = (uint16_t)(avail[1] + step);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	mmio_write(base + R_QUEUE_NOTIFY, q);
}

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* Waits, up to about half a second, for the device to say NEEDS_RESET: the console's queues are
 * served by a thread of the monitor, so its verdict may come a moment after the notify. Reads
 * the status now and then, not in a tight loop: each read is an exit. */
#define SETTLE_CYCLES 1000000000ULL /* 0.5 s at 2 GHz */
#define POLL_CYCLES 2000000ULL
static uint32_t settled_status(uint64_t base)
{
	uint64_t start = rdtsc();
	for (;;) {
		uint32_t status = mmio_read(base + R_STATUS);
		if ((status & S_NEEDS_RESET) || rdtsc() - start > SETTLE_CYCLES)
			return status;
		for (uint64_t t = rdtsc(); rdtsc() - t < POLL_CYCLES;)
			__asm__ volatile("pause");
	}
}

static void report(const char *name, uint32_t status)
{
	print("hostile: ");
	print(name);
	print(" status=");
	print_hex(status);
	print("\n");
}

static void clear_rings(void)
{
	zero(mem(RINGS), 0x3000);
}

/* A block request whose header and status are sound, data as given. */
static void blk_request(uint64_t data, uint32_t len, uint16_t data_flags)
{
	struct desc *d = descs();
	uint32_t *hdr = mem(BUFFERS);
	hdr[0] = 0; /* VIRTIO_BLK_T_IN */
	hdr[1] = 0;
	*(uint64_t *)mem(BUFFERS + 8) = 0; /* sector 0 */
	d[0] = (struct desc){BUFFERS, 16, F_NEXT, 1};
	d[1] = (struct desc){data, len, (uint16_t)(data_flags | F_NEXT), 2};
	d[2] = (struct desc){BUFFERS + 0x100, 1, F_WRITE, 0};
}

/* Each case: a fresh device, one malformed queue or request, the status it ends with. */
static void attack_queue(uint64_t base, unsigned q, const char *name)
{
	char label[64];
	struct desc *d = descs();
	unsigned n;
#define CASE(what)                                                           \
	do {                                                                 \
		n = 0;                                                       \
		for (const char *c = name; *c; c++) label[n++] = *c;         \
		label[n++] = '.';                                            \
		for (const char *c = what; *c && n < 62; c++) label[n++] = *c; \
		label[n] = 0;                                                \
	} while (0)
	/* a sound request first: the device works, so the later failures are the attacks' */
	clear_rings();
	device_up(base, q, good_queue());
	if (base == BLK_BASE) {
		blk_request(BUFFERS + 0x1000, 512, F_WRITE);
		offer(base, q, 0, 1);
	} else {
		d[0] = (struct desc){BUFFERS, 64, q == 0 ? F_WRITE : 0, 0};
		offer(base, q, 0, 1);
	}
	CASE("sound-request");
	report(label, settled_status(base));

	/* a descriptor chain that loops: 0 -> 1 -> 0 */
	clear_rings();
	device_up(base, q, good_queue());
	d[0] = (struct desc){BUFFERS, 16, F_NEXT, 1};
	d[1] = (struct desc){BUFFERS + 16, 16, F_NEXT, 0};
	offer(base, q, 0, 1);
	CASE("descriptor-loop");
	report(label, settled_status(base));

	/* a buffer far outside guest RAM */
	clear_rings();
	device_up(base, q, good_queue());
	d[0] = (struct desc){0xfffffffffffff000ULL, 4096, q == 0 ? F_WRITE : 0, 0};
	offer(base, q, 0, 1);
	CASE("address-out-of-range");
	report(label, settled_status(base));

	/* a buffer that straddles the end of RAM */
	clear_rings();
	device_up(base, q, good_queue());
	d[0] = (struct desc){ram_end - 8, 4096, q == 0 ? F_WRITE : 0, 0};
	offer(base, q, 0, 1);
	CASE("address-straddles-ram-end");
	report(label, settled_status(base));

	/* a buffer in the MMIO hole, on the device's own registers */
	clear_rings();
	device_up(base, q, good_queue());
	d[0] = (struct desc){base, 0x100, q == 0 ? F_WRITE : 0, 0};
	offer(base, q, 0, 1);
	CASE("address-on-mmio-registers");
	report(label, settled_status(base));

	/* a 4 GiB - 1 length */
	clear_rings();
	device_up(base, q, good_queue());
	d[0] = (struct desc){0x100000, 0xffffffffu, q == 0 ? F_WRITE : 0, 0};
	offer(base, q, 0, 1);
	CASE("huge-length");
	report(label, settled_status(base));

	/* an indirect table (not offered) */
	clear_rings();
	device_up(base, q, good_queue());
	d[0] = (struct desc){BUFFERS, 64, F_INDIRECT, 0};
	offer(base, q, 0, 1);
	CASE("indirect-not-offered");
	report(label, settled_status(base));

	/* a head index past the queue */
	clear_rings();
	device_up(base, q, good_queue());
	offer(base, q, 999, 1);
	CASE("head-out-of-range");
	report(label, settled_status(base));

	/* the avail index jumps by more than the ring holds */
	clear_rings();
	device_up(base, q, good_queue());
	d[0] = (struct desc){BUFFERS, 16, 0, 0};
	offer(base, q, 0, 1000);
	CASE("avail-index-jump");
	report(label, settled_status(base));

	/* the rings themselves outside RAM */
	clear_rings();
	device_up(base, q, (struct queue_setup){8, 0xfff00000000ULL, 0xfff00001000ULL,
						0xfff00002000ULL});
	mmio_write(base + R_QUEUE_NOTIFY, q);
	CASE("rings-outside-ram");
	report(label, settled_status(base));

	/* queue sizes 0, 3 (not a power of two) and 65535 */
	static const uint32_t bad_sizes[] = {0, 3, 65535};
	static const char *size_names[] = {"queue-size-0", "queue-size-3", "queue-size-65535"};
	for (unsigned i = 0; i < 3; i++) {
		clear_rings();
		struct queue_setup s = good_queue();
		s.size = bad_sizes[i];
		device_up(base, q, s);
		mmio_write(base + R_QUEUE_NOTIFY, q);
		CASE(size_names[i]);
		report(label, settled_status(base));
	}

	/* misaligned rings */
	clear_rings();
	device_up(base, q, (struct queue_setup){8, DESC + 1, AVAIL + 1, USED + 1});
	mmio_write(base + R_QUEUE_NOTIFY, q);
	CASE("misaligned-rings");
	report(label, settled_status(base));

	/* notifies before any queue is ready, and for queues that do not exist */
	clear_rings();
	device_reset(base);
	mmio_write(base + R_STATUS, 1);
	for (uint32_t v = 0; v < 8; v++)
		mmio_write(base + R_QUEUE_NOTIFY, v);
	mmio_write(base + R_QUEUE_NOTIFY, 0xffffffffu);
	CASE("notify-before-ready");
	report(label, mmio_read(base + R_STATUS));

	/* a writable buffer over the rings themselves: legal, the device may scribble on them */
	clear_rings();
	device_up(base, q, good_queue());
	if (base == BLK_BASE) {
		blk_request(RINGS, 0x3000, F_WRITE);
	} else {
		d[0] = (struct desc){RINGS, 0x3000, q == 0 ? F_WRITE : 0, 0};
	}
	offer(base, q, 0, 1);
	CASE("buffer-overlaps-rings");
	report(label, settled_status(base));

	if (base == BLK_BASE) {
		/* a read far past the disk's end, and a sector number that overflows a byte offset */
		static const uint64_t sectors[] = {1ULL << 40, 0xffffffffffffffffULL};
		static const char *sector_names[] = {"sector-past-disk-end", "sector-overflow"};
		for (unsigned i = 0; i < 2; i++) {
			clear_rings();
			device_up(base, q, good_queue());
			blk_request(BUFFERS + 0x1000, 4096, F_WRITE);
			*(uint64_t *)mem(BUFFERS + 8) = sectors[i];
			*(uint8_t *)mem(BUFFERS + 0x100) = 0xee;
			offer(base, q, 0, 1);
			CASE(sector_names[i]);
			print("hostile: ");
			print(label);
			print(" blk-status=");
			print_hex(*(volatile uint8_t *)mem(BUFFERS + 0x100));
			print("\n");
		}
		/* a header too short and a chain with no status byte */
		clear_rings();
		device_up(base, q, good_queue());
		blk_request(BUFFERS + 0x1000, 512, F_WRITE);
		d[0].len = 4;
		d[2].flags = 0;
		offer(base, q, 0, 1);
		CASE("short-header-no-status");
		report(label, mmio_read(base + R_STATUS));
	}
	device_reset(base);
#undef CASE
}

/* ---- floods ---- */

static void flood_exits(uint64_t rounds)
{
	/* MMIO reads and writes where nothing is, reads of a device's unused registers, and port
	 * I/O to nothing: four exits a round */
	for (uint64_t i = 0; i < rounds; i++) {
		(void)mmio_read(UNMAPPED_MMIO + (i % 64) * 4);
		mmio_write(UNMAPPED_MMIO + (i % 64) * 4, i);
		(void)mmio_read(BLK_BASE + 0x800 + (i % 32) * 4);
		outb((uint16_t)(0x100 + i % 0x200), (uint8_t)i);
	}
	print("hostile: flood.exits done, rounds=");
	print_hex(rounds);
	print("\n");
}

static void serial_garbage(uint64_t rounds)
{
	uint32_t x = 0x12345678;
	for (uint64_t i = 0; i < rounds; i++) {
		x = x * 1103515245 + 12345;
		uint16_t port = (uint16_t)(COM1 + (x >> 8) % 8);
		outb(port, (uint8_t)(x >> 16));
		(void)inb((uint16_t)(COM1 + (x >> 20) % 8));
	}
	outb(COM1 + 3, 0x03); /* 8N1, DLAB off: a sane UART for the report */
	outb(COM1 + 1, 0x00);
	print("\nhostile: serial.garbage done\n");
}

/* ---- entry ---- */

void hostile_main(uint64_t zero_page)
{
	map_low_4gib();
	const char *cmdline = mem(*(uint32_t *)mem(zero_page + 0x228)); /* hdr.cmd_line_ptr */
	uint8_t entries = *(uint8_t *)mem(zero_page + 0x1e8);             /* e820_entries */
	for (unsigned i = 0; i < entries; i++) {
		uint64_t *e = mem(zero_page + 0x2d0 + 20 * i); /* e820_table: addr, size, type */
		uint32_t type = *(uint32_t *)(e + 2);
		if (type == 1 && e[0] + e[1] > ram_end)
			ram_end = e[0] + e[1];
	}
	print("hostile: ram_end=");
	print_hex(ram_end);
	print("\n");

	const char *what = find_option(cmdline, "hostile=");
	if (starts_with(what, "virtio")) {
		attack_queue(BLK_BASE, 0, "blk");
		attack_queue(CONSOLE_BASE, 1, "console-tx");
		attack_queue(CONSOLE_BASE, 0, "console-rx");
	} else if (starts_with(what, "flood")) {
		flood_exits(count_after_colon(what, 100000));
	} else if (starts_with(what, "serial")) {
		serial_garbage(count_after_colon(what, 100000));
	} else if (starts_with(what, "fault")) {
		print("hostile: done\n");
		triple_fault();
	} else {
		print("hostile: unknown attack\n");
	}
	print("hostile: done\n");
	reset();
}

__asm__(".section .text.start, \"ax\"\n"
	".globl _start\n"
	"_start:\n"
	"  lea stack+16384(%rip), %rsp\n"
	"  mov %rsi, %rdi\n"
	"  call hostile_main\n"
	"1: hlt\n"
	"  jmp 1b\n"
	".previous\n");
