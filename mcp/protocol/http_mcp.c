/* The MCP endpoint over Streamable HTTP (see http.h and protocol.h's http_serve). Every request
 * but GET /healthz shows a bearer token of the token file (or, without one, comes to a loopback
 * address, whose Host must then name loopback: the DNS-rebinding defence); a browser's Origin
 * must be one allowed. POST /mcp carries one JSON-RPC message: a 2026-07-28 one stands alone
 * (its headers must agree with its body), an initialize-era one belongs to the session its
 * initialize opened. Each POST is one exchange of the server: answered with JSON when the
 * answer is ready at once, else with an event stream that carries the call's notifications and
 * then its answer. A client that goes away before its answer cancels its call.
 */
#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "http.h"

#define SESSIONS_MAX 4096
#define SESSION_IDLE_MS (60ull * 60 * 1000) /* a session unused this long is forgotten */
#define SESSION_ID_LEN 32
/* file descriptors kept for VMs, the image cache and kept states when the fd limit caps the
 * count of connections */
#define FDS_RESERVED 1024
#define CONNECTIONS_MAX 16384

struct token_client {
	struct client client;
	struct state_store states;
};

struct session {
	char id[SESSION_ID_LEN + 1];
	struct token_client *owner;
	char version[MCP_VERSION_MAX];
	int level;
	char client_name[CLIENT_LABEL_MAX];
	uint64_t last_used_ms;
	struct http_exchange *exchanges; /* answering its requests */
	struct session *prev, *next;
};

struct endpoint {
	struct server *srv;
	struct http_listener *listener;
	struct token *tokens;
	int n_tokens;
	struct token_client *clients; /* one per token; without a token file, one: "local" */
	int n_clients;
	bool loopback;
	const char *const *origins;
	size_t n_origins;
	bool remove_states; /* the tokens' states go with the process */
	struct session *sessions;
	unsigned n_sessions;
	void (*stopped)(void *ctx);
	void *ctx;
};

struct http_exchange {
	struct exchange x; /* first: the server's handle is this */
	struct endpoint *ep;
	struct http_conn *conn; /* NULL once the client is gone */
	struct session *session;
	struct http_exchange *session_prev, *session_next; /* the session's in flight */
	bool is_request; /* it has an id: an answer is owed */
	struct token_client *tc;
	bool stateless, accepts_stream;
	bool dispatching, answered;
};

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

static void refuse(struct endpoint *ep, struct http_conn *c, int status, const char *reason,
		   const char *headers, const char *body)
{
	metrics_refusal(server_metrics(ep->srv), reason);
	http_respond(c, status, body ? "text/plain; charset=utf-8" : NULL, headers, body,
		     body ? strlen(body) : 0);
}

/* A JSON-RPC error as the whole response (a request refused before it is an exchange). */
static void respond_rpc_error(struct endpoint *ep, struct http_conn *c, int status, json_t *id,
			      int code, const char *message, const char *reason)
{
	json_t *msg = rpc_error_message(id, code, message);
	char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (reason)
		metrics_refusal(server_metrics(ep->srv), reason);
	if (text)
		http_respond(c, status, "application/json", NULL, text, strlen(text));
	else
		http_respond(c, 500, NULL, NULL, "", 0);
	free(text);
}

/* ---- sessions (the initialize era) ---- */

static void session_forget(struct endpoint *ep, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		ep->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	ep->n_sessions--;
	free(s);
}

static void sessions_sweep(struct endpoint *ep)
{
	uint64_t now = now_ms();
	for (struct session *s = ep->sessions, *next; s; s = next) {
		next = s->next;
		if (!s->exchanges && now - s->last_used_ms > SESSION_IDLE_MS)
			session_forget(ep, s);
	}
}

