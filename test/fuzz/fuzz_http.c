/* libFuzzer target: the HTTP connection code of `airlock mcp --http` (mcp/protocol/http_conn.c:
 * http-parser, the head and body limits, pipelining, refusals, event streams, a client that
 * leaves mid-answer). The input is what one client sends on one connection; then it closes its
 * side. The handlers are small stand-ins for the endpoint's: /deny is refused at the head (as a
 * missing token is), /stream is answered with an event stream, /later is never answered (the
 * client's leaving cancels it), anything else gets its body's length back.
 * Oracle besides the sanitizers: what the server wrote is a sequence of whole HTTP/1.1
 * responses (a status line, headers, a body of its Content-Length or a chunked stream ended
 * with its last chunk); a request left unanswered is reported gone exactly once; the
 * connection always ends. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"

static uv_loop_t loop;
static struct http_listener *listener;
static int port;
static int later_pending; /* /later requests not yet reported gone */

static int on_head(void *ctx, const struct http_request *req)
{
	(void)ctx;
	return strcmp(req->path, "/deny") == 0 ? 401 : 0;
}

static void on_request(void *ctx, struct http_conn *c, struct http_request *req)
{
	(void)ctx;
	if (strcmp(req->path, "/stream") == 0) {
		http_stream_begin(c, NULL);
		http_stream_event(c, "{\"a\":1}", 7);
		http_stream_end(c);
	} else if (strcmp(req->path, "/later") == 0) {
		http_conn_set_request_ctx(c, &later_pending);
		later_pending++;
	} else {
		char body[32];
		int n = snprintf(body, sizeof body, "%zu\n", req->body_len);
		http_respond(c, 200, "text/plain", NULL, body, (size_t)n);
	}
}

static void on_gone(void *ctx, struct http_conn *c, void *request_ctx)
{
	(void)ctx;
	(void)c;
	if (request_ctx != &later_pending || later_pending <= 0)
		abort(); /* gone only for what was left unanswered, and once */
	later_pending--;
}

/* Whether out is whole responses, one after another. */
static bool whole_responses(const char *out, size_t len)
{
	const char *p = out, *end = out + len;
	while (p < end) {
		if ((size_t)(end - p) < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0)
			return false;
		const char *head_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		if (!head_end)
			return false;
		const char *cl = memmem(p, (size_t)(head_end - p), "Content-Length: ", 16);
		bool chunked = memmem(p, (size_t)(head_end - p), "Transfer-Encoding: chunked", 26);
		p = head_end + 4;
		if (cl) {
			size_t body = strtoul(cl + 16, NULL, 10);
			if ((size_t)(end - p) < body)
				return false;
			p += body;
		} else if (chunked) {
			for (;;) {
				char *after;
				unsigned long size = strtoul(p, &after, 16);
				if (after == p || (size_t)(end - after) < 2 + size + 2 ||
				    memcmp(after, "\r\n", 2) != 0)
					return false;
				p = after + 2 + size + 2;
				if (size == 0)
					break;
			}
		} else {
			return false;
		}
	}
	return true;
}

static void setup(void)
{
	uv_loop_init(&loop);
	static const struct http_handlers handlers = {on_head, on_request, on_gone};
	struct http_listen_config cfg = {"127.0.0.1", 0, 64};
	char err[256];
	if (http_listen(&loop, &cfg, &handlers, NULL, &port, &listener, err, sizeof err) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!listener)
		setup();
	/* each connection from another loopback address: hundreds of thousands of runs would use
	 * up one address's ports in TIME_WAIT */
	static uint32_t runs;
	runs++;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in from = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(0x7f010000u | (runs & 0xffffu))};
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(0x7f000001)};
	/* the port chosen at connect, for the whole 4-tuple; and a close that resets, leaving no
	 * TIME_WAIT on either side (RFC 1337 is off by default) */
	int one = 1;
	struct linger reset = {1, 0};
	if (s < 0 || setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
	    setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof reset) != 0 ||
	    bind(s, (struct sockaddr *)&from, sizeof from) != 0 ||
	    connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
		FILE *f = fopen("build-fuzz/artifacts/http-connect-error", "w");
		if (f) { /* stderr is closed while fuzzing (-close_fd_mask=2) */
			fprintf(f, "fuzz_http: cannot connect: %s\n", strerror(errno));
			fclose(f);
		}
		abort();
	}
	fcntl(s, F_SETFL, O_NONBLOCK);
	size_t sent = 0, out_len = 0, out_cap = 1 << 16;
	char *out = malloc(out_cap);
	bool eof = false;
	for (long turns = 0; !eof; turns++) {
		if (turns > 2000000)
			abort(); /* the connection never ended */
		if (sent < size) {
			ssize_t n = send(s, data + sent, size - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			else if (n < 0 && errno != EAGAIN)
				sent = size; /* the server closed on us: the rest is not wanted */
			if (sent == size)
				shutdown(s, SHUT_WR);
		} else if (size == 0 && turns == 0) {
			shutdown(s, SHUT_WR);
		}
		uv_run(&loop, UV_RUN_NOWAIT);
		char buf[1 << 16];
		ssize_t n = recv(s, buf, sizeof buf, 0);
		if (n > 0) {
			if (out_len + (size_t)n > out_cap) {
				out_cap = 2 * (out_len + (size_t)n);
				out = realloc(out, out_cap);
			}
			memcpy(out + out_len, buf, (size_t)n);
			out_len += (size_t)n;
		} else if (n == 0 || (n < 0 && errno != EAGAIN)) {
			eof = true;
		}
	}
	close(s);
	while (http_connections(listener) > 0) /* the server's side of it closes too */
		uv_run(&loop, UV_RUN_NOWAIT);
	if (later_pending != 0 || !whole_responses(out, out_len)) {
		fprintf(stderr, "fuzz_http: %s; the server wrote %zu bytes:\n%.*s\n",
			later_pending ? "a request left unanswered was not reported gone"
				      : "not whole responses",
			out_len, (int)(out_len > 4096 ? 4096 : out_len), out);
		abort();
	}
	free(out);
	return 0;
}
