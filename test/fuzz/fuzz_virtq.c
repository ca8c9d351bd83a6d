/* libFuzzer target: the virtio-mmio transport and the virtqueue walker against a hostile driver.
 * The input is a script of what a guest can do: write and read the register window, write guest
 * memory (rings, descriptors, buffers), notify, and, as a snapshot file could, hand the
 * transport a saved-state blob. The device behind it takes every chain offered, writes into its
 * writable buffers and returns it, the way the console and block devices do. Guest memory is a
 * malloc'd block of exactly its size, so ASan sees any access outside it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "virtio.h"

#define MEM_SIZE (64u << 10)

static volatile uint8_t sink; /* the device reads its readable buffers into this */

static void drain_notify(struct virtio_device *dev, unsigned qi)
{
	struct virtqueue *q = &dev->queues[qi];
	static struct virtq_chain chain;
	for (unsigned taken = 0; taken < VIRTQ_MAX_SIZE * 2; taken++) {
		int rc = virtq_pop(dev->mem, q, &chain);
		if (rc < 0) {
			virtio_fail(dev, "malformed queue");
			return;
		}
		if (rc == 0)
			return;
		if (chain.count == 0 || chain.count > q->size)
			abort(); /* the walker returned a chain it should have refused */
		uint32_t written = 0;
		for (unsigned i = 0; i < chain.count; i++) {
			struct virtq_buffer *b = &chain.bufs[i];
			if (b->writable) {
				memset(b->host, 0xa5, b->len);
				written += b->len;
			} else {
				for (uint32_t j = 0; j < b->len; j += 512)
					sink ^= b->host[j];
				if (b->len)
					sink ^= b->host[b->len - 1];
			}
		}
		if (virtq_push(dev->mem, q, chain.head, written) != 0) {
			virtio_fail(dev, "malformed used ring");
			return;
		}
		virtio_notify_used(dev, q);
	}
}

static void config_read(struct virtio_device *dev, uint64_t offset, void *data, unsigned len)
{
	(void)dev;
	(void)offset;
	memset(data, 0x5a, len);
}

static const struct virtio_device_ops drain_ops = {
	.name = "fuzz-drain",
	.device_id = 3,
	.num_queues = 2,
	.config_read = config_read,
	.queue_notify = drain_notify,
};

/* Reads n bytes of the script, or fails when it ran out. */
static bool take(const uint8_t **data, size_t *size, void *out, size_t n)
{
	if (*size < n)
		return false;
	memcpy(out, *data, n);
	*data += n;
	*size -= n;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_memory mem;
	static int irq_fd = -1;
	if (!mem.host) {
		mem.host = malloc(MEM_SIZE);
		mem.size = MEM_SIZE;
		irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (!mem.host || irq_fd < 0)
			abort();
	}
	memset(mem.host, 0, MEM_SIZE);
	struct virtio_device dev;
	virtio_mmio_init(&dev, &drain_ops, &mem, 0, (struct irq_line){.fd = irq_fd, .gsi = 5}, NULL);

	for (unsigned steps = 0; steps < 4096; steps++) {
		uint8_t op;
		uint16_t at;
		uint32_t value;
		if (!take(&data, &size, &op, 1) || !take(&data, &size, &at, 2))
			break;
		switch (op % 5) {
		case 0: /* a register write (the queue notify register among them) */
			if (!take(&data, &size, &value, 4))
				goto out;
			dev.io.write(&dev.io, at % 0x200, &value, 4);
			break;
		case 1: { /* a register or config read, of any width */
			uint8_t buf[8];
			dev.io.read(&dev.io, at % 0x200, buf, 1u << (op >> 6));
			break;
		}
		case 2: { /* the driver writes guest memory: up to 16 bytes at a 16-bit address */
			uint8_t len, buf[16];
			if (!take(&data, &size, &len, 1))
				goto out;
			len %= 17;
			if (!take(&data, &size, buf, len))
				goto out;
			size_t room = MEM_SIZE - at;
			memcpy(mem.host + at, buf, len < room ? len : room);
			break;
		}
		case 3: /* a descriptor's address may point anywhere, guest RAM's end included */
			if (!take(&data, &size, &value, 4))
				goto out;
			memcpy(mem.host + (at % (MEM_SIZE - 8)), &value, 4);
			break;
		case 4: { /* a saved state blob as a snapshot file would hand it over */
			uint8_t blob[256];
			size_t n = at % sizeof blob;
			if (!take(&data, &size, blob, n))
				goto out;
			(void)dev.io.restore(&dev.io, blob, n);
			break;
		}
		}
	}
out:
	pthread_mutex_destroy(&dev.lock);
	uint64_t drained;
	(void)!read(irq_fd, &drained, sizeof drained);
	return 0;
}
