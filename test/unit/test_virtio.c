/* The virtqueue walker and the virtio-mmio register file against hostile drivers: loops,
 * out-of-range and overlapping addresses, huge lengths, queue sizes 0 or not a power of two,
 * notify before the queue is ready. No KVM: guest memory is a plain buffer. */
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "check.h"
#include "virtio.h"

#define MEM_SIZE (1u << 20)
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define DATA 0x10000

static struct guest_memory mem;

static void fresh_memory(void)
{
	if (!mem.host) {
		mem.host = malloc(MEM_SIZE);
		mem.size = MEM_SIZE;
	}
	memset(mem.host, 0, MEM_SIZE);
}

static struct vring_desc *desc(unsigned i)
{
	return (struct vring_desc *)(mem.host + DESC) + i;
}

static struct vring_avail *avail(void)
{
	return (struct vring_avail *)(mem.host + AVAIL);
}

static struct virtqueue queue(uint16_t size)
{
	return (struct virtqueue){.size = size, .ready = true, .desc_gpa = DESC,
				  .avail_gpa = AVAIL, .used_gpa = USED};
}

/* Offers the chain starting at head as the next avail entry. */
static void offer(uint16_t head, uint16_t size)
{
	avail()->ring[avail()->idx % size] = head;
	avail()->idx++;
}

static void set_desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	*desc(i) = (struct vring_desc){.addr = addr, .len = len, .flags = flags, .next = next};
}

static void walks_a_good_chain(void)
{
	fresh_memory();
	struct virtqueue q = queue(8);
	struct virtq_chain c;
	CHECK(virtq_pop(&mem, &q, &c) == 0); /* empty */
	set_desc(0, DATA, 16, VRING_DESC_F_NEXT, 3);
	set_desc(3, DATA + 16, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 5);
	set_desc(5, DATA + 528, 1, VRING_DESC_F_WRITE, 0);
	offer(0, 8);
	CHECK(virtq_pop(&mem, &q, &c) == 1);
	CHECK(c.head == 0 && c.count == 3);
	CHECK(c.bufs[0].host == mem.host + DATA && !c.bufs[0].writable);
	CHECK(c.bufs[1].len == 512 && c.bufs[1].writable);
	CHECK(virtq_pop(&mem, &q, &c) == 0);
	CHECK(virtq_push(&mem, &q, c.head, 513) == 0);
	struct vring_used *used = (struct vring_used *)(mem.host + USED);
	CHECK(used->idx == 1 && used->ring[0].id == 0 && used->ring[0].len == 513);
}

static void refuses_loops(void)
{
	fresh_memory();
	struct virtqueue q = queue(4);
	struct virtq_chain c;
	set_desc(0, DATA, 8, VRING_DESC_F_NEXT, 1);
	set_desc(1, DATA, 8, VRING_DESC_F_NEXT, 0); /* back to 0 */
	offer(0, 4);
	CHECK(virtq_pop(&mem, &q, &c) == -EINVAL);
	fresh_memory();
	q = queue(4);
	set_desc(2, DATA, 8, VRING_DESC_F_NEXT, 2); /* to itself */
	offer(2, 4);
	CHECK(virtq_pop(&mem, &q, &c) == -EINVAL);
}

static void refuses_out_of_range(void)
{
	struct virtq_chain c;
	const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{MEM_SIZE, 1},                 /* just past RAM */
		{MEM_SIZE - 4, 8},             /* straddles the end */
		{0xffffffffffffff00ULL, 0x200}, /* wraps around */
		{DATA, 0xffffffffu},           /* huge length */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		fresh_memory();
		struct virtqueue q = queue(4);
		set_desc(0, bad[i].addr, bad[i].len, 0, 0);
		offer(0, 4);
		CHECK(virtq_pop(&mem, &q, &c) == -EINVAL);
	}
	fresh_memory();
	struct virtqueue q = queue(4);
	set_desc(0, DATA, 8, VRING_DESC_F_NEXT, 9); /* next past the table */
	offer(0, 4);
	CHECK(virtq_pop(&mem, &q, &c) == -EINVAL);
	fresh_memory();
	q = queue(4);
	offer(7, 4); /* head past the table */
	CHECK(virtq_pop(&mem, &q, &c) == -EINVAL);
	fresh_memory();
	q = queue(4);
	avail()->idx = 9; /* claims more entries than the ring has */
	CHECK(virtq_pop(&mem, &q, &c) == -EINVAL);
	fresh_memory();
	q = queue(4);
	q.desc_gpa = MEM_SIZE - 16; /* the table itself outside RAM */
	offer(0, 4);
	CHECK(virtq_pop(&mem, &q, &c) == -EINVAL);
	q = queue(4);
	q.used_gpa = MEM_SIZE - 2;
	CHECK(virtq_push(&mem, &q, 0, 0) == -EINVAL);
}

static void overlapping_buffers_stay_in_bounds(void)
{
	fresh_memory();
	struct virtqueue q = queue(4);
	struct virtq_chain c;
	/* buffers that overlap each other and the ring itself: the guest's problem, not ours */
	set_desc(0, DESC, 64, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 1);
	set_desc(1, DESC + 8, 64, VRING_DESC_F_WRITE, 0);
	offer(0, 4);
	CHECK(virtq_pop(&mem, &q, &c) == 1 && c.count == 2);
	CHECK(c.bufs[1].host == mem.host + DESC + 8);
}

