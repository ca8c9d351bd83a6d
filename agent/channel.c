/* The agent's end of the host channel: a virtio-console tty switched to raw mode, carrying the
 * frames of proto.h. Writes are blocking and complete; the host reads as fast as it can (and
 * says how much output it takes with CREDIT, which exec.c honours).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

int channel_open(const char *path)
{
	int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* hvc0 is a tty: without raw mode the line discipline would echo, translate CR/LF and
	 * eat control bytes, corrupting binary frames. */
	struct termios t;
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		if (tcsetattr(fd, TCSANOW, &t) != 0) {
			int err = -errno;
			close(fd);
			return err;
		}
	}
	return fd;
}

/* QEMU's port: /dev/vportNp1, N being the virtio device's index (the order of probing). */
static int open_serial_port(void)
{
	DIR *dev = opendir("/dev");
	int fd = -ENOENT;
	struct dirent *e;
	while (dev && fd < 0 && (e = readdir(dev)) != NULL) {
		size_t n = strlen(e->d_name);
		char path[300];
		if (strncmp(e->d_name, "vport", 5) == 0 && n > 7 &&
		    strcmp(e->d_name + n - 2, "p1") == 0) {
			snprintf(path, sizeof path, "/dev/%s", e->d_name);
			fd = channel_open(path);
		}
	}
	if (dev)
		closedir(dev);
	return fd;
}

int channel_find(void)
{
	int fd = open_serial_port();
	return fd >= 0 ? fd : channel_open("/dev/hvc0");
}

int fd_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int channel_send_on(int fd, uint32_t type, uint32_t stream, const void *payload, size_t len)
{
	if (len > AL_FRAME_MAX_PAYLOAD)
		return -EMSGSIZE;
	struct al_frame_header h = {.type = type, .length = (uint32_t)len, .stream = stream};
	int rc = fd_write_all(fd, &h, sizeof h);
	if (rc == 0 && len)
		rc = fd_write_all(fd, payload, len);
	return rc;
}

int channel_send(int fd, uint32_t type, const void *payload, size_t len)
{
	return channel_send_on(fd, type, AL_STREAM_CONVERSATION, payload, len);
}

void channel_send_error(int fd, const char *fmt, ...)
{
	char text[AL_FRAME_MAX_ERROR_TEXT];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
	fprintf(stderr, "airlock-agent: %s\n", text);
	(void)channel_send(fd, AL_FRAME_ERROR, text, len);
}

int channel_recv(int fd, uint32_t *type, uint32_t *stream, uint8_t **payload, size_t *len)
{
	struct al_frame_header h;
	int rc = read_all(fd, &h, sizeof h);
	if (rc)
		return rc;
	if (h.length > AL_FRAME_MAX_PAYLOAD || h.flags != 0)
		return -EPROTO;
	uint8_t *buf = malloc(h.length ? h.length : 1);
	if (!buf)
		return -ENOMEM;
	rc = read_all(fd, buf, h.length);
	if (rc) {
		free(buf);
		return rc;
	}
	*type = h.type;
	*stream = h.stream;
	*payload = buf;
	*len = h.length;
	return 0;
}
