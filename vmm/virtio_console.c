/* virtio-console, one port (no MULTIPORT): the guest's /dev/hvc0, carrying the host channel.
 * transmitq (guest -> host) is served on the vCPU thread at the notify: bytes go straight to
 * the channel socket. receiveq (host -> guest) is filled by an I/O thread that reads the socket
 * whenever the guest has buffers posted; the guest's notify on receiveq wakes it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "virtio.h"

enum { RECEIVEQ = 0, TRANSMITQ = 1 };

/* A restored guest answers the host (airlock's PING, a RUN: the agent says at least that it
 * started) within milliseconds, a loaded emulated test host within seconds. Silent this long
 * after the host last spoke, its state is logged, twice, so that a VM airlock later gives up on
 * (60 s to become ready, or the program's timeout) has left its own account. A program that
 * computes long without output gets the same report, harmless beside its result. */
static const unsigned silence_report_s[] = {15, 40};

struct console {
	struct virtio_device dev;
	struct vm *vm;
	int channel_fd;
	int kick_fd; /* eventfd: the guest posted receive buffers */
	pthread_t thread;
	struct virtq_chain tx_chain;
	struct virtq_chain rx_chain;
	bool rx_held; /* rx_chain was popped and still waits for bytes */
	/* for reports (dev->lock): bytes each way, and a restored guest's silence since the host
	 * last spoke (or since the restore) */
	uint64_t to_guest, from_guest;
	bool restored;
	bool host_waits; /* the host spoke last: bytes went to the guest, none came back since */
	struct timespec spoke_at;
	unsigned silence_reports;
};

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void transmit(struct console *con)
{
	struct virtio_device *dev = &con->dev;
	struct virtqueue *q = &dev->queues[TRANSMITQ];
	int rc;
	bool done = false;
	while ((rc = virtq_pop(dev->mem, q, &con->tx_chain)) == 1) {
		for (unsigned i = 0; i < con->tx_chain.count; i++) {
			const struct virtq_buffer *b = &con->tx_chain.bufs[i];
			if (!b->writable && b->len && write_all(con->channel_fd, b->host, b->len)) {
				vmm_log("virtio-console: the host closed the channel");
				vm_request_stop(con->vm, 0);
			}
			if (!b->writable && b->len) {
				con->from_guest += b->len;
				con->host_waits = false;
			}
		}
		if (virtq_push(dev->mem, q, con->tx_chain.head, 0) != 0) {
			rc = -EINVAL;
			break;
		}
		done = true;
	}
	if (rc < 0)
		virtio_fail(dev, "malformed transmit queue");
	else if (done)
		virtio_notify_used(dev, q);
}

static void console_queue_notify(struct virtio_device *dev, unsigned q)
{
	struct console *con = dev->state;
	if (q == TRANSMITQ) {
		transmit(con);
	} else {
		uint64_t one = 1;
		(void)!write(con->kick_fd, &one, sizeof one);
	}
}

/* With dev->lock held: moves what the socket has into the guest's next receive chain.
 * Returns -EPIPE at end of file, 0 otherwise. */
static int receive(struct console *con)
{
	struct virtio_device *dev = &con->dev;
	struct virtqueue *q = &dev->queues[RECEIVEQ];
	if (!con->rx_held) {
		int rc = virtq_pop(dev->mem, q, &con->rx_chain);
		if (rc < 0)
			virtio_fail(dev, "malformed receive queue");
		if (rc != 1)
			return 0;
		con->rx_held = true;
	}
	struct iovec iov[VIRTQ_MAX_SIZE];
	int n_iov = 0;
	for (unsigned i = 0; i < con->rx_chain.count; i++)
		if (con->rx_chain.bufs[i].writable && con->rx_chain.bufs[i].len)
			iov[n_iov++] = (struct iovec){con->rx_chain.bufs[i].host,
						      con->rx_chain.bufs[i].len};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
	ssize_t n = n_iov ? recvmsg(con->channel_fd, &msg, MSG_DONTWAIT) : 0;
	if (n == 0 && n_iov)
		return -EPIPE;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0)
		return -EPIPE;
	con->rx_held = false;
	con->to_guest += (uint64_t)n;
	if (n > 0 && !con->host_waits) { /* the silence is timed from the first unanswered byte */
		con->host_waits = true;
		con->silence_reports = 0;
		clock_gettime(CLOCK_MONOTONIC, &con->spoke_at);
	}
	if (virtq_push(dev->mem, q, con->rx_chain.head, (uint32_t)n) != 0)
		virtio_fail(dev, "malformed receive queue");
	else
		virtio_notify_used(dev, q);
	return 0;
}

/* With dev->lock held: ms until the restored guest's silence is due for a report (0: now),
 * or -1 when it has answered the host, was not restored, or was reported on enough. */
