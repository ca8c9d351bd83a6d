/* The guest's end of egress (proto.h, "Egress streams"): a listener on 127.0.0.1's proxy port,
 * and for each connection a program makes to it an egress stream to the host. The agent parses
 * nothing: it moves bytes both ways within each direction's credit, and passes end-of-file and
 * resets on as CLOSE. The host reads the proxy request and decides.
 *
 * Everything here is non-blocking and driven by exec.c's poll loop: egress_poll_fds() says what
 * to wait for, egress_on_poll() acts on what came, egress_host_frame() takes the host's DATA,
 * CREDIT and CLOSE. Bytes from the host wait in a connection's queue until its socket takes them;
 * the queue never holds more than the credit the agent granted (AL_EGRESS_WINDOW).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

/* A CREDIT for an egress stream is sent once this much of the window was passed on. */
#define EGRESS_CREDIT_BATCH (AL_EGRESS_WINDOW / 2)

struct chunk {
	struct chunk *next;
	size_t len, off;
	uint8_t data[];
};

struct egress_conn {
	int fd;            /* the program's connection to the proxy; -1 once closed */
	uint32_t stream;   /* 0: the slot is free */
	uint64_t credit;   /* bytes the host lets us send */
	struct chunk *head, *tail; /* bytes from the host not yet written to fd */
	uint64_t held;     /* bytes in the queue */
	uint64_t passed;   /* bytes written to fd and not yet credited back */
	int sent_close;    /* we sent CLOSE */
	int got_close;     /* the host sent CLOSE DONE: shut fd's writing once the queue is out */
	int read_eof;      /* fd said end-of-file (or failed): nothing more to read */
};

struct egress {
	int listen_fd;
	uint32_t next_stream;
	struct egress_conn conns[AL_EGRESS_MAX_STREAMS];
};

static void queue_free(struct egress_conn *c)
{
	while (c->head) {
		struct chunk *next = c->head->next;
		free(c->head);
		c->head = next;
	}
	c->tail = NULL;
	c->held = 0;
}

/* Frees the slot once both ends have sent CLOSE and the socket is done with. */
static void conn_release_if_done(struct egress_conn *c)
{
	if (!c->sent_close || c->got_close < 2 || c->fd >= 0)
		return;
	queue_free(c);
	*c = (struct egress_conn){.fd = -1};
}

/* Both ways done (the program's end-of-file read, the host's passed on): close the socket. */
static void conn_finish_if_done(struct egress_conn *c)
{
	if (c->fd < 0 || !c->read_eof || c->got_close != 2)
		return;
	close(c->fd);
	c->fd = -1;
	conn_release_if_done(c);
}

static int send_close(int channel_fd, struct egress_conn *c, uint32_t how)
{
	if (c->sent_close)
		return 0;
	c->sent_close = 1;
	struct al_close close_frame = {.how = how};
	return channel_send_on(channel_fd, AL_FRAME_CLOSE, c->stream, &close_frame,
			       sizeof close_frame);
}

/* The connection is gone: close the socket, drop what is held, tell the host. */
static int conn_abort(int channel_fd, struct egress_conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	queue_free(c);
	int rc = send_close(channel_fd, c, AL_CLOSE_ABORT);
	conn_release_if_done(c);
	return rc;
}