static struct session *session_find(struct endpoint *ep, const char *id,
				    const struct token_client *tc)
{
	sessions_sweep(ep);
	for (struct session *s = ep->sessions; s; s = s->next) {
		if (strcmp(s->id, id) == 0 && s->owner == tc) { /* another token's reads as none */
			s->last_used_ms = now_ms();
			return s;
		}
	}
	return NULL;
}

static struct session *session_open(struct endpoint *ep, struct token_client *tc,
				    const struct exchange *x)
{
	sessions_sweep(ep);
	if (ep->n_sessions >= SESSIONS_MAX) { /* the least recently used idle one makes room */
		struct session *oldest = NULL;
		for (struct session *s = ep->sessions; s; s = s->next)
			if (!s->exchanges && (!oldest || s->last_used_ms < oldest->last_used_ms))
				oldest = s;
		if (!oldest)
			return NULL;
		session_forget(ep, oldest);
	}
	struct session *s = calloc(1, sizeof *s);
	if (!s || random_hex(s->id, SESSION_ID_LEN / 2) != 0) {
		free(s);
		return NULL;
	}
	s->owner = tc;
	snprintf(s->version, sizeof s->version, "%s", x->session_version);
	snprintf(s->client_name, sizeof s->client_name, "%s", x->client_name);
	s->level = x->session_level;
	s->last_used_ms = now_ms();
	s->next = ep->sessions;
	if (ep->sessions)
		ep->sessions->prev = s;
	ep->sessions = s;
	ep->n_sessions++;
	return s;
}

/* ---- exchanges ---- */

static void session_join(struct http_exchange *hx, struct session *s)
{
	hx->session = s;
	hx->session_next = s->exchanges;
	if (s->exchanges)
		s->exchanges->session_prev = hx;
	s->exchanges = hx;
}

static void session_leave(struct http_exchange *hx)
{
	struct session *s = hx->session;
	if (!s)
		return;
	if (hx->session_prev)
		hx->session_prev->session_next = hx->session_next;
	else
		s->exchanges = hx->session_next;
	if (hx->session_next)
		hx->session_next->session_prev = hx->session_prev;
	hx->session = NULL;
	hx->x.scope = NULL;
}

static void exchange_free(struct http_exchange *hx)
{
	session_leave(hx);
	free(hx);
}

/* DELETE: the session ends now; the calls of its requests are cancelled (each request's
 * response ends without an answer). */
static void session_end(struct endpoint *ep, struct session *s)
{
	while (s->exchanges) {
		struct http_exchange *hx = s->exchanges;
		session_leave(hx);
		if (hx->x.call && !hx->dispatching)
			call_cancel(hx->x.call);
	}
	session_forget(ep, s);
}

/* The HTTP status an answer goes with: the transport's own errors (a frame that is not JSON-RPC,
 * a method not found, the 2026-07-28 envelope) are 4xx; a method's error is the body's to say. */
static int status_for(const struct http_exchange *hx, json_t *msg)
{
	json_t *error = json_object_get(msg, "error");
	if (!error)
		return 200;
	json_int_t code = json_integer_value(json_object_get(error, "code"));
	if (code == RPC_PARSE_ERROR || code == RPC_INVALID_REQUEST)
		return 400;
	if (!hx->stateless)
		return 200;
	if (code == RPC_METHOD_NOT_FOUND)
		return 404;
	if (code == RPC_HEADER_MISMATCH || code == RPC_MISSING_CAPABILITY ||
	    code == RPC_UNSUPPORTED_VERSION)
		return 400;
	return hx->x.bad_envelope ? 400 : 200;
}

