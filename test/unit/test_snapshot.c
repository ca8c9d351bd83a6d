/* The snapshot state file parser against damaged and foreign files: every truncation, a flipped
 * byte anywhere, bad magic, version, build id, memory size, section lengths that run past the
 * end, duplicate or unknown sections; and the virtio transport's restore against queue state
 * that points outside guest memory. No KVM. */
#include <errno.h>
#include <linux/virtio_config.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "snapshot.h"
#include "virtio.h"

static const uint8_t build_id[SNAP_BUILD_ID_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8};
#define MEM_SIZE (64ull << 20)

/* A valid state file with three sections of awkward lengths. */
static struct snap_buf sample(void)
{
	struct snap_buf b;
	uint8_t regs[144], odd[13], dev[40];
	memset(regs, 0x11, sizeof regs);
	memset(odd, 0x22, sizeof odd);
	memset(dev, 0x33, sizeof dev);
	snap_buf_init(&b);
	snap_put(&b, SNAP_CPU_REGS, regs, sizeof regs);
	snap_put(&b, SNAP_CPU_TSC_KHZ, odd, sizeof odd);
	snap_put(&b, SNAP_DEVICE + 2, dev, sizeof dev);
	snap_finish(&b, MEM_SIZE, build_id);
	return b;
}

static int parse(const uint8_t *p, size_t len)
{
	struct snap_image img;
	char why[160];
	return snap_parse(p, len, build_id, &img, why, sizeof why);
}

/* Rewrites the checksum after a deliberate change, so that the check under test is reached. */
static void reseal(uint8_t *p, size_t len)
{
	uint64_t sum = snap_checksum(p, len - SNAP_TRAILER_SIZE);
	memcpy(p + len - SNAP_TRAILER_SIZE, &sum, sizeof sum);
}

static void valid_file_parses(void)
{
	struct snap_buf b = sample();
	CHECK(b.error == 0);
	struct snap_image img;
	char why[160] = "";
	CHECK(snap_parse(b.data, b.len, build_id, &img, why, sizeof why) == 0);
	CHECK(img.mem_size == MEM_SIZE);
	CHECK(img.n_sections == 3);
	const struct snap_section *s = snap_find(&img, SNAP_CPU_TSC_KHZ);
	CHECK(s && s->len == 13 && s->data[0] == 0x22 && s->data[12] == 0x22);
	s = snap_find(&img, SNAP_DEVICE + 2);
	CHECK(s && s->len == 40 && s->data[39] == 0x33);
	CHECK(snap_find(&img, SNAP_CPU_SREGS) == NULL);
	snap_buf_free(&b);
}

static void every_truncation_refused(void)
{
	struct snap_buf b = sample();
	for (size_t len = 0; len < b.len; len++)
		CHECK(parse(b.data, len) == -EINVAL);
	snap_buf_free(&b);
}

static void every_flipped_byte_refused(void)
{
	struct snap_buf b = sample();
	for (size_t i = 0; i < b.len; i++) {
		b.data[i] ^= 0x40;
		CHECK(parse(b.data, b.len) == -EINVAL);
		b.data[i] ^= 0x40;
	}
	CHECK(parse(b.data, b.len) == 0);
	snap_buf_free(&b);
}

static void appended_bytes_refused(void)
{
	struct snap_buf b = sample();
	uint8_t *p = calloc(1, b.len + 8);
	memcpy(p, b.data, b.len);
	CHECK(parse(p, b.len + 8) == -EINVAL);
	free(p);
	snap_buf_free(&b);
}

static void bad_magic_refused(void)
{
	struct snap_buf b = sample();
	b.data[0] = 'X';
	reseal(b.data, b.len);
	CHECK(parse(b.data, b.len) == -EINVAL);
	snap_buf_free(&b);
}

