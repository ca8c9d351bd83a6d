/* The virtio-mmio transport and split virtqueues (see virtio.h). */
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>
#include <stdio.h>
#include <string.h>

#include "virtio.h"

#define VIRTIO_MMIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x4b434c41 /* "ALCK" */
#define VIRTIO_STATUS_NEEDS_RESET 0x40

void *gpa_ptr(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
	if (gpa > mem->size || len > mem->size - gpa)
		return NULL;
	return mem->host + gpa;
}

/* ---- virtqueues ---- */

static bool is_power_of_two(uint32_t v)
{
	return v && (v & (v - 1)) == 0;
}

static struct vring_avail *avail_ring(const struct guest_memory *mem, const struct virtqueue *q)
{
	return gpa_ptr(mem, q->avail_gpa, sizeof(struct vring_avail) + 2u * q->size + 2);
}

bool virtq_has_avail(const struct guest_memory *mem, const struct virtqueue *q)
{
	if (!q->ready)
		return false;
	struct vring_avail *avail = avail_ring(mem, q);
	return avail && __atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE) != q->last_avail;
}

int virtq_pop(const struct guest_memory *mem, struct virtqueue *q, struct virtq_chain *chain)
{
	if (!q->ready)
		return 0;
	struct vring_avail *avail = avail_ring(mem, q);
	struct vring_desc *table = gpa_ptr(mem, q->desc_gpa, sizeof(struct vring_desc) * q->size);
	if (!avail || !table)
		return -EINVAL;
	uint16_t avail_idx = __atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE);
	if (avail_idx == q->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - q->last_avail) > q->size)
		return -EINVAL; /* the driver claims more entries than the ring holds */
	uint16_t head = __atomic_load_n(&avail->ring[q->last_avail % q->size], __ATOMIC_RELAXED);

	unsigned count = 0;
	for (uint16_t i = head;;) {
		/* a chain longer than the queue must revisit a descriptor: a loop */
		if (i >= q->size || count >= q->size)
			return -EINVAL;
		struct vring_desc d;
		memcpy(&d, &table[i], sizeof d); /* one read: the guest may change it meanwhile */
		if (d.flags & VRING_DESC_F_INDIRECT)
			return -EINVAL;
		uint8_t *host = gpa_ptr(mem, d.addr, d.len);
		if (!host)
			return -EINVAL;
		chain->bufs[count++] = (struct virtq_buffer){
			.host = host, .len = d.len, .writable = (d.flags & VRING_DESC_F_WRITE) != 0};
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		i = d.next;
	}
	chain->head = head;
	chain->count = count;
	q->last_avail++;
	return 1;
}

int virtq_push(const struct guest_memory *mem, struct virtqueue *q, uint16_t head, uint32_t len)
{
	struct vring_used *used = gpa_ptr(mem, q->used_gpa,
					  sizeof(struct vring_used) +
						  sizeof(struct vring_used_elem) * q->size + 2);
	if (!used || q->size == 0)
		return -EINVAL;
	struct vring_used_elem *e = &used->ring[q->used_idx % q->size];
	e->id = head;
	e->len = len;
	q->used_idx++;
	__atomic_store_n(&used->idx, q->used_idx, __ATOMIC_RELEASE);
	return 0;
}

/* ---- interrupts and failure ---- */

