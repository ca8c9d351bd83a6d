/* HTTP/1.1 connections for the MCP endpoint (see http.h): libuv TCP, requests read with
 * Debian's http-parser, every size bounded (head, headers, body, bytes held while a request is
 * answered), idle connections closed, the count of connections capped with the oldest idle one
 * making room for a new one. Responses are whole (Content-Length) or event streams (chunked).
 * One request is answered at a time per connection; a pipelined next one waits, parsed after.
 */
#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

#define READ_CHUNK (64u * 1024)

struct http_conn {
	uv_tcp_t tcp; /* first: the handle's data is the connection */
	uv_timer_t idle;
	struct http_listener *l;
	http_parser parser;
	struct http_request req;
	/* the header being read: its value's destination in req (NULL: not one we read) */
	char field[32];
	size_t field_len;
	bool field_cut, in_value;
	char *value;
	size_t value_cap, value_len;
	size_t head_bytes;
	size_t body_cap;
	int refuse_status; /* a request refused while being read: 413, 431, ... (0: none) */
	bool answering;    /* a whole request is with the handler */
	bool streaming;
	bool keep_alive;
	void *request_ctx;
	uint8_t *held; /* bytes read past the request being answered */
	size_t held_len;
	size_t out_pending;
	bool closing;
	bool cut_off; /* refused: what it sends after is not read */
	bool held_pending; /* held bytes wait to be parsed on the next turn */
	bool peer_done;    /* the client sent its end: close once what is owed is written */
	int open_handles;
	struct http_conn *prev, *next; /* the listener's list: oldest first */
};

struct http_listener {
	uv_loop_t *loop;
	uv_tcp_t server;
	struct http_handlers handlers;
	void *ctx;
	unsigned max_connections, n_connections, refused;
	struct http_conn *first, *last;
	bool accepting, closing;
	int open_handles; /* the server handle; each connection counts itself */
	void (*closed)(void *ctx);
	void *closed_ctx;
	char read_buf[READ_CHUNK];
};

struct write_req {
	uv_write_t req;
	struct http_conn *c;
	size_t len;
	bool close_after;
	char data[];
};

static http_parser_settings settings;
static void conn_close(struct http_conn *c);
static void on_idle(uv_timer_t *timer);
static void parse(struct http_conn *c, const uint8_t *data, size_t len);

/* ---- writing ---- */

/* After the client's end: closes once nothing is being answered, held or written. */
static void close_if_finished(struct http_conn *c)
{
	if (c->peer_done && !c->answering && !c->held_pending && c->out_pending == 0)
		conn_close(c);
}

static void on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct http_conn *c = w->c;
	c->out_pending -= w->len;
	bool close_after = w->close_after;
	free(w);
	if (status < 0 || close_after)
		conn_close(c);
	else
		close_if_finished(c);
}

static int conn_write(struct http_conn *c, const char *head, size_t head_len, const char *body,
		      size_t body_len, const char *tail, size_t tail_len, bool close_after)
{
	if (c->closing)
		return UV_EPIPE;
	size_t len = head_len + body_len + tail_len;
	struct write_req *w = malloc(sizeof *w + len);
	if (!w) {
		conn_close(c);
		return UV_ENOMEM;
	}
	memcpy(w->data, head, head_len);
	if (body_len)
		memcpy(w->data + head_len, body, body_len);
	if (tail_len)
		memcpy(w->data + head_len + body_len, tail, tail_len);
	w->c = c;
	w->len = len;
	w->close_after = close_after;
	uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
	int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
	if (rc) {
		free(w);
		conn_close(c);
		return rc;
	}
	c->out_pending += len;
	return 0;
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

static void request_reset(struct http_conn *c)
{
	free(c->req.body);
	memset(&c->req, 0, sizeof c->req);
	c->body_cap = 0;
	c->head_bytes = 0;
	c->field_len = 0;
	c->field_cut = c->in_value = false;
	c->value = NULL;
	c->refuse_status = 0;
	c->request_ctx = NULL;
}

/* The request is answered: ready for the next, or closed by the response's write. A next
 * request already held is parsed on the next turn of the loop, after this answer is on its
 * way and outside the server's call that sent it. */
static void request_done(struct http_conn *c)
{
	c->answering = c->streaming = false;
	request_reset(c);
	if (c->closing || !c->keep_alive || !c->l->accepting)
		return;
	c->held_pending = c->held_len > 0;
	uv_timer_start(&c->idle, on_idle, c->held_pending ? 0 : HTTP_IDLE_MS, HTTP_IDLE_MS);
}

void http_respond(struct http_conn *c, int status, const char *content_type,
		  const char *extra_headers, const char *body, size_t body_len)
{
	if (c->closing)
		return;
	bool close_after = !c->keep_alive || !c->l->accepting;
	char head[1024];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\n%sConnection: %s\r\n\r\n",
			 status, reason_phrase(status), content_type ? "Content-Type: " : "",
			 content_type ? content_type : "", content_type ? "\r\n" : "", body_len,
			 extra_headers ? extra_headers : "", close_after ? "close" : "keep-alive");
	if (n < 0 || (size_t)n >= sizeof head) {
		conn_close(c);
		return;
	}
	if (conn_write(c, head, (size_t)n, body, body_len, NULL, 0, close_after) == 0)
		request_done(c);
}

