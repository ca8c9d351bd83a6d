/* virtio 1.x over MMIO (virtio spec, section 4.2) and split virtqueues (section 2.7). Each device
 * is one file that fills a struct virtio_device_ops; the transport here owns the register file,
 * the queues and interrupts, and never knows which device it carries.
 *
 * Everything in a virtqueue is guest-controlled: queue sizes, ring indices, descriptor addresses,
 * lengths and chains are all checked here, and a malformed queue fails the device (status
 * DEVICE_NEEDS_RESET), never the host process.
 */
#ifndef AIRLOCK_VIRTIO_H
#define AIRLOCK_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm.h"

#define VIRTQ_MAX_SIZE 256
#define VIRTIO_MAX_QUEUES 2

struct virtio_device;

struct virtio_device_ops {
	const char *name;
	uint32_t device_id;
	uint64_t features; /* device-specific; the transport adds VIRTIO_F_VERSION_1 */
	unsigned num_queues;
	/* Reads the device's configuration space (offset is within it). */
	void (*config_read)(struct virtio_device *dev, uint64_t offset, void *data, unsigned len);
	/* The driver notified queue q (called with dev->lock held). */
	void (*queue_notify)(struct virtio_device *dev, unsigned q);
	/* The driver reset the device (called with dev->lock held). */
	void (*reset)(struct virtio_device *dev);
	/* Snapshot of the device's own state, optional; called with dev->lock held, after the
	 * transport's state was saved or restored. restore checks what it reads (a file). */
	int (*save)(struct virtio_device *dev, void *buf, size_t cap, size_t *len);
	int (*restore)(struct virtio_device *dev, const void *buf, size_t len);
	/* Optional: logs the device's own state after the transport's (dev->lock held). */
	void (*report)(struct virtio_device *dev);
};

struct virtqueue {
	uint16_t size; /* set by the driver: a power of two, 1..VIRTQ_MAX_SIZE */
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t last_avail; /* next avail-ring entry the device will take */
	uint16_t used_idx;   /* next used-ring entry the device will fill */
};

struct virtq_buffer {
	uint8_t *host; /* checked: [host, host + len) is guest RAM */
	uint32_t len;
	bool writable; /* device-writable (VIRTQ_DESC_F_WRITE) */
};

/* One descriptor chain taken from the avail ring. */
struct virtq_chain {
	uint16_t head;
	unsigned count;
	struct virtq_buffer bufs[VIRTQ_MAX_SIZE];
};

struct virtio_device {
	const struct virtio_device_ops *ops;
	struct guest_memory *mem;
	struct io_device io; /* the 0x1000-byte register window */
	struct irq_line irq;
	pthread_mutex_t lock; /* the vCPU thread and a device's I/O thread both touch queues */
	uint32_t status;
	uint32_t device_features_sel, driver_features_sel, queue_sel;
	uint64_t driver_features;
	uint32_t interrupt_status;
	struct virtqueue queues[VIRTIO_MAX_QUEUES];
	void *state; /* the device's own */
};

/* Sets up the transport for a device (no VM: the unit tests use it on plain memory). */
void virtio_mmio_init(struct virtio_device *dev, const struct virtio_device_ops *ops,
		      struct guest_memory *mem, uint64_t base, struct irq_line irq, void *state);
/* The one place a device meets the VM: an interrupt line on gsi, the transport at base, and
 * the register window on the MMIO bus. Returns 0 or -errno. */
int virtio_mmio_attach(struct vm *vm, struct virtio_device *dev,
		       const struct virtio_device_ops *ops, uint64_t base, unsigned gsi, void *state);

/* The transport's snapshot (io_device save/restore of the register window): status, features,
 * interrupt status and every queue, then the device's own (ops->save/restore). */
int virtio_mmio_save(struct io_device *io, void *buf, size_t cap, size_t *len);
int virtio_mmio_restore(struct io_device *io, const void *buf, size_t len);

/* Takes the next chain from q's avail ring. Returns 1 with *chain filled, 0 when the ring is
 * empty or the queue not usable, -EINVAL for a malformed chain or ring (the caller fails the
 * device with virtio_fail). Indirect descriptors are not offered, so they are malformed. */
int virtq_pop(const struct guest_memory *mem, struct virtqueue *q, struct virtq_chain *chain);
/* Puts a finished chain in q's used ring with the bytes written into it. Returns 0 or -EINVAL
 * when the used ring lies outside guest RAM. */
int virtq_push(const struct guest_memory *mem, struct virtqueue *q, uint16_t head, uint32_t len);
/* Whether the driver has buffers waiting in q. */
bool virtq_has_avail(const struct guest_memory *mem, const struct virtqueue *q);

/* Raises the used-buffer interrupt unless the driver suppressed it for q. */
void virtio_notify_used(struct virtio_device *dev, struct virtqueue *q);
/* Marks the device as needing a reset (status bit 0x40) and logs why; its queues stop. */
void virtio_fail(struct virtio_device *dev, const char *why);
/* Whether the driver has finished set-up (DRIVER_OK) and the device has not failed. */
bool virtio_is_live(const struct virtio_device *dev);

#endif
