/* The Intel MultiProcessor table (MP spec 1.4): one CPU, the ISA bus, KVM's in-kernel IOAPIC,
 * and the legacy IRQs routed to it pin for pin (KVM's default routing: GSI n is IOAPIC pin n).
 *
 * Why: with no MP table (and no ACPI) Linux keeps "virtual wire mode with no configuration"
 * and never sets up its LAPIC timer (native_smp_prepare_cpus returns early), so every tick
 * went through the PIT and the 8259: two exits to us per tick (its port 0x80 delays), and every
 * external interrupt through ExtINT. With the table, the tick is the LAPIC's TSC-deadline timer
 * (kvm_x86_64.c sets its CPUID bit) and devices interrupt through the IOAPIC.
 *
 * The table lies in the last KiB of base memory, which the e820 map reserves and where Linux
 * looks for it (LAYOUT_MP_TABLE).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "layout.h"
#include "vmm.h"

#define MP_APIC_VERSION 0x14
#define MP_IOAPIC_VERSION 0x11
#define MP_IOAPIC_ID 1 /* the one CPU's LAPIC is 0 */
#define MP_LEGACY_IRQS 16

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

struct mp_floating {
	char signature[4]; /* "_MP_" */
	uint32_t table;
	uint8_t length; /* in 16-byte units */
	uint8_t spec;
	uint8_t checksum;
	uint8_t feature[5];
} __attribute__((packed));

struct mp_header {
	char signature[4]; /* "PCMP" */
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char product[12];
	uint32_t oem_table;
	uint16_t oem_size;
	uint16_t entries;
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mp_processor {
	uint8_t type, apic_id, apic_version, flags;
	uint32_t signature, features;
	uint32_t reserved[2];
} __attribute__((packed));

struct mp_bus {
	uint8_t type, id;
	char kind[6];
} __attribute__((packed));

struct mp_ioapic {
	uint8_t type, id, version, flags;
	uint32_t address;
} __attribute__((packed));

struct mp_interrupt { /* MP_INTSRC and MP_LINTSRC alike */
	uint8_t type, irq_type;
	uint16_t flags; /* 0: conforms to the bus */
	uint8_t bus, bus_irq, apic, pin;
} __attribute__((packed));

struct mp_table {
	struct mp_floating floating;
	struct mp_header header;
	struct mp_processor cpu;
	struct mp_bus bus;
	struct mp_ioapic ioapic;
	struct mp_interrupt irqs[MP_LEGACY_IRQS];
	struct mp_interrupt lints[2];
} __attribute__((packed));

_Static_assert(sizeof(struct mp_table) <= 1024, "the MP table fits its KiB");

static uint8_t checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)-sum;
}

int boot_write_mp_table(struct guest_memory *mem)
{
	struct mp_table *t = gpa_ptr(mem, LAYOUT_MP_TABLE, sizeof *t);
	if (!t)
		return -ERANGE;
	memset(t, 0, sizeof *t);
	t->cpu = (struct mp_processor){.type = MP_PROCESSOR, .apic_version = MP_APIC_VERSION,
				       .flags = 0x3 /* enabled, boot CPU */,
				       .signature = 0x600, .features = 0x201 /* FPU, APIC */};
	t->bus = (struct mp_bus){.type = MP_BUS, .kind = {'I', 'S', 'A', ' ', ' ', ' '}};
	t->ioapic = (struct mp_ioapic){.type = MP_IOAPIC, .id = MP_IOAPIC_ID,
				       .version = MP_IOAPIC_VERSION, .flags = 1,
				       .address = LAYOUT_IOAPIC};
	for (uint8_t irq = 0; irq < MP_LEGACY_IRQS; irq++)
		t->irqs[irq] = (struct mp_interrupt){.type = MP_INTSRC, .irq_type = MP_INT,
						     .bus_irq = irq, .apic = MP_IOAPIC_ID, .pin = irq};
	t->lints[0] = (struct mp_interrupt){.type = MP_LINTSRC, .irq_type = MP_EXTINT,
					    .apic = 0xff, .pin = 0};
	t->lints[1] = (struct mp_interrupt){.type = MP_LINTSRC, .irq_type = MP_NMI,
					    .apic = 0xff, .pin = 1};

	size_t table_len = sizeof *t - sizeof t->floating;
	t->header = (struct mp_header){.signature = {'P', 'C', 'M', 'P'},
				       .length = (uint16_t)table_len, .spec = 4,
				       .oem = {'A', 'I', 'R', 'L', 'O', 'C', 'K', ' '},
				       .product = {'A', 'I', 'R', 'L', 'O', 'C', 'K', '-', 'V', 'M',
						   'M', ' '},
				       .entries = 1 + 1 + 1 + MP_LEGACY_IRQS + 2,
				       .lapic = LAYOUT_LAPIC};
	t->header.checksum = checksum(&t->header, table_len);
	t->floating = (struct mp_floating){.signature = {'_', 'M', 'P', '_'},
					   .table = LAYOUT_MP_TABLE + sizeof t->floating,
					   .length = 1, .spec = 4};
	t->floating.checksum = checksum(&t->floating, sizeof t->floating);
	return 0;
}