void http_stream_begin(struct http_conn *c, const char *extra_headers)
{
	if (c->closing || c->streaming)
		return;
	char head[1024];
	int n = snprintf(head, sizeof head,
			 "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			 "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
			 "Transfer-Encoding: chunked\r\n%sConnection: %s\r\n\r\n",
			 extra_headers ? extra_headers : "",
			 c->keep_alive && c->l->accepting ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= sizeof head) {
		conn_close(c);
		return;
	}
	c->streaming = true;
	if (conn_write(c, head, (size_t)n, NULL, 0, NULL, 0, false) == 0)
		uv_timer_start(&c->idle, on_idle, HTTP_STREAM_KEEPALIVE_MS,
			       HTTP_STREAM_KEEPALIVE_MS);
}

bool http_stream_started(const struct http_conn *c)
{
	return c->streaming;
}

int http_stream_event(struct http_conn *c, const char *data, size_t len)
{
	if (c->closing || !c->streaming)
		return UV_EPIPE;
	if (c->out_pending > HTTP_OUTPUT_HIGH_MARK)
		return UV_EAGAIN;
	static const char event[] = "event: message\ndata: ";
	char head[64];
	int n = snprintf(head, sizeof head, "%zx\r\n%s", sizeof event - 1 + len + 2, event);
	return conn_write(c, head, (size_t)n, data, len, "\n\n\r\n", 4, false);
}

void http_stream_end(struct http_conn *c)
{
	if (c->closing || !c->streaming)
		return;
	bool close_after = !c->keep_alive || !c->l->accepting;
	if (conn_write(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0, close_after) == 0)
		request_done(c);
}

void http_conn_set_request_ctx(struct http_conn *c, void *request_ctx)
{
	c->request_ctx = request_ctx;
}

/* A request refused before it reaches the handler: said, and the connection closed (the rest
 * of what it sent is not worth reading). */
static void refuse(struct http_conn *c, int status)
{
	c->keep_alive = false;
	c->cut_off = true;
	if (status == 401) { /* nothing said but the scheme */
		http_respond(c, 401, NULL, "WWW-Authenticate: Bearer\r\n", "", 0);
		return;
	}
	char body[64];
	int n = snprintf(body, sizeof body, "%d %s\n", status, reason_phrase(status));
	http_respond(c, status, "text/plain; charset=utf-8", NULL, body, (size_t)n);
}

/* ---- reading a request ---- */

static char *header_slot(struct http_request *r, const char *name, size_t *cap)
{
	static const struct {
		const char *name;
		size_t offset, size;
	} slots[] = {
#define SLOT(n, f) {n, offsetof(struct http_request, f), sizeof((struct http_request *)0)->f}
		SLOT("authorization", authorization),
		SLOT("origin", origin),
		SLOT("host", host),
		SLOT("content-type", content_type),
		SLOT("accept", accept),
		SLOT("mcp-session-id", session_id),
		SLOT("mcp-protocol-version", protocol_version),
		SLOT("mcp-method", mcp_method),
		SLOT("mcp-name", mcp_name),
#undef SLOT
	};
	for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
		if (strcasecmp(name, slots[i].name) == 0) {
			*cap = slots[i].size;
			return (char *)r + slots[i].offset;
		}
	}
	return NULL;
}