void virtio_notify_used(struct virtio_device *dev, struct virtqueue *q)
{
	struct vring_avail *avail = avail_ring(dev->mem, q);
	/* the flag is read after the used index was published (release in virtq_push) */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (avail && (__atomic_load_n(&avail->flags, __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT))
		return;
	dev->interrupt_status |= VIRTIO_MMIO_INT_VRING;
	irq_raise(&dev->irq);
}

void virtio_fail(struct virtio_device *dev, const char *why)
{
	if (!(dev->status & VIRTIO_STATUS_NEEDS_RESET))
		vmm_log("%s: device failed: %s", dev->ops->name, why);
	dev->status |= VIRTIO_STATUS_NEEDS_RESET;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		dev->queues[i].ready = false;
}

bool virtio_is_live(const struct virtio_device *dev)
{
	return (dev->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
	       !(dev->status & VIRTIO_STATUS_NEEDS_RESET);
}

/* ---- the register file ---- */

static uint64_t offered_features(const struct virtio_device *dev)
{
	return dev->ops->features | (1ULL << VIRTIO_F_VERSION_1);
}

static struct virtqueue *selected_queue(struct virtio_device *dev)
{
	return dev->queue_sel < dev->ops->num_queues ? &dev->queues[dev->queue_sel] : NULL;
}

static void reset_device(struct virtio_device *dev)
{
	dev->status = 0;
	dev->driver_features = 0;
	dev->interrupt_status = 0;
	dev->device_features_sel = dev->driver_features_sel = dev->queue_sel = 0;
	memset(dev->queues, 0, sizeof dev->queues);
	if (dev->ops->reset)
		dev->ops->reset(dev);
}

static void enable_queue(struct virtio_device *dev, struct virtqueue *q)
{
	if (!is_power_of_two(q->size) || q->size > VIRTQ_MAX_SIZE) {
		virtio_fail(dev, "queue size is not a power of two in 1..256");
		return;
	}
	/* the spec's alignment rules; unaligned rings would also be unaligned host accesses */
	if (q->desc_gpa % 16 || q->avail_gpa % 2 || q->used_gpa % 4) {
		virtio_fail(dev, "misaligned virtqueue");
		return;
	}
	/* rings outside RAM would leave a queue that is live but never served (nothing can be
	 * read from it): refuse them now, with a reason */
	if (!gpa_ptr(dev->mem, q->desc_gpa, sizeof(struct vring_desc) * q->size) ||
	    !avail_ring(dev->mem, q) ||
	    !gpa_ptr(dev->mem, q->used_gpa,
		     sizeof(struct vring_used) + sizeof(struct vring_used_elem) * q->size + 2)) {
		virtio_fail(dev, "virtqueue rings outside guest RAM");
		return;
	}
	q->ready = true;
	q->last_avail = q->used_idx = 0;
}

static void set_half(uint64_t *value, bool high, uint32_t v)
{
	*value = high ? (*value & 0xffffffffULL) | ((uint64_t)v << 32)
		      : (*value & ~0xffffffffULL) | v;
}

static uint32_t register_read(struct virtio_device *dev, uint64_t offset)
{
	struct virtqueue *q = selected_queue(dev);
	switch (offset) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return dev->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return dev->device_features_sel > 1
			       ? 0
			       : (uint32_t)(offered_features(dev) >> (32 * dev->device_features_sel));
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return q ? VIRTQ_MAX_SIZE : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return dev->interrupt_status;
	case VIRTIO_MMIO_STATUS:
		return dev->status;
	default:
		return 0; /* config generation 0, no shared memory, write-only registers */
	}
}

static void register_write(struct virtio_device *dev, uint64_t offset, uint32_t v)
{
	struct virtqueue *q = selected_queue(dev);
	bool queue_writable = q && !q->ready; /* queue set-up only while it is not live */
	switch (offset) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		dev->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (!(dev->status & VIRTIO_CONFIG_S_FEATURES_OK) && dev->driver_features_sel <= 1)
			set_half(&dev->driver_features, dev->driver_features_sel == 1,
				 v & (uint32_t)(offered_features(dev) >>
						(32 * dev->driver_features_sel)));
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		dev->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		dev->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (queue_writable)
			q->size = v > 0xffff ? 0 : (uint16_t)v; /* checked when enabled */
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (q && v == 1 && !q->ready)
			enable_queue(dev, q);
		else if (q && v == 0)
			q->ready = false;
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* a notify for a queue that is not live (never enabled, or failed) is ignored */
		if (v < dev->ops->num_queues && dev->queues[v].ready && virtio_is_live(dev))
			dev->ops->queue_notify(dev, v);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		dev->interrupt_status &= ~v;
		break;
	case VIRTIO_MMIO_STATUS:
		if (v == 0) {
			reset_device(dev);
		} else {
			/* a modern-only device: refuse FEATURES_OK without VERSION_1 */
			if ((v & VIRTIO_CONFIG_S_FEATURES_OK) &&
			    !(dev->driver_features & (1ULL << VIRTIO_F_VERSION_1)))
				v &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
			dev->status = v | (dev->status & VIRTIO_STATUS_NEEDS_RESET);
		}
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (queue_writable)
			set_half(&q->desc_gpa, offset == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (queue_writable)
			set_half(&q->avail_gpa, offset == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, v);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (queue_writable)
			set_half(&q->used_gpa, offset == VIRTIO_MMIO_QUEUE_USED_HIGH, v);
		break;
	default:
		break; /* read-only or unknown registers */
	}
}

static void mmio_read(struct io_device *io, uint64_t offset, void *data, unsigned len)
{
	struct virtio_device *dev = io->state;
	memset(data, 0, len);
	pthread_mutex_lock(&dev->lock);
	if (offset >= VIRTIO_MMIO_CONFIG) {
		if (dev->ops->config_read)
			dev->ops->config_read(dev, offset - VIRTIO_MMIO_CONFIG, data, len);
	} else if (len == 4 && offset % 4 == 0) {
		uint32_t v = register_read(dev, offset);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&dev->lock);
}

static void mmio_write(struct io_device *io, uint64_t offset, const void *data, unsigned len)
{
	struct virtio_device *dev = io->state;
	if (offset >= VIRTIO_MMIO_CONFIG || len != 4 || offset % 4)
		return; /* config space is read-only for our devices; registers are 32-bit */
	uint32_t v;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&dev->lock);
	register_write(dev, offset, v);
	pthread_mutex_unlock(&dev->lock);
}