static int exchange_send(struct exchange *x, json_t *msg, bool final)
{
	struct http_exchange *hx = (struct http_exchange *)x;
	if (!hx->conn || hx->answered)
		return 0; /* the client left: nothing reaches it */
	char *text = msg ? json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(12)) : NULL;
	if (msg && !text)
		return UV_ENOMEM;
	if (!final) { /* a notification: only an event stream carries it */
		int rc = 0;
		if (hx->accepts_stream && !hx->dispatching) {
			http_stream_begin(hx->conn, NULL);
			rc = http_stream_event(hx->conn, text, strlen(text));
		}
		free(text);
		return rc;
	}
	hx->answered = true;
	struct http_conn *c = hx->conn;
	http_conn_set_request_ctx(c, NULL);
	if (hx->session) /* logging/setLevel changed it */
		hx->session->level = x->session_level;
	char header[128] = "";
	if (x->initialized && msg && json_object_get(msg, "result")) {
		struct session *s = session_open(hx->ep, hx->tc, x);
		if (!s) {
			free(text);
			respond_rpc_error(hx->ep, c, 503, json_object_get(msg, "id"),
					  RPC_INTERNAL_ERROR, "too many sessions", "sessions");
			goto done;
		}
		snprintf(header, sizeof header, "Mcp-Session-Id: %s\r\n", s->id);
	}
	if (!text && http_stream_started(c)) {
		http_stream_end(c); /* a request cancelled: its stream ends without an answer */
	} else if (!text) {
		/* a notification, accepted; or a request cancelled, answered with nothing */
		http_respond(c, hx->is_request ? 204 : 202, NULL, NULL, "", 0);
	} else if (http_stream_started(c)) {
		http_stream_event(c, text, strlen(text));
		http_stream_end(c);
	} else {
		http_respond(c, status_for(hx, msg), "application/json", header, text,
			     strlen(text));
	}
	free(text);
done:
	if (!hx->dispatching)
		exchange_free(hx);
	return 0;
}

static const struct exchange_ops http_exchange_ops = {exchange_send};

/* ---- POST /mcp ---- */

/* An Mcp-Name value: as sent, or base64 of UTF-8 inside =?base64?...?=. */
static bool header_names(const char *header, const char *value)
{
	size_t len = strlen(header);
	if (len > 11 && strncmp(header, "=?base64?", 9) == 0 &&
	    strcmp(header + len - 2, "?=") == 0) {
		uint8_t *decoded;
		size_t decoded_len;
		if (base64_decode(header + 9, len - 11, &decoded, &decoded_len) != 0)
			return false;
		bool same = decoded_len == strlen(value) && memcmp(decoded, value, decoded_len) == 0;
		free(decoded);
		return same;
	}
	return strcmp(header, value) == 0;
}

/* 2026-07-28 over HTTP: the headers repeat what routing needs, and must agree with the body.
 * Returns NULL, or what does not agree. */
static const char *header_mismatch(const struct http_request *req, json_t *msg)
{
	const char *method = json_string_value(json_object_get(msg, "method"));
	json_t *params = json_object_get(msg, "params");
	const char *version = json_string_value(json_object_get(
		json_object_get(params, "_meta"), "io.modelcontextprotocol/protocolVersion"));
	/* a body without its version is malformed, which methods.c says (-32602) */
	if (version && strcmp(req->protocol_version, version) != 0)
		return "MCP-Protocol-Version does not match _meta's protocolVersion";
	if (!method || strcmp(req->mcp_method, method) != 0)
		return "Mcp-Method does not match the body's method";
	const char *name = NULL;
	if (!strcmp(method, "tools/call") || !strcmp(method, "prompts/get"))
		name = json_string_value(json_object_get(params, "name"));
	else if (!strcmp(method, "resources/read"))
		name = json_string_value(json_object_get(params, "uri"));
	else if (!strcmp(method, "tasks/get") || !strcmp(method, "tasks/update") ||
		 !strcmp(method, "tasks/cancel"))
		name = json_string_value(json_object_get(params, "taskId"));
	else
		return NULL;
	if (name && (!req->has_mcp_name || !header_names(req->mcp_name, name)))
		return "Mcp-Name does not match the body";
	return NULL;
}

