/* The 8250 UART at 0x3f8 (the guest's console, ttyS0) for the boot log, and the i8042 reset
 * line. Output only: nothing is ever received. The THRE interrupt is emulated, since the
 * kernel's tty layer waits for it before sending more.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"
#include "vmm.h"

#define SERIAL_BASE 0x3f8
#define UART_LCR_DLAB 0x80
#define UART_IER_THRI 0x02
#define UART_MCR_LOOP 0x10
#define UART_LSR_IDLE 0x60 /* THRE | TEMT: always ready to send */
#define UART_IIR_NONE 0x01
#define UART_IIR_THRI 0x02

struct serial {
	struct io_device io;
	struct irq_line irq;
	int log_fd;
	uint8_t ier, lcr, mcr, scr, dll, dlm;
	bool thri_pending;
	char line[256];
	size_t line_len;
	char tail[256]; /* the last bytes written, a ring, for reports */
	size_t tail_pos;
	bool tail_wrapped;
};

static void flush_line(struct serial *s)
{
	if (s->log_fd >= 0 && s->line_len)
		(void)!write(s->log_fd, s->line, s->line_len);
	s->line_len = 0;
}

static void raise_thri(struct serial *s)
{
	if (s->ier & UART_IER_THRI) {
		s->thri_pending = true;
		irq_raise(&s->irq);
	}
}

static uint8_t modem_status(const struct serial *s)
{
	if (!(s->mcr & UART_MCR_LOOP))
		return 0xb0; /* DCD, DSR, CTS */
	/* loopback: the outputs appear on the inputs (the kernel's probe checks this) */
	return (uint8_t)(((s->mcr & 0x02) ? 0x10 : 0) | ((s->mcr & 0x01) ? 0x20 : 0) |
			 ((s->mcr & 0x04) ? 0x40 : 0) | ((s->mcr & 0x08) ? 0x80 : 0));
}

static void serial_read(struct io_device *io, uint64_t offset, void *data, unsigned len)
{
	struct serial *s = io->state;
	uint8_t v = 0;
	bool dlab = s->lcr & UART_LCR_DLAB;
	switch (offset) {
	case 0: v = dlab ? s->dll : 0; break;
	case 1: v = dlab ? s->dlm : s->ier; break;
	case 2:
		v = s->thri_pending ? UART_IIR_THRI : UART_IIR_NONE;
		s->thri_pending = false;
		break;
	case 3: v = s->lcr; break;
	case 4: v = s->mcr; break;
	case 5: v = UART_LSR_IDLE; break;
	case 6: v = modem_status(s); break;
	case 7: v = s->scr; break;
	}
	memset(data, 0, len);
	memcpy(data, &v, 1);
}

static void serial_write(struct io_device *io, uint64_t offset, const void *data, unsigned len)
{
	struct serial *s = io->state;
	(void)len;
	uint8_t v = *(const uint8_t *)data;
	bool dlab = s->lcr & UART_LCR_DLAB;
	switch (offset) {
	case 0:
		if (dlab) {
			s->dll = v;
			break;
		}
		if (s->line_len == sizeof s->line)
			flush_line(s);
		s->line[s->line_len++] = (char)v;
		s->tail[s->tail_pos++] = (char)v;
		if (s->tail_pos == sizeof s->tail) {
			s->tail_pos = 0;
			s->tail_wrapped = true;
		}
		if (v == '\n')
			flush_line(s);
		raise_thri(s);
		break;
	case 1:
		if (dlab) {
			s->dlm = v;
		} else {
			s->ier = v & 0x0f;
			raise_thri(s);
		}
		break;
	case 3: s->lcr = v; break;
	case 4: s->mcr = v; break;
	case 7: s->scr = v; break;
	}
}

/* Snapshot: the registers the guest wrote, and a pending THRE interrupt. A partial log line
 * is flushed, not saved. */
struct saved_serial {
	uint8_t ier, lcr, mcr, scr, dll, dlm, thri_pending, reserved;
};

static int serial_save(struct io_device *io, void *buf, size_t cap, size_t *len)
{
	struct serial *s = io->state;
	struct saved_serial v = {.ier = s->ier, .lcr = s->lcr, .mcr = s->mcr, .scr = s->scr,
				 .dll = s->dll, .dlm = s->dlm, .thri_pending = s->thri_pending};
	if (cap < sizeof v)
		return -E2BIG;
	flush_line(s);
	memcpy(buf, &v, sizeof v);
	*len = sizeof v;
	return 0;
}

