/* One VM's egress connections on its event loop (egress.h). Each egress stream lives through:
 *
 *     HEAD        the guest's bytes are kept until the proxy request's head is whole
 *     RESOLVING   allowed by the list: the name is resolved on the host (libuv's thread pool)
 *     CONNECTING  to the first address whose class may be reached, then the next
 *     OPEN        spliced both ways, each within the other end's credit
 *     ANSWERED    refused or failed: an error page went to the guest, which closes
 *
 * and is freed once both ends sent CLOSE and its handles are closed. Credit (agent/proto.h):
 * the guest may send AL_EGRESS_WINDOW bytes ahead; what it sends is credited back once written
 * upstream (or dropped, after a refusal), so a slow upstream slows the program. Upstream bytes go
 * to the guest only within the credit the agent granted: reading stops while it is spent.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"
#include "proto.h"

enum conn_state { CONN_HEAD, CONN_RESOLVING, CONN_CONNECTING, CONN_OPEN, CONN_ANSWERED };

struct conn {
	struct egress *e;
	struct conn *next;
	uint32_t stream;
	enum conn_state state;
	uint8_t *held; /* the guest's bytes until the connection is made */
	size_t held_len;
	struct egress_request req;
	struct egress_attempt *attempt; /* NULL when not listed */
	bool install_only;
	bool literal; /* the allowlist names this IP literal: its class is not refused */
	bool counted_open;

	uv_getaddrinfo_t gai;
	bool gai_pending;
	struct addrinfo *addrs, *next_addr;
	char refused_class[160]; /* the first refused address, for the message */
	uv_tcp_t tcp;
	bool tcp_open;
	uv_connect_t connect_req;
	bool connect_pending;
	uv_timer_t timer;
	bool timer_open;
	uv_shutdown_t shutdown_req;
	int handles; /* open handles and requests in flight */

	uint64_t to_guest_credit;  /* bytes we may still send the guest */
	uint64_t from_guest_taken; /* guest bytes passed on (or dropped), not yet credited back */
	uint64_t from_guest_inflight; /* guest bytes held or being written: at most the window */
	bool reading;
	bool guest_closed; /* the guest sent CLOSE */
	bool sent_close;
	bool upstream_eof;
	bool shutdown_pending;
	int last_error;
};

struct egress {
	uv_loop_t *loop;
	const struct egress_policy *policy;
	bool installing;
	egress_send_fn send;
	void *send_ctx;
	struct conn *conns;
	uint32_t last_stream;
	unsigned open_count;
	unsigned attempts_total;
	uint64_t bytes_up, bytes_down;
	struct egress_attempt attempts[EGRESS_MAX_LOGGED];
	size_t n_attempts, unlisted;
	bool closing;
	void (*closed)(void *ctx);
	void *closed_ctx;
};