/* ---- snapshot ----
 *
 * The transport's blob: struct saved_transport, then the device's own blob (ops->save). */

struct saved_queue {
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t size, last_avail, used_idx;
	uint8_t ready, reserved;
};

struct saved_transport {
	uint32_t device_id, num_queues;
	uint32_t status, interrupt_status;
	uint32_t device_features_sel, driver_features_sel, queue_sel, reserved;
	uint64_t driver_features;
	struct saved_queue queues[VIRTIO_MAX_QUEUES];
};
_Static_assert(sizeof(struct saved_queue) == 32, "saved_queue has no padding");
_Static_assert(sizeof(struct saved_transport) == 40 + 32 * VIRTIO_MAX_QUEUES,
	       "saved_transport has no padding");

#define VIRTIO_STATUS_KNOWN 0xcf /* ACK, DRIVER, DRIVER_OK, FEATURES_OK, NEEDS_RESET, FAILED */

int virtio_mmio_save(struct io_device *io, void *buf, size_t cap, size_t *len)
{
	struct virtio_device *dev = io->state;
	if (cap < sizeof(struct saved_transport))
		return -E2BIG;
	pthread_mutex_lock(&dev->lock);
	struct saved_transport t = {
		.device_id = dev->ops->device_id, .num_queues = dev->ops->num_queues,
		.status = dev->status, .interrupt_status = dev->interrupt_status,
		.device_features_sel = dev->device_features_sel,
		.driver_features_sel = dev->driver_features_sel, .queue_sel = dev->queue_sel,
		.driver_features = dev->driver_features};
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		const struct virtqueue *q = &dev->queues[i];
		t.queues[i] = (struct saved_queue){
			.desc_gpa = q->desc_gpa, .avail_gpa = q->avail_gpa, .used_gpa = q->used_gpa,
			.size = q->size, .last_avail = q->last_avail, .used_idx = q->used_idx,
			.ready = q->ready};
	}
	memcpy(buf, &t, sizeof t);
	size_t own = 0;
	int rc = dev->ops->save ? dev->ops->save(dev, (uint8_t *)buf + sizeof t,
						 cap - sizeof t, &own)
				: 0;
	pthread_mutex_unlock(&dev->lock);
	*len = sizeof t + own;
	return rc;
}

/* A live queue from a file must be one the driver could have set up: enable_queue's rules, and
 * all three areas inside guest RAM. */
static const char *check_saved_queue(const struct guest_memory *mem, const struct saved_queue *q)
{
	if (q->ready > 1)
		return "queue ready flag";
	if (!q->ready)
		return NULL; /* checked again when the driver enables it */
	if (!is_power_of_two(q->size) || q->size > VIRTQ_MAX_SIZE)
		return "queue size";
	if (q->desc_gpa % 16 || q->avail_gpa % 2 || q->used_gpa % 4)
		return "misaligned queue";
	if (!gpa_ptr(mem, q->desc_gpa, sizeof(struct vring_desc) * q->size) ||
	    !gpa_ptr(mem, q->avail_gpa, sizeof(struct vring_avail) + 2u * q->size + 2) ||
	    !gpa_ptr(mem, q->used_gpa,
		     sizeof(struct vring_used) + sizeof(struct vring_used_elem) * q->size + 2))
		return "queue outside guest memory";
	return NULL;
}

