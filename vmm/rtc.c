/* A minimal MC146818 CMOS clock at ports 0x70/0x71, read-only, telling the host's current time
 * in BCD. Without it the guest kernel spins on "update in progress" (an unanswered port reads
 * 0xff) before giving up on the wall clock. The agent sets the exact time later anyway.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm.h"

#define RTC_PORT 0x70

struct rtc {
	struct io_device io;
	uint8_t index;
};

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static uint8_t rtc_register(uint8_t index)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	switch (index) {
	case 0x00: return bcd(tm.tm_sec);
	case 0x02: return bcd(tm.tm_min);
	case 0x04: return bcd(tm.tm_hour);
	case 0x06: return bcd(tm.tm_wday + 1);
	case 0x07: return bcd(tm.tm_mday);
	case 0x08: return bcd(tm.tm_mon + 1);
	case 0x09: return bcd(tm.tm_year % 100);
	case 0x32: return bcd(19 + tm.tm_year / 100); /* century */
	case 0x0a: return 0x26; /* 32.768 kHz base, 1024 Hz rate, no update in progress */
	case 0x0b: return 0x02; /* 24-hour mode, BCD, no interrupts */
	case 0x0d: return 0x80; /* battery good */
	default: return 0;
	}
}

static void rtc_read(struct io_device *io, uint64_t offset, void *data, unsigned len)
{
	struct rtc *rtc = io->state;
	memset(data, 0, len);
	*(uint8_t *)data = offset == 1 ? rtc_register(rtc->index) : rtc->index;
}

static void rtc_write(struct io_device *io, uint64_t offset, const void *data, unsigned len)
{
	struct rtc *rtc = io->state;
	(void)len;
	if (offset == 0)
		rtc->index = *(const uint8_t *)data & 0x7f; /* bit 7 is the NMI mask */
}

/* Snapshot: the selected register (the time itself is always the host's). */
static int rtc_save(struct io_device *io, void *buf, size_t cap, size_t *len)
{
	struct rtc *rtc = io->state;
	if (cap < 1)
		return -E2BIG;
	memcpy(buf, &rtc->index, 1);
	*len = 1;
	return 0;
}

static int rtc_restore(struct io_device *io, const void *buf, size_t len)
{
	struct rtc *rtc = io->state;
	uint8_t index;
	if (len != 1)
		return -EINVAL;
	memcpy(&index, buf, 1);
	if (index > 0x7f) {
		vmm_log("snapshot: rtc: bad register index");
		return -EINVAL;
	}
	rtc->index = index;
	return 0;
}

int rtc_create(struct vm *vm)
{
	/* libc reads the time zone file at its first time conversion, gmtime_r included: now,
	 * before the seccomp filter, not at the guest's first clock read (which it would kill) */
	tzset();
	struct rtc *rtc = calloc(1, sizeof *rtc);
	if (!rtc)
		return -ENOMEM;
	rtc->io = (struct io_device){.name = "rtc", .is_port = true, .base = RTC_PORT, .size = 2,
				     .read = rtc_read, .write = rtc_write, .save = rtc_save,
				     .restore = rtc_restore, .state = rtc};
	return vm_add_device(vm, &rtc->io);
}