static void conn_maybe_free(struct conn *c);
static void conn_fail(struct conn *c, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

int egress_new(uv_loop_t *loop, const struct egress_policy *policy, bool installing,
	       egress_send_fn send, void *send_ctx, struct egress **out)
{
	struct egress *e = calloc(1, sizeof *e);
	if (!e)
		return -ENOMEM;
	*e = (struct egress){.loop = loop, .policy = policy, .installing = installing,
			     .send = send, .send_ctx = send_ctx,
			     .last_stream = AL_STREAM_FIRST_OPENED - 1};
	*out = e;
	return 0;
}

const struct egress_attempt *egress_attempts(const struct egress *e, size_t *n, size_t *unlisted)
{
	*n = e ? e->n_attempts : 0;
	*unlisted = e ? e->unlisted : 0;
	return e ? e->attempts : NULL;
}

static struct conn *find(struct egress *e, uint32_t stream)
{
	for (struct conn *c = e->conns; c; c = c->next)
		if (c->stream == stream)
			return c;
	return NULL;
}

/* DATA to the guest, within the credit the agent granted (which it spends). */
static void send_to_guest(struct conn *c, const void *data, size_t len)
{
	if (len > c->to_guest_credit)
		return; /* never: callers check, or send less than a fresh window */
	c->to_guest_credit -= len;
	(void)c->e->send(c->e->send_ctx, AL_FRAME_DATA, c->stream, data, len);
}

static void send_close(struct conn *c, uint32_t how)
{
	if (c->sent_close)
		return;
	c->sent_close = true;
	struct al_close frame = {.how = how};
	(void)c->e->send(c->e->send_ctx, AL_FRAME_CLOSE, c->stream, &frame, sizeof frame);
}

/* Credits back what the guest sent that was passed on: in batches of half a window, or all of
 * it once nothing more is in flight. */
static void credit_guest(struct conn *c, size_t len)
{
	c->from_guest_taken += len;
	c->from_guest_inflight -= len;
	if (c->e->closing || c->guest_closed)
		return; /* it sends nothing more: no credit is due */
	if (c->from_guest_taken * 2 >= AL_EGRESS_WINDOW ||
	    (c->from_guest_inflight == 0 && c->from_guest_taken > 0)) {
		struct al_credit credit = {.bytes = (uint32_t)c->from_guest_taken};
		c->from_guest_taken = 0;
		(void)c->e->send(c->e->send_ctx, AL_FRAME_CREDIT, c->stream, &credit, sizeof credit);
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	c->handles--;
	conn_maybe_free(c);
}

static void close_handles(struct conn *c)
{
	if (c->tcp_open) {
		c->tcp_open = false;
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	}
	if (c->timer_open) {
		c->timer_open = false;
		uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	}
	if (c->gai_pending)
		(void)uv_cancel((uv_req_t *)&c->gai);
	if (c->counted_open) {
		c->counted_open = false;
		c->e->open_count--;
	}
}

static void egress_maybe_closed(struct egress *e)
{
	if (!e->closing || e->conns)
		return;
	void (*closed)(void *) = e->closed;
	void *ctx = e->closed_ctx;
	free(e);
	if (closed)
		closed(ctx);
}

/* Frees the connection once both ends closed the stream (or the VM is going) and nothing of it
 * is in flight. */
static void conn_maybe_free(struct conn *c)
{
	struct egress *e = c->e;
	bool done = e->closing || (c->guest_closed && c->sent_close);
	if (!done)
		return;
	close_handles(c); /* once: it notes what it closed */
	if (c->handles > 0 || c->gai_pending || c->connect_pending)
		return;
	for (struct conn **p = &e->conns; *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			break;
		}
	}
	if (c->addrs)
		uv_freeaddrinfo(c->addrs);
	egress_request_free(&c->req);
	free(c->held);
	free(c);
	egress_maybe_closed(e);
}

static void note_reason(struct conn *c, const char *reason)
{
	if (c->attempt && !c->attempt->reason[0])
		snprintf(c->attempt->reason, sizeof c->attempt->reason, "%s", reason);
}

/* Refused or failed: the guest gets an error page and the stream's end; what it sends later is
 * dropped (and credited back, so that it never waits on us). */
static void conn_fail(struct conn *c, int status, const char *fmt, ...)
{
	char why[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	note_reason(c, why);
	if (c->state == CONN_OPEN) { /* bytes went both ways already: no page, only the end */
		c->state = CONN_ANSWERED;
		send_close(c, AL_CLOSE_ABORT);
	} else {
		c->state = CONN_ANSWERED;
		char *page;
		size_t len;
		if (!c->sent_close && egress_error_page(status, c->req.host, c->req.port, why, &page,
							&len) == 0) {
			send_to_guest(c, page, len);
			free(page);
		}
		send_close(c, AL_CLOSE_DONE);
	}
	close_handles(c);
	if (c->held_len)
		credit_guest(c, c->held_len);
	free(c->held);
	c->held = NULL;
	c->held_len = 0;
	conn_maybe_free(c);
}

static void record_attempt(struct conn *c, bool allowed, const char *reason)
{
	struct egress *e = c->e;
	e->attempts_total++;
	if (e->n_attempts == EGRESS_MAX_LOGGED) {
		e->unlisted++;
		return;
	}
	struct egress_attempt *a = &e->attempts[e->n_attempts++];
	*a = (struct egress_attempt){.port = c->req.port, .allowed = allowed};
	snprintf(a->host, sizeof a->host, "%s", c->req.host[0] ? c->req.host : "(none)");
	if (reason)
		snprintf(a->reason, sizeof a->reason, "%s", reason);
	c->attempt = a;
}

/* ---- upstream -> guest ---- */

static void on_upstream_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static _Thread_local char slab[AL_FRAME_MAX_OUTPUT_CHUNK];
	*buf = uv_buf_init(slab, sizeof slab);
}

static void update_reading(struct conn *c);

static void on_upstream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	if (nread == 0)
		return;
	if (nread == UV_EOF) {
		uv_read_stop(s);
		c->reading = false;
		c->upstream_eof = true;
		send_close(c, AL_CLOSE_DONE);
		conn_maybe_free(c);
		return;
	}
	if (nread < 0) {
		conn_fail(c, 502, "the upstream connection failed: %s", uv_strerror((int)nread));
		return;
	}
	/* the buffer is the slab's size, the read at most the credit (update_reading) */
	size_t n = (size_t)nread;
	if (n > c->to_guest_credit) { /* cannot happen: reading stops at no credit */
		conn_fail(c, 502, "internal: read past the guest's credit");
		return;
	}
	if (c->e->bytes_down + n > EGRESS_MAX_BYTES) {
		conn_fail(c, 502, "the VM's download limit (%llu MiB) was reached",
			  (unsigned long long)(EGRESS_MAX_BYTES >> 20));
		return;
	}
	c->e->bytes_down += n;
	if (c->attempt)
		c->attempt->bytes_received += n;
	send_to_guest(c, buf->base, n);
	update_reading(c);
}