static void post_mcp(struct endpoint *ep, struct http_conn *c, struct http_request *req,
		     struct token_client *tc)
{
	if (strncasecmp(req->content_type, "application/json", 16) != 0) {
		refuse(ep, c, 415, "content_type", NULL, "415 send application/json\n");
		return;
	}
	bool stream = strstr(req->accept, "text/event-stream") != NULL;
	json_error_t error;
	json_t *msg = json_loadb((const char *)req->body, req->body_len,
				 JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &error);
	if (!msg) {
		respond_rpc_error(ep, c, 400, NULL, RPC_PARSE_ERROR, "Parse error: not a JSON text",
				  "parse");
		return;
	}
	json_t *params = json_object_get(msg, "params");
	json_t *meta = json_object_get(params, "_meta");
	/* 2026-07-28 by its body's _meta, or by its header (a body whose _meta lacks the version
	 * is then a malformed request of that era, not one of the initialize era) */
	bool stateless = json_is_object(msg) &&
			 (json_object_get(meta, "io.modelcontextprotocol/protocolVersion") ||
			  strcmp(req->protocol_version, MCP_PROTOCOL_STATELESS) == 0);
	const char *method = json_string_value(json_object_get(msg, "method"));
	struct session *session = NULL;
	if (stateless) {
		const char *mismatch = header_mismatch(req, msg);
		if (mismatch) {
			char text[160];
			snprintf(text, sizeof text, "Header mismatch: %s", mismatch);
			respond_rpc_error(ep, c, 400, json_object_get(msg, "id"), RPC_HEADER_MISMATCH, text,
					  "header_mismatch");
			json_decref(msg);
			return;
		}
	} else if (json_is_object(msg) && !(method && strcmp(method, "initialize") == 0)) {
		if (!req->session_id[0]) {
			respond_rpc_error(ep, c, 400, json_object_get(msg, "id"),
					  RPC_INVALID_REQUEST,
					  "Bad Request: Mcp-Session-Id header is required (send "
					  "initialize first, or speak 2026-07-28)",
					  "no_session");
			json_decref(msg);
			return;
		}
		session = session_find(ep, req->session_id, tc);
		if (!session) {
			respond_rpc_error(ep, c, 404, json_object_get(msg, "id"),
					  RPC_INVALID_REQUEST, "Session not found", "unknown_session");
			json_decref(msg);
			return;
		}
		if (req->protocol_version[0] && !mcp_initialize_era_version(req->protocol_version)) {
			respond_rpc_error(ep, c, 400, json_object_get(msg, "id"),
					  RPC_INVALID_REQUEST,
					  "Bad Request: unsupported MCP-Protocol-Version", "version");
			json_decref(msg);
			return;
		}
	}
	struct http_exchange *hx = calloc(1, sizeof *hx);
	if (!hx) {
		json_decref(msg);
		http_respond(c, 503, NULL, NULL, "", 0);
		return;
	}
	hx->x = (struct exchange){.ops = &http_exchange_ops, .client = &tc->client,
				  .one_shot = true, .stateless = stateless,
				  .session_level = LOG_WARNING};
	hx->ep = ep;
	hx->conn = c;
	hx->tc = tc;
	hx->stateless = stateless;
	hx->accepts_stream = stream;
	hx->is_request = json_object_get(msg, "id") && method; /* not a response, nor a notice */
	if (session) {
		session_join(hx, session);
		hx->x.scope = session;
		snprintf(hx->x.session_version, sizeof hx->x.session_version, "%s",
			 session->version);
		hx->x.session_level = session->level;
	}
	http_conn_set_request_ctx(c, hx);
	hx->dispatching = true;
	server_message(ep->srv, &hx->x, msg);
	hx->dispatching = false;
	json_decref(msg);
	if (hx->answered) {
		exchange_free(hx);
		return;
	}
	/* a call is running: its notifications and answer come on an event stream (or the
	 * answer alone, as JSON, to a client that takes no stream) */
	if (hx->accepts_stream)
		http_stream_begin(c, NULL);
}