static void refuses_indirect_descriptors(void)
{
	fresh_memory();
	struct virtqueue q = queue(4);
	struct virtq_chain c;
	set_desc(0, DATA, 32, VRING_DESC_F_INDIRECT, 0);
	offer(0, 4);
	CHECK(virtq_pop(&mem, &q, &c) == -EINVAL);
}

/* ---- the register file ---- */

static int notified;

static void count_notify(struct virtio_device *dev, unsigned q)
{
	(void)dev;
	(void)q;
	notified++;
}

static const struct virtio_device_ops test_ops = {
	.name = "test", .device_id = 42, .num_queues = 1, .queue_notify = count_notify};

static void reg_write(struct virtio_device *d, uint64_t off, uint32_t v)
{
	d->io.write(&d->io, off, &v, 4);
}

static uint32_t reg_read(struct virtio_device *d, uint64_t off)
{
	uint32_t v;
	d->io.read(&d->io, off, &v, 4);
	return v;
}

static void set_up_driver(struct virtio_device *d, uint32_t size)
{
	reg_write(d, VIRTIO_MMIO_STATUS, 0);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	reg_write(d, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	reg_write(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
						 VIRTIO_CONFIG_S_FEATURES_OK);
	reg_write(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	reg_write(d, VIRTIO_MMIO_QUEUE_NUM, size);
	reg_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC);
	reg_write(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL);
	reg_write(d, VIRTIO_MMIO_QUEUE_USED_LOW, USED);
}

static void register_file_refuses_bad_queues(void)
{
	fresh_memory();
	struct virtio_device d;
	int efd = eventfd(0, EFD_NONBLOCK);
	virtio_mmio_init(&d, &test_ops, &mem, 0xd0000000, (struct irq_line){efd, 5}, NULL);
	CHECK(reg_read(&d, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976);
	CHECK(reg_read(&d, VIRTIO_MMIO_VERSION) == 2);
	CHECK(reg_read(&d, VIRTIO_MMIO_DEVICE_ID) == 42);

	/* notify before the queue is ready: ignored */
	reg_write(&d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	CHECK(notified == 0);

	const uint32_t bad_sizes[] = {0, 3, 100, 512, 65536};
	for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
		set_up_driver(&d, bad_sizes[i]);
		reg_write(&d, VIRTIO_MMIO_QUEUE_READY, 1);
		CHECK(reg_read(&d, VIRTIO_MMIO_QUEUE_READY) == 0);
		CHECK(reg_read(&d, VIRTIO_MMIO_STATUS) & 0x40); /* DEVICE_NEEDS_RESET */
	}
	set_up_driver(&d, 8);
	reg_write(&d, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC + 2); /* misaligned table */
	reg_write(&d, VIRTIO_MMIO_QUEUE_READY, 1);
	CHECK(reg_read(&d, VIRTIO_MMIO_QUEUE_READY) == 0);
	/* rings outside guest RAM, or running over its end, are refused when enabled */
	const uint64_t outside[][3] = {{MEM_SIZE, AVAIL, USED}, {DESC, MEM_SIZE - 2, USED},
				       {DESC, AVAIL, MEM_SIZE - 16}, {DESC, AVAIL, 1ull << 40}};
	for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
		set_up_driver(&d, 8);
		reg_write(&d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)outside[i][0]);
		reg_write(&d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)outside[i][1]);
		reg_write(&d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)outside[i][2]);
		reg_write(&d, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(outside[i][2] >> 32));
		reg_write(&d, VIRTIO_MMIO_QUEUE_READY, 1);
		CHECK(reg_read(&d, VIRTIO_MMIO_QUEUE_READY) == 0);
		CHECK(reg_read(&d, VIRTIO_MMIO_STATUS) & 0x40);
	}

	/* a good set-up works, and FEATURES_OK without VERSION_1 is refused */
	set_up_driver(&d, 8);
	reg_write(&d, VIRTIO_MMIO_QUEUE_READY, 1);
	reg_write(&d, VIRTIO_MMIO_STATUS, reg_read(&d, VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_DRIVER_OK);
	CHECK(reg_read(&d, VIRTIO_MMIO_QUEUE_READY) == 1);
	reg_write(&d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	reg_write(&d, VIRTIO_MMIO_QUEUE_NOTIFY, 7); /* no such queue */
	CHECK(notified == 1);
	reg_write(&d, VIRTIO_MMIO_QUEUE_NUM, 2); /* ignored while the queue is live */
	CHECK(d.queues[0].size == 8);
	reg_write(&d, VIRTIO_MMIO_STATUS, 0);
	reg_write(&d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_FEATURES_OK);
	CHECK((reg_read(&d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK) == 0);

	/* odd-sized and misaligned register accesses are ignored, reads give zero */
	uint8_t byte = 0xff;
	d.io.read(&d.io, VIRTIO_MMIO_MAGIC_VALUE, &byte, 1);
	CHECK(byte == 0);
	uint32_t v = 0xffffffff;
	d.io.read(&d.io, 0x2, &v, 4);
	CHECK(v == 0);
	close(efd);
}

int main(void)
{
	TEST(walks_a_good_chain);
	TEST(refuses_loops);
	TEST(refuses_out_of_range);
	TEST(overlapping_buffers_stay_in_bounds);
	TEST(refuses_indirect_descriptors);
	TEST(register_file_refuses_bad_queues);
	free(mem.host);
	return TEST_EXIT_STATUS();
}