static int serial_restore(struct io_device *io, const void *buf, size_t len)
{
	struct serial *s = io->state;
	struct saved_serial v;
	if (len != sizeof v)
		return -EINVAL;
	memcpy(&v, buf, sizeof v);
	if (v.ier & ~0x0fu || v.thri_pending > 1) {
		vmm_log("snapshot: serial: bad register state");
		return -EINVAL;
	}
	s->ier = v.ier;
	s->lcr = v.lcr;
	s->mcr = v.mcr;
	s->scr = v.scr;
	s->dll = v.dll;
	s->dlm = v.dlm;
	s->thri_pending = v.thri_pending;
	return 0;
}

/* The guest console's last bytes on one line (a partial last line is written to the log
 * first: a crash rarely ends its message with a newline). */
static void serial_report(struct io_device *io)
{
	struct serial *s = io->state;
	flush_line(s);
	char text[4 * sizeof s->tail + 1];
	size_t n = 0;
	size_t count = s->tail_wrapped ? sizeof s->tail : s->tail_pos;
	size_t start = s->tail_wrapped ? s->tail_pos : 0;
	for (size_t i = 0; i < count; i++) {
		unsigned char c = (unsigned char)s->tail[(start + i) % sizeof s->tail];
		if (c == '\n')
			n += (size_t)snprintf(text + n, sizeof text - n, " | ");
		else if (c >= 0x20 && c < 0x7f)
			text[n++] = (char)c;
		else if (c != '\r')
			n += (size_t)snprintf(text + n, sizeof text - n, "\\x%02x", c);
		text[n] = '\0';
	}
	text[n] = '\0';
	vmm_log("  serial: the guest console's last %zu bytes: %s", count, count ? text : "(none)");
}

static size_t serial_last_line(struct io_device *io, char *out, size_t out_len)
{
	struct serial *s = io->state;
	flush_line(s);
	size_t count = s->tail_wrapped ? sizeof s->tail : s->tail_pos;
	size_t start = s->tail_wrapped ? s->tail_pos : 0;
	/* back from the end over line ends, then to the start of that line */
	size_t end = count;
	while (end > 0 && (s->tail[(start + end - 1) % sizeof s->tail] == '\n' ||
			   s->tail[(start + end - 1) % sizeof s->tail] == '\r'))
		end--;
	size_t begin = end;
	while (begin > 0 && s->tail[(start + begin - 1) % sizeof s->tail] != '\n')
		begin--;
	size_t n = 0;
	for (size_t i = begin; i < end && n + 1 < out_len; i++) {
		unsigned char c = (unsigned char)s->tail[(start + i) % sizeof s->tail];
		out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	if (out_len)
		out[n] = '\0';
	return n;
}

int serial_create(struct vm *vm, int log_fd)
{
	struct serial *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->log_fd = log_fd;
	int rc = vm_irq_line(vm, LAYOUT_IRQ_SERIAL, &s->irq);
	if (rc) {
		free(s);
		return rc;
	}
	s->io = (struct io_device){.name = "serial", .is_port = true, .base = SERIAL_BASE,
				   .size = 8, .read = serial_read, .write = serial_write,
				   .save = serial_save, .restore = serial_restore,
				   .report = serial_report, .last_line = serial_last_line, .state = s};
	return vm_add_device(vm, &s->io);
}

/* ---- i8042: only the reset line (no state: nothing to snapshot) ---- */

static void i8042_read(struct io_device *io, uint64_t offset, void *data, unsigned len)
{
	(void)io;
	(void)offset;
	/* Reads as an absent controller, as on QEMU's microvm: a guest driver that probes gives
	 * up at once instead of polling for a keyboard. Only the reset command is served. */
	memset(data, 0xff, len);
}

static void i8042_write(struct io_device *io, uint64_t offset, const void *data, unsigned len)
{
	(void)len;
	if (offset == 4 && *(const uint8_t *)data == 0xfe) /* pulse the CPU reset line */
		vm_request_stop(io->state, 0);
}

int i8042_create(struct vm *vm)
{
	struct io_device *io = calloc(1, sizeof *io);
	if (!io)
		return -ENOMEM;
	*io = (struct io_device){.name = "i8042", .is_port = true, .base = 0x60, .size = 5,
				 .read = i8042_read, .write = i8042_write, .state = vm};
	return vm_add_device(vm, io);
}