/* ---- routing ---- */

static bool loopback_host(const char *host, size_t len)
{
	return (len == 9 && strncasecmp(host, "localhost", 9) == 0) ||
	       (len == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
	       (len == 5 && strncmp(host, "[::1]", 5) == 0);
}

/* The host of a Host header or an Origin's authority, without the port. */
static bool names_loopback(const char *authority)
{
	const char *end = authority[0] == '[' ? strchr(authority, ']') : strchr(authority, ':');
	size_t len = end ? (size_t)(end - authority) + (authority[0] == '[') : strlen(authority);
	return loopback_host(authority, len);
}

static bool origin_allowed(const struct endpoint *ep, const char *origin)
{
	for (size_t i = 0; i < ep->n_origins; i++)
		if (strcasecmp(origin, ep->origins[i]) == 0)
			return true;
	const char *authority = strncmp(origin, "http://", 7) == 0	 ? origin + 7
				: strncmp(origin, "https://", 8) == 0 ? origin + 8
								      : NULL;
	return ep->loopback && authority && names_loopback(authority);
}

static void health(struct endpoint *ep, struct http_conn *c)
{
	char why[600];
	if (server_healthy(ep->srv, why, sizeof why - 1)) {
		http_respond(c, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3);
		return;
	}
	strcat(why, "\n");
	http_respond(c, 503, "text/plain; charset=utf-8", NULL, why, strlen(why));
}

static void metrics(struct endpoint *ep, struct http_conn *c)
{
	struct metrics_gauges g = {0};
	server_gauges(ep->srv, &g);
	g.connections = http_connections(ep->listener);
	g.sessions = ep->n_sessions;
	for (int i = 0; i < ep->n_clients; i++)
		g.tasks += ep->clients[i].client.n_tasks;
	char *text = metrics_render(server_metrics(ep->srv), &g);
	if (!text) {
		http_respond(c, 500, NULL, NULL, "", 0);
		return;
	}
	http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, strlen(text));
	free(text);
}

static struct token_client *authenticate(struct endpoint *ep, const struct http_request *req)
{
	if (!ep->tokens)
		return &ep->clients[0];
	int i = tokens_match(ep->tokens, ep->n_tokens, req->authorization);
	return i < 0 ? NULL : &ep->clients[i];
}

/* Before the body is read: whether this request may go on. A refusal here costs the server
 * no more than the request's head (a body is read only for a client that shows a token).
 * Returns 0, or the status it is refused with. */
static int on_head(void *ctx, const struct http_request *req)
{
	struct endpoint *ep = ctx;
	int status = 0;
	const char *reason = NULL;
	if (req->repeated_header) {
		status = 400, reason = "repeated_header";
	} else if (server_shutting_down(ep->srv)) {
		status = 503, reason = "shutting_down";
	} else if (ep->loopback && !ep->tokens && req->host[0] && !names_loopback(req->host)) {
		/* DNS rebinding: a page's name made to point at loopback still says its own name.
		 * With tokens the page has none to show; without them this is the wall (and a proxy
		 * in front of a tokened server may pass its own Host along). */
		status = 403, reason = "host";
	} else if (req->origin[0] && !origin_allowed(ep, req->origin)) {
		status = 403, reason = "origin";
	} else if (strcmp(req->path, "/healthz") == 0 && req->method == HTTP_GET) {
		return 0;
	} else if (!authenticate(ep, req)) {
		status = 401, reason = "token"; /* no detail: which part was wrong is nobody's */
	}
	if (status)
		metrics_refusal(server_metrics(ep->srv), reason);
	return status;
}