/* Reads upstream only while the guest can take a whole read (a slab's worth of credit), so no
 * read ever holds bytes it cannot forward. */
static void update_reading(struct conn *c)
{
	bool want = c->state == CONN_OPEN && c->tcp_open && !c->upstream_eof && !c->sent_close &&
		    c->to_guest_credit >= AL_FRAME_MAX_OUTPUT_CHUNK;
	if (want && !c->reading)
		c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_upstream_alloc,
					   on_upstream_read) == 0;
	else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

/* ---- guest -> upstream ---- */

struct upstream_write {
	uv_write_t req;
	struct conn *c;
	size_t guest_bytes; /* what this write passes on of the guest's bytes (credited back) */
	uint8_t data[];
};

static void on_shutdown(uv_shutdown_t *req, int status)
{
	(void)status;
	struct conn *c = req->data;
	c->shutdown_pending = false;
	c->handles--;
	conn_maybe_free(c);
}

static void maybe_shutdown_upstream(struct conn *c)
{
	if (!c->guest_closed || c->shutdown_pending || !c->tcp_open || c->state != CONN_OPEN ||
	    c->from_guest_inflight > 0)
		return;
	c->shutdown_req.data = c;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
		c->shutdown_pending = true;
		c->handles++;
	}
}

static void on_upstream_written(uv_write_t *req, int status)
{
	struct upstream_write *w = (struct upstream_write *)req;
	struct conn *c = w->c;
	c->handles--;
	size_t guest_bytes = w->guest_bytes;
	free(w);
	if (status < 0 && c->state == CONN_OPEN) {
		c->from_guest_inflight -= guest_bytes;
		conn_fail(c, 502, "writing upstream failed: %s", uv_strerror(status));
		return;
	}
	if (c->state == CONN_OPEN || c->state == CONN_ANSWERED)
		credit_guest(c, guest_bytes);
	maybe_shutdown_upstream(c);
	conn_maybe_free(c);
}

static int write_upstream(struct conn *c, const void *data, size_t len, size_t guest_bytes)
{
	struct upstream_write *w = malloc(sizeof *w + len);
	if (!w)
		return -ENOMEM;
	w->c = c;
	w->guest_bytes = guest_bytes;
	memcpy(w->data, data, len);
	uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)len);
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_upstream_written);
	if (rc) {
		free(w);
		return rc;
	}
	c->handles++;
	c->e->bytes_up += len;
	if (c->attempt)
		c->attempt->bytes_sent += len;
	return 0;
}

/* ---- connecting ---- */

static void try_next_address(struct conn *c);

