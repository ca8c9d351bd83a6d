/* MCP's Streamable HTTP transport (`airlock mcp --http`), internal to its three files:
 * http_conn.c (connections: libuv TCP, Debian's http-parser, limits, writing responses and
 * event streams), http_tokens.c (the token file, constant-time checks) and http_mcp.c (the
 * endpoint: tokens, Origin and Host, sessions of the initialize era, /healthz, /metrics, and
 * each POST as one exchange of the server).
 */
#ifndef AIRLOCK_HTTP_H
#define AIRLOCK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "protocol.h"

/* ---- limits ---- */

#define HTTP_HEAD_MAX (16u << 10)  /* request line and headers */
#define HTTP_HEADERS_MAX 64
#define HTTP_BODY_MAX RPC_MAX_LINE /* the same bound as a stdio message: 413 past it */
/* A connection with no request being answered is closed after this long without a byte: idle
 * keep-alive connections, and clients that send half a request and stall. */
#define HTTP_IDLE_MS 30000
/* An event stream with nothing to say for this long gets a comment line: a reverse proxy in
 * front (nginx's proxy_read_timeout is 60 s by default) must not take a long call for a dead
 * one. */
#define HTTP_STREAM_KEEPALIVE_MS 15000
/* Bytes that arrive while a request is being answered (a pipelined next request) are held up to
 * this much; a client that sends more is cut off. */
#define HTTP_HELD_MAX (64u << 10)
/* Unread response bytes past which a connection's event stream drops notifications. */
#define HTTP_OUTPUT_HIGH_MARK (64u << 20)

/* ---- connections (http_conn.c) ---- */

struct http_conn;
struct http_listener;

struct http_request {
	unsigned method; /* http_parser's enum http_method */
	char path[256];  /* without the query */
	bool path_too_long;
	/* the headers this server reads, NUL-terminated ("" when absent); a repeated one is
	 * flagged, as a request whose meaning depends on which copy counts is refused */
	char authorization[512], origin[256], host[256], content_type[128], accept[256];
	char session_id[80], protocol_version[32], mcp_method[64], mcp_name[512];
	bool repeated_header;
	bool has_mcp_name;
	uint8_t *body;
	size_t body_len;
};

struct http_handlers {
	/* A request's head, before its body is read: 0 to read on, or the status it is refused
	 * with (401 goes with WWW-Authenticate: Bearer and no body), the connection then closed. */
	int (*head)(void *ctx, const struct http_request *req);
	/* A whole request (borrowed until http_conn_finish... or the connection closes). The
	 * handler answers it with http_respond or http_stream_*. */
	void (*request)(void *ctx, struct http_conn *c, struct http_request *req);
	/* The connection closed while a request of it was unanswered (the client left). */
	void (*gone)(void *ctx, struct http_conn *c, void *request_ctx);
};

struct http_listen_config {
	const char *host; /* an IPv4 or IPv6 literal */
	int port;         /* 0: a free one */
	unsigned max_connections;
};

/* Listens; the bound port goes to *port_out. Returns 0 or a libuv error (err says what). */
int http_listen(uv_loop_t *loop, const struct http_listen_config *cfg,
		const struct http_handlers *handlers, void *ctx, int *port_out,
		struct http_listener **out, char *err, size_t err_len);
/* Stops accepting; idle connections close, busy ones close once answered. */
void http_stop_accepting(struct http_listener *l);
/* Closes everything; closed(ctx) once every handle is gone (then the listener is freed). */
void http_close(struct http_listener *l, void (*closed)(void *ctx), void *ctx);
unsigned http_connections(const struct http_listener *l);
unsigned http_refused_connections(const struct http_listener *l);

/* What the handler keeps about the request being answered (given back to gone). */
void http_conn_set_request_ctx(struct http_conn *c, void *request_ctx);
/* A whole response: status, optional content type and extra header lines ("Name: value\r\n"
 * each, or NULL), and a body. Ends the request; the connection reads the next one. */
void http_respond(struct http_conn *c, int status, const char *content_type,
		  const char *extra_headers, const char *body, size_t body_len);
/* An event stream (text/event-stream, chunked): the head, then events, then the end. */
void http_stream_begin(struct http_conn *c, const char *extra_headers);
/* One `event: message` with data (no newlines in it: compact JSON). Returns 0, or UV_EAGAIN
 * when dropped because the client leaves too much unread. */
int http_stream_event(struct http_conn *c, const char *data, size_t len);
void http_stream_end(struct http_conn *c);
bool http_stream_started(const struct http_conn *c);

/* ---- tokens (http_tokens.c) ---- */

#define TOKEN_MIN_LEN 16
#define TOKEN_MAX_LEN 256
#define TOKENS_MAX 1024

struct token {
	char label[CLIENT_LABEL_MAX];
	char secret[TOKEN_MAX_LEN + 1];
	size_t secret_len;
};

/* Reads a token file: one token a line, `LABEL:TOKEN` or a bare TOKEN (labelled token-N);
 * blank lines and lines starting with # are skipped. Returns the count (>= 1) or -errno, with
 * err naming the line at fault. */
int tokens_load(const char *path, struct token **out, char *err, size_t err_len);
/* The token whose secret is presented (an Authorization header's "Bearer X"), or -1. Every
 * token is compared in constant time, whatever matches. */
int tokens_match(const struct token *tokens, int n, const char *authorization);

#endif