static void on_request(void *ctx, struct http_conn *c, struct http_request *req)
{
	struct endpoint *ep = ctx;
	bool get = req->method == HTTP_GET;
	if (strcmp(req->path, "/healthz") == 0 && get) {
		health(ep, c);
		return;
	}
	struct token_client *tc = authenticate(ep, req); /* on_head let only a match through */
	if (req->path_too_long ||
	    (strcmp(req->path, "/mcp") != 0 && strcmp(req->path, "/metrics") != 0)) {
		refuse(ep, c, 404, "path", NULL, "404 the MCP endpoint is /mcp\n");
		return;
	}
	if (strcmp(req->path, "/metrics") == 0) {
		if (get)
			metrics(ep, c);
		else
			refuse(ep, c, 405, "method", "Allow: GET\r\n", "405\n");
		return;
	}
	if (req->method == HTTP_POST) {
		post_mcp(ep, c, req, tc);
	} else if (req->method == HTTP_DELETE && req->session_id[0]) {
		struct session *s = session_find(ep, req->session_id, tc);
		if (s)
			session_end(ep, s);
		http_respond(c, s ? 200 : 404, NULL, NULL, "", 0);
	} else {
		/* no stream of the server's own to offer (GET), nothing else to do */
		refuse(ep, c, 405, "method", "Allow: POST, DELETE\r\n", "405 POST to /mcp\n");
	}
}

static void on_gone(void *ctx, struct http_conn *c, void *request_ctx)
{
	(void)c;
	struct endpoint *ep = ctx;
	struct http_exchange *hx = request_ctx;
	hx->conn = NULL;
	server_exchange_gone(ep->srv, &hx->x);
	exchange_free(hx);
}

/* ---- start and stop ---- */

static void on_closed(void *ctx)
{
	struct endpoint *ep = ctx;
	void (*stopped)(void *) = ep->stopped;
	void *stopped_ctx = ep->ctx;
	while (ep->sessions) /* every call has ended: no exchange is left in one */
		session_forget(ep, ep->sessions);
	for (int i = 0; i < ep->n_clients; i++) {
		tasks_forget(&ep->clients[i].client);
		if (ep->remove_states && ep->clients[i].client.states)
			state_remove_owned(ep->clients[i].client.states);
	}
	server_free(ep->srv);
	if (ep->tokens)
		explicit_bzero(ep->tokens, (size_t)ep->n_tokens * sizeof *ep->tokens);
	free(ep->tokens);
	free(ep->clients);
	free(ep);
	stopped(stopped_ctx);
}

static void on_stop_taking(void *ctx)
{
	struct endpoint *ep = ctx;
	if (ep->listener)
		http_stop_accepting(ep->listener);
}

static void on_drained(void *ctx)
{
	struct endpoint *ep = ctx;
	http_close(ep->listener, on_closed, ep);
}

/* Each token's kept states: the server's store, under an owner of the token's own. Without
 * --state-persist the owner dies with the process ("mcp:PID:RANDOM:N"); with it, the owner is
 * the token itself (a digest of it), so the token's states outlive a restart. */
static void token_store(const struct state_store *base, const struct token *t, int index,
			bool persist, struct state_store *out)
{
	*out = *base;
	if (!t) /* no token file: the process's own, as on stdio */
		return;
	if (persist) {
		char digest[SHA256_HEX_SIZE];
		sha256_hex(t->secret, t->secret_len, digest);
		snprintf(out->owner, sizeof out->owner, "token:%.16s", digest);
	} else {
		char owner[STATE_OWNER_MAX + 16]; /* "mcp:PID:RANDOM" is ~30 characters */
		snprintf(owner, sizeof owner, "%s:%d", base->owner, index);
		memcpy(out->owner, owner, sizeof out->owner - 1);
		out->owner[sizeof out->owner - 1] = '\0';
	}
}

/* More connections need more descriptors: the soft limit goes up to the hard one, and the
 * count of connections stays below it, less what VMs and files need. */