static void on_connected(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	c->connect_pending = false;
	if (c->state != CONN_CONNECTING) { /* failed or closed meanwhile */
		conn_maybe_free(c);
		return;
	}
	if (status < 0) {
		c->last_error = status;
		if (c->tcp_open) { /* the next address gets a handle of its own */
			c->tcp_open = false;
			uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
		}
		try_next_address(c);
		return;
	}
	c->state = CONN_OPEN;
	if (c->timer_open)
		uv_timer_stop(&c->timer);
	(void)uv_tcp_nodelay(&c->tcp, 1);
	size_t head = egress_request_head_length(c->held, c->held_len);
	int rc = 0;
	if (c->req.kind == EGRESS_CONNECT) {
		static const char established[] = "HTTP/1.1 200 Connection established\r\n\r\n";
		send_to_guest(c, established, sizeof established - 1);
		credit_guest(c, head);
	} else {
		rc = write_upstream(c, c->req.upstream_head, c->req.upstream_head_len, head);
	}
	if (rc == 0 && c->held_len > head)
		rc = write_upstream(c, c->held + head, c->held_len - head, c->held_len - head);
	free(c->held);
	c->held = NULL;
	c->held_len = 0;
	if (rc) {
		conn_fail(c, 502, "cannot write upstream: %s", uv_strerror(rc));
		return;
	}
	maybe_shutdown_upstream(c);
	update_reading(c);
}

static void try_next_address(struct conn *c)
{
	while (c->next_addr) {
		struct addrinfo *ai = c->next_addr;
		c->next_addr = ai->ai_next;
		const char *why = c->literal ? NULL : egress_address_refusal(ai->ai_addr);
		if (why) {
			if (!c->refused_class[0]) {
				char text[INET6_ADDRSTRLEN] = "?";
				if (ai->ai_family == AF_INET)
					uv_ip4_name((struct sockaddr_in *)ai->ai_addr, text, sizeof text);
				else
					uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, text, sizeof text);
				snprintf(c->refused_class, sizeof c->refused_class,
					 "it resolves to %s, a %s address", text, why);
			}
			continue;
		}
		if (uv_tcp_init(c->e->loop, &c->tcp) != 0)
			break;
		c->tcp.data = c;
		c->tcp_open = true;
		c->handles++;
		c->connect_req.data = c;
		/* the port is the request's, whatever the resolver said */
		struct sockaddr_storage addr;
		memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
		if (ai->ai_family == AF_INET)
			((struct sockaddr_in *)&addr)->sin_port = htons(c->req.port);
		else
			((struct sockaddr_in6 *)&addr)->sin6_port = htons(c->req.port);
		int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&addr,
					on_connected);
		if (rc == 0) {
			c->connect_pending = true;
			return;
		}
		c->last_error = rc;
		c->tcp_open = false;
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	}
	if (c->last_error)
		conn_fail(c, 502, "cannot connect: %s", uv_strerror(c->last_error));
	else if (c->refused_class[0]) {
		if (c->attempt)
			c->attempt->allowed = false;
		conn_fail(c, 403, "%s (refused unless --allow-host names that IP address)",
			  c->refused_class);
	} else
		conn_fail(c, 502, "it has no usable address");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct conn *c = req->data;
	c->gai_pending = false;
	c->addrs = res;
	if (c->state != CONN_RESOLVING || c->e->closing) {
		conn_maybe_free(c);
		return;
	}
	if (status < 0) {
		conn_fail(c, 502, "cannot resolve %s: %s", c->req.host, uv_strerror(status));
		return;
	}
	c->state = CONN_CONNECTING;
	c->next_addr = res;
	try_next_address(c);
}

static void on_connect_timeout(uv_timer_t *t)
{
	struct conn *c = t->data;
	if (c->state == CONN_RESOLVING || c->state == CONN_CONNECTING)
		conn_fail(c, 504, "no connection within %d s", EGRESS_CONNECT_TIMEOUT_MS / 1000);
}

/* ---- the decision ---- */