static void other_version_refused(void)
{
	struct snap_buf b = sample();
	uint32_t v = SNAP_VERSION + 1;
	memcpy(b.data + 8, &v, 4);
	reseal(b.data, b.len);
	CHECK(parse(b.data, b.len) == -EINVAL);
	snap_buf_free(&b);
}

static void other_build_refused(void)
{
	struct snap_buf b = sample();
	uint8_t other[SNAP_BUILD_ID_SIZE] = {9};
	struct snap_image img;
	char why[160] = "";
	CHECK(snap_parse(b.data, b.len, other, &img, why, sizeof why) == -EINVAL);
	CHECK(strstr(why, "build") != NULL);
	snap_buf_free(&b);
}

static void bad_memory_size_refused(void)
{
	const uint64_t sizes[] = {0, 4095, MEM_SIZE + 1, 1ull << 40};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		struct snap_buf b;
		snap_buf_init(&b);
		snap_put(&b, SNAP_CPU_REGS, "x", 1);
		snap_finish(&b, sizes[i], build_id);
		CHECK(parse(b.data, b.len) == -EINVAL);
		snap_buf_free(&b);
	}
}

/* A section length that runs past the end, with the header and checksum made consistent. */
static void section_past_end_refused(void)
{
	const uint32_t lens[] = {145, 1000, 0xffffffffu, 0xfffffff9u};
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		struct snap_buf b;
		uint8_t regs[144] = {0};
		snap_buf_init(&b);
		snap_put(&b, SNAP_CPU_REGS, regs, sizeof regs);
		snap_finish(&b, MEM_SIZE, build_id);
		memcpy(b.data + SNAP_HEADER_SIZE + 4, &lens[i], 4);
		reseal(b.data, b.len);
		CHECK(parse(b.data, b.len) == -EINVAL);
		snap_buf_free(&b);
	}
}

static void section_count_mismatch_refused(void)
{
	struct snap_buf b = sample();
	const uint32_t counts[] = {2, 4, SNAP_MAX_SECTIONS + 1, 0xffffffffu};
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		memcpy(b.data + 12, &counts[i], 4);
		reseal(b.data, b.len);
		CHECK(parse(b.data, b.len) == -EINVAL);
	}
	snap_buf_free(&b);
}

static void duplicate_and_unknown_sections_refused(void)
{
	struct snap_buf b;
	snap_buf_init(&b);
	snap_put(&b, SNAP_CPU_REGS, "a", 1);
	snap_put(&b, SNAP_CPU_REGS, "b", 1);
	snap_finish(&b, MEM_SIZE, build_id);
	CHECK(parse(b.data, b.len) == -EINVAL);
	snap_buf_free(&b);
	const uint32_t unknown[] = {0, 6, 15, 27, SNAP_DEVICE_LAST + 1, 0xffffffffu};
	for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
		snap_buf_init(&b);
		snap_put(&b, unknown[i], "a", 1);
		snap_finish(&b, MEM_SIZE, build_id);
		CHECK(parse(b.data, b.len) == -EINVAL);
		snap_buf_free(&b);
	}
}

static void oversized_writer_input_refused(void)
{
	struct snap_buf b;
	snap_buf_init(&b);
	for (unsigned i = 0; i <= SNAP_MAX_SECTIONS; i++)
		snap_put(&b, SNAP_DEVICE, "a", 1);
	CHECK(snap_finish(&b, MEM_SIZE, build_id) == -E2BIG);
	snap_buf_free(&b);
}

/* ---- the virtio transport's restore ---- */

static const struct virtio_device_ops test_ops = {.name = "test", .device_id = 3,
						  .num_queues = 2};

static void setup_device(struct virtio_device *dev, struct guest_memory *mem)
{
	struct irq_line irq = {.fd = -1, .gsi = 5};
	virtio_mmio_init(dev, &test_ops, mem, 0xd0000000, irq, NULL);
}