static unsigned connection_cap(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 256;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit raised = {rl.rlim_max, rl.rlim_max};
		if (raised.rlim_cur == RLIM_INFINITY || raised.rlim_cur > 1u << 20)
			raised.rlim_cur = raised.rlim_max = 1u << 20;
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur <= FDS_RESERVED + 64)
		return 64;
	rlim_t cap = rl.rlim_cur - FDS_RESERVED;
	return cap > CONNECTIONS_MAX ? CONNECTIONS_MAX : (unsigned)cap;
}

static bool loopback_address(const char *host)
{
	return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

int http_serve(uv_loop_t *loop, const struct server_config *cfg,
	       const struct http_serve_config *http, void (*stopped)(void *ctx), void *ctx,
	       struct server **out, char *err, size_t err_len)
{
	struct sockaddr_in6 check;
	if (uv_ip4_addr(http->host, 0, (struct sockaddr_in *)&check) != 0 &&
	    uv_ip6_addr(http->host, 0, &check) != 0) {
		snprintf(err, err_len, "--http %s: not an IP address (names are not resolved: give "
				       "127.0.0.1, ::1, 0.0.0.0 or an address of this host)",
			 http->host);
		return -EINVAL;
	}
	struct endpoint *ep = calloc(1, sizeof *ep);
	if (!ep)
		return -ENOMEM;
	ep->stopped = stopped;
	ep->ctx = ctx;
	ep->loopback = loopback_address(http->host);
	ep->origins = http->origins;
	ep->n_origins = http->n_origins;
	ep->remove_states = !http->state_persist;
	int rc = 0;
	if (http->token_file) {
		rc = tokens_load(http->token_file, &ep->tokens, err, err_len);
		if (rc < 0) {
			free(ep);
			return rc;
		}
		ep->n_tokens = rc;
	} else if (!ep->loopback) {
		snprintf(err, err_len, "--http %s without --token-file: only a loopback address "
				       "(127.0.0.1, ::1) may go without tokens",
			 http->host);
		free(ep);
		return -EINVAL;
	}
	ep->n_clients = ep->tokens ? ep->n_tokens : 1;
	ep->clients = calloc((size_t)ep->n_clients, sizeof *ep->clients);
	if (!ep->clients) {
		free(ep->tokens);
		free(ep);
		return -ENOMEM;
	}
	for (int i = 0; i < ep->n_clients; i++) {
		struct token_client *tc = &ep->clients[i];
		const struct token *t = ep->tokens ? &ep->tokens[i] : NULL;
		snprintf(tc->client.label, sizeof tc->client.label, "%s", t ? t->label : "local");
		if (cfg->states) {
			token_store(cfg->states, t, i, http->state_persist, &tc->states);
			tc->client.states = &tc->states;
		}
	}
	static const struct server_hooks hooks = {on_stop_taking, on_drained};
	rc = server_create(loop, cfg, &hooks, ep, &ep->srv);
	if (rc) {
		snprintf(err, err_len, "cannot start the server: %s", uv_strerror(rc));
		free(ep->clients);
		free(ep->tokens);
		free(ep);
		return rc;
	}
	struct http_listen_config lc = {http->host, http->port, connection_cap()};
	static const struct http_handlers handlers = {on_head, on_request, on_gone};
	int port = 0;
	rc = http_listen(loop, &lc, &handlers, ep, &port, &ep->listener, err, err_len);
	if (rc) {
		/* nothing was served: the server is freed with the endpoint */
		server_free(ep->srv);
		free(ep->clients);
		free(ep->tokens);
		free(ep);
		return rc;
	}
	if (!ep->tokens)
		fprintf(stderr, "airlock: warning: no --token-file: any local process may use this "
				"server, run code in it and read its kept states\n");
	bool v6 = strchr(http->host, ':') != NULL;
	fprintf(stderr, "airlock: listening on http://%s%s%s:%d/mcp\n", v6 ? "[" : "", http->host,
		v6 ? "]" : "", port);
	*out = ep->srv;
	return 0;
}
