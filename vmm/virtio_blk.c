/* virtio-blk: the guest's root disk, read-only, one request queue. Requests are served on the
 * vCPU thread at the notify (pread straight into guest memory). A request that is malformed or
 * out of range gets an error status; a malformed queue fails the device.
 */
#include <errno.h>
#include <linux/virtio_blk.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "virtio.h"

#define SECTOR_SIZE 512u
#define DISK_ID "airlock-root"

struct blk {
	struct virtio_device dev;
	int fd;
	uint64_t size; /* bytes */
	struct virtq_chain chain;
};

static void blk_config_read(struct virtio_device *dev, uint64_t offset, void *data, unsigned len)
{
	struct blk *blk = dev->state;
	struct virtio_blk_config config;
	memset(&config, 0, sizeof config);
	config.capacity = blk->size / SECTOR_SIZE;
	if (offset < sizeof config && len <= sizeof config - offset)
		memcpy(data, (uint8_t *)&config + offset, len);
}

static int read_disk(struct blk *blk, uint8_t *dst, uint32_t len, uint64_t offset)
{
	if (offset > blk->size || len > blk->size - offset)
		return -EINVAL; /* past the end of the disk */
	while (len > 0) {
		ssize_t n = pread(blk->fd, dst, len, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		dst += n;
		len -= (uint32_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/* Serves one request; returns the bytes written into the chain (the status byte included). */
static uint32_t serve_request(struct blk *blk, const struct virtq_chain *c)
{
	const struct virtq_buffer *hdr = &c->bufs[0], *status = &c->bufs[c->count - 1];
	if (c->count < 2 || hdr->writable || hdr->len < sizeof(struct virtio_blk_outhdr) ||
	    !status->writable || status->len < 1)
		return 0; /* no header or no status byte to answer in: nothing to report */
	struct virtio_blk_outhdr h;
	memcpy(&h, hdr->host, sizeof h);
	uint8_t result = VIRTIO_BLK_S_OK;
	uint32_t written = 0;
	switch (h.type) {
	case VIRTIO_BLK_T_IN: {
		if (h.sector > UINT64_MAX / SECTOR_SIZE) {
			result = VIRTIO_BLK_S_IOERR;
			break;
		}
		uint64_t offset = h.sector * SECTOR_SIZE;
		for (unsigned i = 1; i + 1 < c->count && result == VIRTIO_BLK_S_OK; i++) {
			const struct virtq_buffer *b = &c->bufs[i];
			if (!b->writable || read_disk(blk, b->host, b->len, offset) != 0) {
				result = VIRTIO_BLK_S_IOERR;
				break;
			}
			offset += b->len;
			written += b->len;
		}
		break;
	}
	case VIRTIO_BLK_T_OUT:
		result = VIRTIO_BLK_S_IOERR; /* the root disk is read-only */
		break;
	case VIRTIO_BLK_T_FLUSH:
		break;
	case VIRTIO_BLK_T_GET_ID:
		if (c->count > 2 && c->bufs[1].writable) {
			uint32_t n = c->bufs[1].len < VIRTIO_BLK_ID_BYTES ? c->bufs[1].len
									  : VIRTIO_BLK_ID_BYTES;
			memset(c->bufs[1].host, 0, n);
			memcpy(c->bufs[1].host, DISK_ID, n < sizeof DISK_ID ? n : sizeof DISK_ID);
			written = n;
		} else {
			result = VIRTIO_BLK_S_IOERR;
		}
		break;
	default:
		result = VIRTIO_BLK_S_UNSUPP;
	}
	status->host[0] = result;
	return written + 1;
}

static void blk_queue_notify(struct virtio_device *dev, unsigned q)
{
	struct blk *blk = dev->state;
	struct virtqueue *queue = &dev->queues[q];
	int rc;
	bool served = false;
	while ((rc = virtq_pop(dev->mem, queue, &blk->chain)) == 1) {
		uint32_t written = serve_request(blk, &blk->chain);
		if (virtq_push(dev->mem, queue, blk->chain.head, written) != 0) {
			rc = -EINVAL;
			break;
		}
		served = true;
	}
	if (rc < 0)
		virtio_fail(dev, "malformed request queue");
	else if (served)
		virtio_notify_used(dev, queue);
}

/* Snapshot: the disk's size. The guest's page cache holds blocks of the disk it saw, so the
 * disk given at restore must be that one; its size is the check we can afford. */
struct saved_blk {
	uint64_t size;
};

static int blk_save(struct virtio_device *dev, void *buf, size_t cap, size_t *len)
{
	struct blk *blk = dev->state;
	struct saved_blk s = {.size = blk->size};
	if (cap < sizeof s)
		return -E2BIG;
	memcpy(buf, &s, sizeof s);
	*len = sizeof s;
	return 0;
}

static int blk_restore(struct virtio_device *dev, const void *buf, size_t len)
{
	struct blk *blk = dev->state;
	struct saved_blk s;
	if (len != sizeof s)
		return -EINVAL;
	memcpy(&s, buf, sizeof s);
	if (s.size != blk->size) {
		vmm_log("snapshot: virtio-blk: the snapshot's root disk had %llu bytes, this one %llu",
			(unsigned long long)s.size, (unsigned long long)blk->size);
		return -EINVAL;
	}
	return 0;
}

static const struct virtio_device_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = 2, /* VIRTIO_ID_BLOCK */
	.features = 1ULL << VIRTIO_BLK_F_RO,
	.num_queues = 1,
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.save = blk_save,
	.restore = blk_restore,
};

int virtio_blk_create(struct vm *vm, int disk_fd, uint64_t base, unsigned gsi)
{
	struct blk *blk = calloc(1, sizeof *blk);
	if (!blk)
		return -ENOMEM;
	off_t size = lseek(disk_fd, 0, SEEK_END); /* works for files and block devices */
	if (size < 0) {
		int err = -errno;
		free(blk);
		vmm_log("virtio-blk: cannot size the disk: %s", strerror(-err));
		return err;
	}
	blk->fd = disk_fd;
	blk->size = (uint64_t)size / SECTOR_SIZE * SECTOR_SIZE;
	int rc = virtio_mmio_attach(vm, &blk->dev, &blk_ops, base, gsi, blk);
	if (rc)
		free(blk);
	return rc;
}