static struct http_conn *conn_of(http_parser *p)
{
	return p->data;
}

static int count_head(struct http_conn *c, size_t len)
{
	c->head_bytes += len;
	if (c->head_bytes > HTTP_HEAD_MAX) {
		c->refuse_status = 431;
		return 1;
	}
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	if (count_head(c, len))
		return 1;
	/* the target, whole (the query goes once it is all here): a longer one than any path of
	 * ours reads as one we do not serve */
	size_t have = strlen(c->req.path);
	if (have + len >= sizeof c->req.path) {
		c->req.path_too_long = true;
		return 0;
	}
	memcpy(c->req.path + have, at, len);
	c->req.path[have + len] = '\0';
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	if (count_head(c, len))
		return 1;
	if (c->in_value) { /* a new header begins */
		c->in_value = false;
		c->field_len = 0;
		c->field_cut = false;
		c->value = NULL;
	}
	if (c->field_len + len >= sizeof c->field)
		c->field_cut = true;
	else {
		memcpy(c->field + c->field_len, at, len);
		c->field_len += len;
	}
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	if (count_head(c, len))
		return 1;
	if (!c->in_value) { /* the value's first piece: where it goes */
		c->in_value = true;
		c->field[c->field_len] = '\0';
		c->value = c->field_cut ? NULL : header_slot(&c->req, c->field, &c->value_cap);
		c->value_len = 0;
		if (c->value && c->value[0] != '\0')
			c->req.repeated_header = true;
		if (c->value && strcasecmp(c->field, "mcp-name") == 0)
			c->req.has_mcp_name = true;
		if (c->value)
			c->value[0] = '\0';
	}
	if (!c->value)
		return 0;
	if (c->value_len + len >= c->value_cap) {
		c->refuse_status = 431; /* a header we read, longer than any valid one */
		return 0;
	}
	memcpy(c->value + c->value_len, at, len);
	c->value_len += len;
	c->value[c->value_len] = '\0';
	return 0;
}

/* The optional whitespace after a header's value is not part of it (RFC 9110 5.5); the parser
 * drops the whitespace before it. */
static void trim_header_values(struct http_request *r)
{
	char *values[] = {r->authorization, r->origin, r->host, r->content_type, r->accept,
			  r->session_id, r->protocol_version, r->mcp_method, r->mcp_name};
	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
		size_t len = strlen(values[i]);
		while (len > 0 && (values[i][len - 1] == ' ' || values[i][len - 1] == '\t'))
			values[i][--len] = '\0';
	}
}

static int on_headers_complete(http_parser *p)
{
	struct http_conn *c = conn_of(p);
	trim_header_values(&c->req);
	c->req.method = p->method;
	char *query = strpbrk(c->req.path, "?#");
	if (query)
		*query = '\0';
	if (c->refuse_status) /* a header past its size: said before anything else */
		return 1;
	int status = c->l->handlers.head(c->l->ctx, &c->req);
	if (status) { /* refused before its body is read (or held in memory) */
		c->refuse_status = status;
		return 1;
	}
	/* a body announced past the limit is refused before it is read */
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > HTTP_BODY_MAX) {
		c->refuse_status = 413;
		return 1;
	}
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > 0) {
		c->req.body = malloc(p->content_length + 1);
		if (!c->req.body) {
			c->refuse_status = 503;
			return 1;
		}
		c->body_cap = p->content_length;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	if (c->req.body_len + len > HTTP_BODY_MAX) {
		c->refuse_status = 413;
		return 1;
	}
	if (c->req.body_len + len > c->body_cap) { /* chunked: grows, up to the limit */
		size_t cap = c->body_cap ? c->body_cap : 64 * 1024;
		while (cap < c->req.body_len + len)
			cap *= 2;
		if (cap > HTTP_BODY_MAX)
			cap = HTTP_BODY_MAX;
		uint8_t *body = realloc(c->req.body, cap + 1);
		if (!body) {
			c->refuse_status = 503;
			return 1;
		}
		c->req.body = body;
		c->body_cap = cap;
	}
	memcpy(c->req.body + c->req.body_len, at, len);
	c->req.body_len += len;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_conn *c = conn_of(p);
	c->keep_alive = http_should_keep_alive(p);
	if (c->req.body)
		c->req.body[c->req.body_len] = '\0';
	c->answering = true;
	http_parser_pause(p, 1); /* one request at a time: the rest waits in held */
	return 0;
}