static int silence_report_due(struct console *con)
{
	if (!con->restored || !con->host_waits ||
	    con->silence_reports >= sizeof silence_report_s / sizeof silence_report_s[0])
		return -1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t silent_ms = (now.tv_sec - con->spoke_at.tv_sec) * 1000 +
			    (now.tv_nsec - con->spoke_at.tv_nsec) / 1000000;
	int64_t due_ms = (int64_t)silence_report_s[con->silence_reports] * 1000 - silent_ms;
	return due_ms > 0 ? (int)due_ms : 0;
}

static void *console_io_thread(void *arg)
{
	struct console *con = arg;
	struct virtio_device *dev = &con->dev;
	for (;;) {
		pthread_mutex_lock(&dev->lock);
		bool can_receive = virtio_is_live(dev) &&
				   (con->rx_held || virtq_has_avail(dev->mem, &dev->queues[RECEIVEQ]));
		int due = silence_report_due(con);
		if (due == 0) {
			con->silence_reports++;
			vm_request_report(con->vm, "the restored guest has not answered the host for "
						   "15 s (then 40 s)");
			due = silence_report_due(con);
		}
		pthread_mutex_unlock(&dev->lock);
		struct pollfd fds[2] = {{con->kick_fd, POLLIN, 0},
					{can_receive ? con->channel_fd : -1, POLLIN, 0}};
		if (poll(fds, 2, due) < 0 && errno != EINTR)
			break;
		if (fds[0].revents) {
			uint64_t kicks;
			(void)!read(con->kick_fd, &kicks, sizeof kicks);
		}
		if (fds[1].revents) {
			pthread_mutex_lock(&dev->lock);
			int rc = receive(con);
			pthread_mutex_unlock(&dev->lock);
			if (rc == -EPIPE) {
				/* the host went away: nobody is left to serve */
				vm_request_stop(con->vm, 0);
				break;
			}
		}
	}
	return NULL;
}

static void console_reset(struct virtio_device *dev)
{
	struct console *con = dev->state;
	con->rx_held = false;
}

/* Snapshot: one byte, whether a receive chain was taken from the ring and still waits for
 * host bytes. Rather than keeping its descriptors, the restored device puts it back: the
 * chain stays in the avail ring until used, so the next receive takes it again. */
struct saved_console {
	uint8_t rx_held;
	uint8_t reserved[7];
};

static int console_save(struct virtio_device *dev, void *buf, size_t cap, size_t *len)
{
	struct console *con = dev->state;
	struct saved_console s = {.rx_held = con->rx_held};
	if (cap < sizeof s)
		return -E2BIG;
	memcpy(buf, &s, sizeof s);
	*len = sizeof s;
	return 0;
}

static int console_restore(struct virtio_device *dev, const void *buf, size_t len)
{
	struct console *con = dev->state;
	struct saved_console s;
	if (len != sizeof s)
		return -EINVAL;
	memcpy(&s, buf, sizeof s);
	if (s.rx_held > 1 || (s.rx_held && !dev->queues[RECEIVEQ].ready))
		return -EINVAL;
	if (s.rx_held)
		dev->queues[RECEIVEQ].last_avail--;
	con->rx_held = false;
	con->restored = true;
	/* a restored guest waits for the host: its silence counts from the restore */
	con->host_waits = true;
	clock_gettime(CLOCK_MONOTONIC, &con->spoke_at);
	/* the I/O thread started before this state existed and waits for a kick: the restored
	 * guest's receive buffers are already posted (and its silence is now timed) */
	uint64_t one = 1;
	(void)!write(con->kick_fd, &one, sizeof one);
	return 0;
}

static void console_report(struct virtio_device *dev)
{
	struct console *con = dev->state;
	struct pollfd p = {con->channel_fd, POLLIN, 0};
	bool waiting = poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
	vmm_log("  virtio-console: %llu bytes to the guest, %llu from it; a receive chain held: "
		"%d; host bytes waiting in the channel: %s",
		(unsigned long long)con->to_guest, (unsigned long long)con->from_guest, con->rx_held,
		waiting ? "yes" : "no");
}

static const struct virtio_device_ops console_ops = {
	.name = "virtio-console",
	.device_id = 3, /* VIRTIO_ID_CONSOLE */
	.features = 0,  /* one port, no size, no emergency write */
	.num_queues = 2,
	.queue_notify = console_queue_notify,
	.reset = console_reset,
	.save = console_save,
	.restore = console_restore,
	.report = console_report,
};

int virtio_console_create(struct vm *vm, int channel_fd, uint64_t base, unsigned gsi)
{
	struct console *con = calloc(1, sizeof *con);
	if (!con)
		return -ENOMEM;
	con->vm = vm;
	con->channel_fd = channel_fd;
	con->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int rc = con->kick_fd < 0 ? -errno
				  : virtio_mmio_attach(vm, &con->dev, &console_ops, base, gsi, con);
	if (rc == 0)
		rc = -pthread_create(&con->thread, NULL, console_io_thread, con);
	return rc; /* on failure the process exits: nothing to unwind */
}