/* The saved transport of a driver-ready device with queue 0 at desc/avail/used. */
static size_t saved_transport(struct guest_memory *mem, uint64_t desc, uint64_t avail,
			      uint64_t used, uint8_t *buf)
{
	struct virtio_device dev;
	setup_device(&dev, mem);
	dev.status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	dev.driver_features = 1ULL << VIRTIO_F_VERSION_1;
	dev.queues[0] = (struct virtqueue){.size = 256, .ready = true, .desc_gpa = desc,
					   .avail_gpa = avail, .used_gpa = used,
					   .last_avail = 7, .used_idx = 7};
	size_t len = 0;
	CHECK(virtio_mmio_save(&dev.io, buf, SNAP_DEVICE_STATE_MAX, &len) == 0);
	return len;
}

static void transport_round_trip(void)
{
	struct guest_memory mem = {.host = calloc(1, 1 << 20), .size = 1 << 20};
	uint8_t buf[SNAP_DEVICE_STATE_MAX];
	size_t len = saved_transport(&mem, 0x1000, 0x2000, 0x3000, buf);
	struct virtio_device dev;
	setup_device(&dev, &mem);
	CHECK(virtio_mmio_restore(&dev.io, buf, len) == 0);
	CHECK(dev.queues[0].ready && dev.queues[0].size == 256 && dev.queues[0].last_avail == 7);
	CHECK(virtio_is_live(&dev));
	CHECK(virtio_mmio_restore(&dev.io, buf, len - 1) == -EINVAL);
	CHECK(virtio_mmio_restore(&dev.io, buf, len + 1) == -EINVAL);
	free(mem.host);
}

static void transport_queue_outside_memory_refused(void)
{
	struct guest_memory mem = {.host = calloc(1, 1 << 20), .size = 1 << 20};
	const uint64_t bad[][3] = {
		{(1 << 20) - 16, 0x2000, 0x3000},      /* descriptors past the end */
		{0x1000, (1 << 20) - 2, 0x3000},       /* avail ring past the end */
		{0x1000, 0x2000, UINT64_MAX - 3},      /* used ring wraps around */
		{0x1008, 0x2000, 0x3000},              /* misaligned descriptors */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint8_t buf[SNAP_DEVICE_STATE_MAX];
		size_t len = saved_transport(&mem, bad[i][0], bad[i][1], bad[i][2], buf);
		struct virtio_device dev;
		setup_device(&dev, &mem);
		CHECK(virtio_mmio_restore(&dev.io, buf, len) == -EINVAL);
	}
	free(mem.host);
}

static void transport_bad_size_refused(void)
{
	struct guest_memory mem = {.host = calloc(1, 1 << 20), .size = 1 << 20};
	uint8_t buf[SNAP_DEVICE_STATE_MAX];
	size_t len = saved_transport(&mem, 0x1000, 0x2000, 0x3000, buf);
	/* queue 0's size field: after the 40-byte header, three u64 addresses */
	const uint16_t sizes[] = {0, 3, 512};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		memcpy(buf + 40 + 24, &sizes[i], 2);
		struct virtio_device dev;
		setup_device(&dev, &mem);
		CHECK(virtio_mmio_restore(&dev.io, buf, len) == -EINVAL);
	}
	free(mem.host);
}

int main(void)
{
	TEST(valid_file_parses);
	TEST(every_truncation_refused);
	TEST(every_flipped_byte_refused);
	TEST(appended_bytes_refused);
	TEST(bad_magic_refused);
	TEST(other_version_refused);
	TEST(other_build_refused);
	TEST(bad_memory_size_refused);
	TEST(section_past_end_refused);
	TEST(section_count_mismatch_refused);
	TEST(duplicate_and_unknown_sections_refused);
	TEST(oversized_writer_input_refused);
	TEST(transport_round_trip);
	TEST(transport_queue_outside_memory_refused);
	TEST(transport_bad_size_refused);
	return TEST_EXIT_STATUS();
}