/* Keeps bytes that came after the request being answered. */
static int hold(struct http_conn *c, const uint8_t *data, size_t len)
{
	if (c->held_len + len > HTTP_HELD_MAX)
		return -1;
	uint8_t *held = realloc(c->held, c->held_len + len);
	if (!held)
		return -1;
	memcpy(held + c->held_len, data, len);
	c->held = held;
	c->held_len += len;
	return 0;
}

static void parse(struct http_conn *c, const uint8_t *data, size_t len)
{
	size_t used = http_parser_execute(&c->parser, &settings, (const char *)data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
	if (c->refuse_status) {
		refuse(c, c->refuse_status);
		return;
	}
	if (e == HPE_PAUSED) {
		http_parser_pause(&c->parser, 0);
		if (used < len && hold(c, data + used, len - used) != 0) {
			conn_close(c);
			return;
		}
		uv_timer_stop(&c->idle); /* a call may take minutes: the client waits, not idles */
		c->l->handlers.request(c->l->ctx, c, &c->req);
		return;
	}
	if (e != HPE_OK) {
		refuse(c, 400);
		return;
	}
}

/* ---- connections ---- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct http_conn *c = handle->data;
	*buf = uv_buf_init(c->l->read_buf, sizeof c->l->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct http_conn *c = stream->data;
	if (nread < 0) {
		/* The client's end. While its request is being answered, it left: the answer is
		 * not wanted and the call is cancelled (a half-close reads the same; HTTP clients
		 * do not wait on one). Otherwise what it is owed goes out first. */
		c->peer_done = true;
		uv_read_stop(stream);
		if (c->answering)
			conn_close(c);
		else
			close_if_finished(c);
		return;
	}
	if (nread == 0 || c->cut_off)
		return;
	if (c->answering || c->held_pending) { /* a pipelined request: after those before it */
		if (hold(c, (const uint8_t *)buf->base, (size_t)nread) != 0)
			conn_close(c);
		return;
	}
	uv_timer_again(&c->idle);
	parse(c, (const uint8_t *)buf->base, (size_t)nread);
}

static void listener_maybe_closed(struct http_listener *l)
{
	if (l->closing && l->open_handles == 0) {
		void (*closed)(void *) = l->closed;
		void *ctx = l->closed_ctx;
		free(l);
		if (closed)
			closed(ctx);
	}
}

static void on_conn_handle_closed(uv_handle_t *handle)
{
	struct http_conn *c = handle->data;
	if (--c->open_handles > 0)
		return;
	struct http_listener *l = c->l;
	request_reset(c);
	free(c->held);
	free(c);
	l->open_handles--;
	listener_maybe_closed(l);
}

static void conn_close(struct http_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	struct http_listener *l = c->l;
	if (c->prev)
		c->prev->next = c->next;
	else
		l->first = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->last = c->prev;
	l->n_connections--;
	/* the client left (or was cut off) before its answer: the handler cancels the call */
	if (c->answering && c->request_ctx)
		l->handlers.gone(l->ctx, c, c->request_ctx);
	c->request_ctx = NULL;
	uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
}

static void on_idle(uv_timer_t *timer)
{
	struct http_conn *c = timer->data;
	if (c->streaming) { /* a comment line: proxies in front see the stream is alive */
		static const char comment[] = "3\r\n:\n\n\r\n";
		conn_write(c, comment, sizeof comment - 1, NULL, 0, NULL, 0, false);
		return;
	}
	if (c->held_pending) { /* not idle: a request came behind the last one */
		c->held_pending = false;
		uint8_t *held = c->held;
		size_t len = c->held_len;
		c->held = NULL;
		c->held_len = 0;
		parse(c, held, len);
		free(held);
		if (c->peer_done && c->answering) /* sent before its end, and then it left */
			conn_close(c);
		else
			close_if_finished(c);
		return;
	}
	if (!c->answering)
		conn_close(c);
}