int egress_start(struct egress **out)
{
	struct egress *e = calloc(1, sizeof *e);
	if (!e)
		return -ENOMEM;
	for (size_t i = 0; i < AL_EGRESS_MAX_STREAMS; i++)
		e->conns[i].fd = -1;
	e->next_stream = AL_STREAM_FIRST_OPENED;
	e->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_port = htons(AL_EGRESS_PROXY_PORT),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (e->listen_fd < 0 ||
	    setsockopt(e->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(e->listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
	    listen(e->listen_fd, 64) != 0) {
		int rc = -errno;
		if (e->listen_fd >= 0)
			close(e->listen_fd);
		free(e);
		return rc;
	}
	*out = e;
	return 0;
}

void egress_stop(struct egress *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < AL_EGRESS_MAX_STREAMS; i++) {
		if (e->conns[i].fd >= 0)
			close(e->conns[i].fd);
		queue_free(&e->conns[i]);
	}
	close(e->listen_fd);
	free(e);
}

static struct egress_conn *free_slot(struct egress *e)
{
	for (size_t i = 0; i < AL_EGRESS_MAX_STREAMS; i++)
		if (e->conns[i].stream == 0)
			return &e->conns[i];
	return NULL;
}

static struct egress_conn *find(struct egress *e, uint32_t stream)
{
	for (size_t i = 0; stream != 0 && i < AL_EGRESS_MAX_STREAMS; i++)
		if (e->conns[i].stream == stream)
			return &e->conns[i];
	return NULL;
}

int egress_poll_fds(struct egress *e, struct pollfd *fds, int max)
{
	int n = 0;
	if (!e)
		return 0;
	/* a full table stops accepting: further connections wait in the backlog */
	if (n < max)
		fds[n++] = (struct pollfd){free_slot(e) ? e->listen_fd : -1, POLLIN, 0};
	for (size_t i = 0; i < AL_EGRESS_MAX_STREAMS && n < max; i++) {
		struct egress_conn *c = &e->conns[i];
		short events = 0;
		if (c->fd >= 0 && !c->read_eof && c->credit > 0)
			events |= POLLIN;
		if (c->fd >= 0 && c->head)
			events |= POLLOUT;
		fds[n++] = (struct pollfd){events ? c->fd : -1, events, 0};
	}
	return n;
}

static int accept_one(struct egress *e, int channel_fd)
{
	struct egress_conn *c = free_slot(e);
	if (!c)
		return 0;
	int fd = accept4(e->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return 0; /* EAGAIN, or the program gave up on it already */
	if (e->next_stream == 0) { /* 4 billion connections in one run */
		close(fd);
		return 0;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	*c = (struct egress_conn){.fd = fd, .stream = e->next_stream++, .credit = AL_EGRESS_WINDOW};
	return channel_send_on(channel_fd, AL_FRAME_OPEN, c->stream, NULL, 0);
}

/* Reads what the program sent, within the host's credit, and forwards it. */
static int pump_to_host(int channel_fd, struct egress_conn *c)
{
	static uint8_t buf[AL_FRAME_MAX_OUTPUT_CHUNK];
	size_t want = c->credit < sizeof buf ? (size_t)c->credit : sizeof buf;
	ssize_t n = read(c->fd, buf, want);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n < 0) /* reset by the program */
		return conn_abort(channel_fd, c);
	if (n == 0) {
		c->read_eof = 1;
		int rc = send_close(channel_fd, c, AL_CLOSE_DONE);
		conn_finish_if_done(c);
		return rc;
	}
	c->credit -= (uint64_t)n;
	return channel_send_on(channel_fd, AL_FRAME_DATA, c->stream, buf, (size_t)n);
}

/* Writes what the host sent to the program, and credits it back in batches. */
static int pump_to_program(int channel_fd, struct egress_conn *c)
{
	while (c->head) {
		struct chunk *k = c->head;
		ssize_t n = write(c->fd, k->data + k->off, k->len - k->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) /* the program closed its end */
			return conn_abort(channel_fd, c);
		k->off += (size_t)n;
		c->held -= (uint64_t)n;
		c->passed += (uint64_t)n;
		if (k->off == k->len) {
			c->head = k->next;
			if (!c->head)
				c->tail = NULL;
			free(k);
		}
	}
	if (c->passed >= EGRESS_CREDIT_BATCH || (c->passed > 0 && !c->head)) {
		struct al_credit credit = {.bytes = (uint32_t)c->passed};
		c->passed = 0;
		int rc = channel_send_on(channel_fd, AL_FRAME_CREDIT, c->stream, &credit,
					 sizeof credit);
		if (rc)
			return rc;
	}
	if (!c->head && c->got_close == 1) { /* the host is done: end-of-file for the program */
		shutdown(c->fd, SHUT_WR);
		c->got_close = 2;
		conn_finish_if_done(c);
	}
	return 0;
}

int egress_on_poll(struct egress *e, int channel_fd, const struct pollfd *fds, int n)
{
	if (!e || n < 1)
		return 0;
	int rc = 0;
	if (fds[0].revents & POLLIN)
		rc = accept_one(e, channel_fd);
	for (int i = 1; i < n && rc == 0; i++) {
		struct egress_conn *c = &e->conns[i - 1];
		short ev = fds[i].revents;
		if (!ev || c->fd < 0 || fds[i].fd != c->fd)
			continue;
		if (ev & POLLOUT)
			rc = pump_to_program(channel_fd, c);
		if (rc == 0 && c->fd >= 0 && (ev & (POLLIN | POLLHUP | POLLERR)) && !c->read_eof &&
		    c->credit > 0)
			rc = pump_to_host(channel_fd, c);
	}
	return rc;
}

/* DATA from the host: queued for the program, within the credit the agent granted. */
static int take_data(int channel_fd, struct egress_conn *c, const uint8_t *payload, size_t len)
{
	if (c->got_close || c->held + c->passed + len > AL_EGRESS_WINDOW) {
		fprintf(stderr, "airlock-agent: the host sent egress data past its credit\n");
		return -EPROTO;
	}
	if (len == 0)
		return 0;
	struct chunk *k = malloc(sizeof *k + len);
	if (!k)
		return conn_abort(channel_fd, c);
	k->next = NULL;
	k->len = len;
	k->off = 0;
	memcpy(k->data, payload, len);
	if (c->tail)
		c->tail->next = k;
	else
		c->head = k;
	c->tail = k;
	c->held += len;
	return pump_to_program(channel_fd, c);
}

int egress_host_frame(struct egress *e, int channel_fd, uint32_t type, uint32_t stream,
		      const uint8_t *payload, size_t len)
{
	if (!e || stream < AL_STREAM_FIRST_OPENED || stream >= e->next_stream)
		return -EPROTO;
	struct egress_conn *c = find(e, stream);
	if (!c)
		return 0; /* both ends closed it already: nothing left to act on */
	if (c->sent_close && c->fd < 0 && type != AL_FRAME_CLOSE)
		return 0; /* we aborted it: the host's bytes in flight are dropped */
	switch (type) {
	case AL_FRAME_DATA:
		return c->fd < 0 ? 0 : take_data(channel_fd, c, payload, len);
	case AL_FRAME_CREDIT: {
		struct al_credit credit;
		if (len != sizeof credit)
			return -EPROTO;
		memcpy(&credit, payload, sizeof credit);
		if (credit.bytes == 0 || c->credit + credit.bytes > AL_EGRESS_WINDOW)
			return -EPROTO;
		c->credit += credit.bytes;
		return 0;
	}
	case AL_FRAME_CLOSE: {
		struct al_close how;
		if (len != sizeof how || c->got_close)
			return -EPROTO;
		memcpy(&how, payload, sizeof how);
		if (how.how == AL_CLOSE_ABORT || c->fd < 0) {
			c->got_close = 2;
			return conn_abort(channel_fd, c);
		}
		c->got_close = 1;
		return pump_to_program(channel_fd, c);
	}
	default:
		return -EPROTO;
	}
}