static void decide(struct conn *c, size_t head_len)
{
	struct egress *e = c->e;
	char why[200];
	int status = egress_request_parse((const char *)c->held, head_len, &c->req, why, sizeof why);
	if (status != 0) {
		record_attempt(c, false, why);
		conn_fail(c, status, "%s", why);
		return;
	}
	char canonical[EGRESS_MAX_HOST + 1];
	bool odd = false, is_ip = egress_ip_literal(c->req.host, canonical, sizeof canonical, &odd);
	if (is_ip)
		snprintf(c->req.host, sizeof c->req.host, "%s", canonical);
	if (e->attempts_total >= EGRESS_MAX_ATTEMPTS) {
		record_attempt(c, false, NULL);
		conn_fail(c, 403, "too many connections in this run (at most %d)", EGRESS_MAX_ATTEMPTS);
		return;
	}
	if (odd) {
		record_attempt(c, false, NULL);
		conn_fail(c, 403, "not an IP address in the usual form");
		return;
	}
	/* a name rule never matches an address, nor an address rule a name */
	bool literal = false, allowed = false;
	for (size_t i = 0; i < e->policy->n_allow && !allowed; i++)
		if (e->policy->allow[i].ip_literal == is_ip &&
		    egress_rules_match(&e->policy->allow[i], 1, c->req.host, c->req.port, &literal))
			allowed = true;
	bool install_rule = false;
	for (size_t i = 0; i < e->policy->n_install && !allowed && !install_rule; i++)
		if (e->policy->install[i].ip_literal == is_ip &&
		    egress_rules_match(&e->policy->install[i], 1, c->req.host, c->req.port, &literal))
			install_rule = true;
	if (!allowed && install_rule && e->installing) {
		allowed = true;
		c->install_only = true;
	}
	if (!allowed) {
		record_attempt(c, false, NULL);
		conn_fail(c, 403, install_rule ? "reachable only while packages install"
					       : "not in the allowlist");
		return;
	}
	if (e->open_count >= EGRESS_MAX_OPEN) {
		record_attempt(c, false, NULL);
		conn_fail(c, 403, "too many connections at once (at most %d)", EGRESS_MAX_OPEN);
		return;
	}
	record_attempt(c, true, NULL);
	c->literal = literal;
	c->counted_open = true;
	e->open_count++;
	if (uv_timer_init(e->loop, &c->timer) == 0) {
		c->timer.data = c;
		c->timer_open = true;
		c->handles++;
		uv_timer_start(&c->timer, on_connect_timeout, EGRESS_CONNECT_TIMEOUT_MS, 0);
	}
	c->state = CONN_RESOLVING;
	char port[8];
	snprintf(port, sizeof port, "%u", c->req.port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	if (is_ip)
		hints.ai_flags = AI_NUMERICHOST;
	c->gai.data = c;
	int rc = uv_getaddrinfo(e->loop, &c->gai, on_resolved, c->req.host, port, &hints);
	if (rc) {
		conn_fail(c, 502, "cannot resolve %s: %s", c->req.host, uv_strerror(rc));
		return;
	}
	c->gai_pending = true;
}

/* ---- the guest's frames ---- */

/* Keeps the guest's bytes until the connection is made. Returns 0, or -ENOMEM (the connection
 * failed then). */
static int hold(struct conn *c, const uint8_t *payload, size_t len)
{
	uint8_t *p = realloc(c->held, c->held_len + len);
	if (!p) {
		c->from_guest_inflight -= len;
		conn_fail(c, 502, "out of memory");
		return -ENOMEM;
	}
	memcpy(p + c->held_len, payload, len);
	c->held = p;
	c->held_len += len;
	return 0;
}

static int take_data(struct conn *c, const uint8_t *payload, size_t len, const char **why)
{
	if (c->guest_closed) {
		*why = "egress DATA after the guest's CLOSE";
		return -EPROTO;
	}
	if (c->from_guest_inflight + c->from_guest_taken + len > AL_EGRESS_WINDOW) {
		*why = "egress DATA beyond its credit";
		return -EPROTO;
	}
	if (len == 0)
		return 0; /* nothing to pass on (and the decoder's payload may be NULL) */
	c->from_guest_inflight += len;
	switch (c->state) {
	case CONN_HEAD: {
		if (hold(c, payload, len) != 0)
			return 0;
		size_t head = egress_request_head_length(c->held, c->held_len);
		if (head)
			decide(c, head);
		else if (c->held_len > EGRESS_MAX_REQUEST_HEAD) {
			record_attempt(c, false, "the request head is over 16 KiB");
			conn_fail(c, 431, "the request head is over %d bytes", EGRESS_MAX_REQUEST_HEAD);
		}
		return 0;
	}
	case CONN_RESOLVING:
	case CONN_CONNECTING:
		(void)hold(c, payload, len);
		return 0;
	case CONN_OPEN: {
		int rc = write_upstream(c, payload, len, len);
		if (rc) {
			c->from_guest_inflight -= len;
			conn_fail(c, 502, "cannot write upstream: %s", uv_strerror(rc));
		}
		return 0;
	}
	case CONN_ANSWERED:
		credit_guest(c, len); /* dropped */
		return 0;
	}
	return 0;
}

int egress_guest_frame(struct egress *e, uint32_t type, uint32_t stream, const uint8_t *payload,
		       size_t len, const char **why)
{
	if (type == AL_FRAME_OPEN) {
		if (len != 0 || stream <= e->last_stream) {
			*why = "egress OPEN with a payload or a stream id not above the last";
			return -EPROTO;
		}
		unsigned live = 0;
		for (struct conn *c = e->conns; c; c = c->next)
			live++;
		if (live >= AL_EGRESS_MAX_STREAMS) {
			*why = "more egress streams open than the agent keeps";
			return -EPROTO;
		}
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			*why = "out of memory";
			return -ENOMEM;
		}
		c->e = e;
		c->stream = stream;
		c->to_guest_credit = AL_EGRESS_WINDOW;
		c->next = e->conns;
		e->conns = c;
		e->last_stream = stream;
		return 0;
	}
	struct conn *c = find(e, stream);
	if (!c) {
		if (stream > e->last_stream) {
			*why = "a frame on an egress stream that was never opened";
			return -EPROTO;
		}
		return 0; /* both ends closed it already */
	}
	switch (type) {
	case AL_FRAME_DATA:
		return take_data(c, payload, len, why);
	case AL_FRAME_CREDIT: {
		struct al_credit credit;
		if (len != sizeof credit) {
			*why = "malformed egress CREDIT";
			return -EPROTO;
		}
		memcpy(&credit, payload, sizeof credit);
		if (credit.bytes == 0 || c->to_guest_credit + credit.bytes > AL_EGRESS_WINDOW) {
			*why = "egress CREDIT past the window";
			return -EPROTO;
		}
		c->to_guest_credit += credit.bytes;
		update_reading(c);
		return 0;
	}
	case AL_FRAME_CLOSE: {
		struct al_close how;
		if (len != sizeof how || c->guest_closed) {
			*why = "malformed or repeated egress CLOSE";
			return -EPROTO;
		}
		memcpy(&how, payload, sizeof how);
		c->guest_closed = true;
		if (how.how == AL_CLOSE_ABORT || c->state != CONN_OPEN) {
			if (c->state != CONN_ANSWERED && c->attempt && how.how == AL_CLOSE_ABORT &&
			    c->state != CONN_OPEN)
				note_reason(c, "the program closed the connection first");
			if (c->state != CONN_ANSWERED)
				c->state = CONN_ANSWERED;
			send_close(c, AL_CLOSE_ABORT);
			close_handles(c);
		} else {
			maybe_shutdown_upstream(c);
		}
		conn_maybe_free(c);
		return 0;
	}
	default:
		*why = "an unknown frame on an egress stream";
		return -EPROTO;
	}
}

void egress_install_done(struct egress *e)
{
	if (!e)
		return;
	e->installing = false;
	for (struct conn *c = e->conns, *next; c; c = next) {
		next = c->next;
		if (c->install_only && c->state != CONN_ANSWERED)
			conn_fail(c, 403, "reachable only while packages install");
	}
}

void egress_close(struct egress *e, void (*closed)(void *ctx), void *ctx)
{
	e->closing = true;
	e->closed = closed;
	e->closed_ctx = ctx;
	if (!e->conns) {
		egress_maybe_closed(e);
		return;
	}
	for (struct conn *c = e->conns, *next; c; c = next) {
		next = c->next;
		if (c->state == CONN_RESOLVING || c->state == CONN_CONNECTING)
			note_reason(c, "the run ended first");
		c->state = CONN_ANSWERED;
		close_handles(c);
		conn_maybe_free(c);
	}
}