int virtio_mmio_restore(struct io_device *io, const void *buf, size_t len)
{
	struct virtio_device *dev = io->state;
	struct saved_transport t;
	if (len < sizeof t) {
		vmm_log("snapshot: %s: state is %zu bytes, too short", dev->ops->name, len);
		return -EINVAL;
	}
	memcpy(&t, buf, sizeof t);
	const char *bad = NULL;
	if (t.device_id != dev->ops->device_id || t.num_queues != dev->ops->num_queues)
		bad = "another kind of device";
	else if (t.status & ~(uint32_t)VIRTIO_STATUS_KNOWN)
		bad = "device status";
	else if (t.driver_features & ~offered_features(dev))
		bad = "features the device never offered";
	else if (t.interrupt_status & ~(uint32_t)(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG))
		bad = "interrupt status";
	for (unsigned i = 0; !bad && i < VIRTIO_MAX_QUEUES; i++) {
		if (i >= t.num_queues)
			bad = t.queues[i].ready ? "a queue the device does not have" : NULL;
		else
			bad = check_saved_queue(dev->mem, &t.queues[i]);
	}
	if (bad) {
		vmm_log("snapshot: %s: bad transport state (%s)", dev->ops->name, bad);
		return -EINVAL;
	}
	pthread_mutex_lock(&dev->lock);
	dev->status = t.status;
	dev->interrupt_status = t.interrupt_status;
	dev->device_features_sel = t.device_features_sel;
	dev->driver_features_sel = t.driver_features_sel;
	dev->queue_sel = t.queue_sel;
	dev->driver_features = t.driver_features;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++) {
		const struct saved_queue *s = &t.queues[i];
		dev->queues[i] = (struct virtqueue){
			.size = s->size, .ready = s->ready, .desc_gpa = s->desc_gpa,
			.avail_gpa = s->avail_gpa, .used_gpa = s->used_gpa,
			.last_avail = s->last_avail, .used_idx = s->used_idx};
	}
	int rc = 0;
	const uint8_t *own = (const uint8_t *)buf + sizeof t;
	if (dev->ops->restore)
		rc = dev->ops->restore(dev, own, len - sizeof t);
	else if (len != sizeof t)
		rc = -EINVAL;
	pthread_mutex_unlock(&dev->lock);
	if (rc)
		vmm_log("snapshot: %s: bad device state", dev->ops->name);
	return rc;
}

int virtio_mmio_attach(struct vm *vm, struct virtio_device *dev,
		       const struct virtio_device_ops *ops, uint64_t base, unsigned gsi, void *state)
{
	struct irq_line irq;
	int rc = vm_irq_line(vm, gsi, &irq);
	if (rc)
		return rc;
	virtio_mmio_init(dev, ops, &vm->mem, base, irq, state);
	return vm_add_device(vm, &dev->io);
}

/* For a VM that ended or stalls unexplained: the transport's state, each live queue as the
 * device and the driver each see it (the guest's ring indices read from its memory, as they
 * are), then the device's own. */
static void virtio_mmio_report(struct io_device *io)
{
	struct virtio_device *dev = io->state;
	pthread_mutex_lock(&dev->lock);
	char queues[2 * 160] = "";
	size_t used = 0;
	for (unsigned i = 0; i < dev->ops->num_queues && i < VIRTIO_MAX_QUEUES; i++) {
		const struct virtqueue *q = &dev->queues[i];
		const struct vring_avail *avail = q->ready ? avail_ring(dev->mem, q) : NULL;
		const struct vring_used *ring =
			q->ready ? gpa_ptr(dev->mem, q->used_gpa, sizeof(struct vring_used)) : NULL;
		int n = snprintf(queues + used, sizeof queues - used,
				 "; q%u ready=%d size=%u last_avail=%u used=%u avail.idx=%d "
				 "avail.flags=%#x used.idx=%d",
				 i, q->ready, q->size, q->last_avail, q->used_idx,
				 avail ? __atomic_load_n(&avail->idx, __ATOMIC_RELAXED) : -1,
				 avail ? __atomic_load_n(&avail->flags, __ATOMIC_RELAXED) : 0,
				 ring ? __atomic_load_n(&ring->idx, __ATOMIC_RELAXED) : -1);
		if (n < 0 || (size_t)n >= sizeof queues - used)
			break;
		used += (size_t)n;
	}
	vmm_log("  %s: status=%#x interrupt_status=%#x%s", dev->ops->name, dev->status,
		dev->interrupt_status, queues);
	if (dev->ops->report)
		dev->ops->report(dev);
	pthread_mutex_unlock(&dev->lock);
}

void virtio_mmio_init(struct virtio_device *dev, const struct virtio_device_ops *ops,
		      struct guest_memory *mem, uint64_t base, struct irq_line irq, void *state)
{
	memset(dev, 0, sizeof *dev);
	dev->ops = ops;
	dev->mem = mem;
	dev->irq = irq;
	dev->state = state;
	pthread_mutex_init(&dev->lock, NULL);
	dev->io = (struct io_device){
		.name = ops->name,
		.is_port = false,
		.base = base,
		.size = 0x1000,
		.read = mmio_read,
		.write = mmio_write,
		.save = virtio_mmio_save,
		.restore = virtio_mmio_restore,
		.report = virtio_mmio_report,
		.state = dev,
	};
}