/* At the cap, the oldest connection not being answered makes room. Returns whether one did. */
static bool evict_idle(struct http_listener *l, const struct http_conn *except)
{
	for (struct http_conn *c = l->first; c; c = c->next) {
		if (!c->answering && c != except) {
			conn_close(c);
			return true;
		}
	}
	return false;
}

static void on_connection(uv_stream_t *server, int status)
{
	struct http_listener *l = server->data;
	if (status < 0 || !l->accepting)
		return;
	struct http_conn *c = calloc(1, sizeof *c);
	if (!c)
		return;
	c->l = l;
	uv_tcp_init(l->loop, &c->tcp);
	uv_timer_init(l->loop, &c->idle);
	c->tcp.data = c->idle.data = c;
	c->open_handles = 2;
	l->open_handles++;
	c->prev = l->last;
	if (l->last)
		l->last->next = c;
	else
		l->first = c;
	l->last = c;
	l->n_connections++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	if (l->n_connections > l->max_connections && !evict_idle(l, c)) {
		/* every connection is busy with a call: this one is told so, and closed */
		l->refused++;
		c->cut_off = true;
		c->keep_alive = false;
		static const char busy[] = "503 too many connections\n";
		http_respond(c, 503, "text/plain; charset=utf-8", "Retry-After: 1\r\n", busy,
			     sizeof busy - 1);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	uv_timer_start(&c->idle, on_idle, HTTP_IDLE_MS, HTTP_IDLE_MS);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c);
}

static void on_server_closed(uv_handle_t *handle)
{
	struct http_listener *l = handle->data;
	l->open_handles--;
	listener_maybe_closed(l);
}

int http_listen(uv_loop_t *loop, const struct http_listen_config *cfg,
		const struct http_handlers *handlers, void *ctx, int *port_out,
		struct http_listener **out, char *err, size_t err_len)
{
	http_parser_settings_init(&settings);
	settings.on_url = on_url;
	settings.on_header_field = on_header_field;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_message_complete = on_message_complete;

	struct sockaddr_storage addr;
	int rc = strchr(cfg->host, ':')
			 ? uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr)
			 : uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
	if (rc) {
		snprintf(err, err_len, "--http: '%s' is not an IP address", cfg->host);
		return rc;
	}
	struct http_listener *l = calloc(1, sizeof *l);
	if (!l)
		return UV_ENOMEM;
	l->loop = loop;
	l->handlers = *handlers;
	l->ctx = ctx;
	l->max_connections = cfg->max_connections;
	uv_tcp_init(loop, &l->server);
	l->server.data = l;
	l->open_handles = 1;
	rc = uv_tcp_bind(&l->server, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->server, 1024, on_connection);
	if (rc) {
		snprintf(err, err_len, "cannot listen on %s port %d: %s", cfg->host, cfg->port,
			 uv_strerror(rc));
		l->closing = true; /* freed by the close's callback, closed NULL */
		uv_close((uv_handle_t *)&l->server, on_server_closed);
		return rc;
	}
	struct sockaddr_storage bound;
	int len = sizeof bound;
	uv_tcp_getsockname(&l->server, (struct sockaddr *)&bound, &len);
	*port_out = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
						 : ntohs(((struct sockaddr_in *)&bound)->sin_port);
	l->accepting = true;
	*out = l;
	return 0;
}

void http_stop_accepting(struct http_listener *l)
{
	if (!l->accepting)
		return;
	l->accepting = false;
	uv_close((uv_handle_t *)&l->server, on_server_closed);
	for (struct http_conn *c = l->first, *next; c; c = next) {
		next = c->next;
		if (!c->answering)
			conn_close(c);
	}
}

void http_close(struct http_listener *l, void (*closed)(void *ctx), void *ctx)
{
	http_stop_accepting(l);
	l->closing = true;
	l->closed = closed;
	l->closed_ctx = ctx;
	while (l->first)
		conn_close(l->first);
	listener_maybe_closed(l);
}

unsigned http_connections(const struct http_listener *l)
{
	return l->n_connections;
}

unsigned http_refused_connections(const struct http_listener *l)
{
	return l->refused;
}
