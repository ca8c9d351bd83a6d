/* The MCP server (see protocol.h): message shape checks, method dispatch, the calls in flight, the
 * VM-slot queue, the first-use image build, logging, progress, and shutdown.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "protocol.h"
#include "sandbox.h"

static const char *const supported_versions[] = {
	MCP_PROTOCOL_LATEST, "2025-06-18", "2025-03-26", "2024-11-05", NULL,
};

static const char *const level_names[] = {"debug", "info", "notice", "warning", "error",
					  "critical", "alert", "emergency"};
#define LEVEL_COUNT (sizeof level_names / sizeof level_names[0])

struct server {
	uv_loop_t *loop;
	struct server_config cfg;
	struct rpc *rpc;
	int client_level; /* index into level_names: notifications/message at or above it */

	uv_work_t image_work;
	bool images_building, images_failed;
	char images_error[1024];

	/* per language: the snapshot VMs restore from (empty: boot instead), and the warm pool */
	char snapshots[AL_LANG_END][PATH_MAX];
	struct snapshot_facts snapshot_facts[AL_LANG_END];
	struct pool *pool;
	bool pool_stopping;

	struct call *calls; /* every call in flight, queued or running */
	struct call *queue_head, *queue_tail;
	unsigned queued, running;
	uint64_t backpressure_said_ms; /* when stderr last said the client does not read */

	bool shutting_down, rpc_closing;
	void (*stopped)(void *ctx);
	void *ctx;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const struct server_config *server_config(const struct server *srv)
{
	return &srv->cfg;
}

uv_loop_t *server_loop(const struct server *srv)
{
	return srv->loop;
}

void server_log(struct server *srv, enum log_level level, const char *fmt, ...)
{
	char raw[1024], text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);
	rpc_excerpt(text, sizeof text, raw); /* a cut or quoted text that is not UTF-8 */
	if (level >= LOG_INFO || srv->cfg.verbose)
		fprintf(stderr, "airlock: %s: %s\n", level_names[level], text);
	if ((int)level >= srv->client_level && !srv->rpc_closing)
		rpc_notify(srv->rpc, "notifications/message",
			   json_pack("{s:s, s:s, s:s}", "level", level_names[level], "logger",
				     "airlock", "data", text));
}

void server_progress(struct call *call, double progress, const char *message)
{
	struct server *srv = call->srv;
	if (!call->progress_token || srv->rpc_closing)
		return;
	rpc_notify(srv->rpc, "notifications/progress",
		   json_pack("{s:O, s:f, s:s}", "progressToken", call->progress_token, "progress",
			     progress, "message", message));
}

/* ---- shutdown ---- */

static void on_rpc_closed(void *ctx)
{
	struct server *srv = ctx;
	void (*stopped)(void *) = srv->stopped;
	void *stopped_ctx = srv->ctx;
	srv->rpc = NULL;
	if (!srv->images_building)
		free(srv);
	else
		srv->stopped = NULL; /* the image work's callback frees it */
	stopped(stopped_ctx);
}

static void on_pool_stopped(void *ctx);

static void close_if_done(struct server *srv)
{
	if (srv->shutting_down && srv->pool && !srv->pool_stopping) {
		srv->pool_stopping = true;
		pool_stop(srv->pool, on_pool_stopped, srv);
	}
	if (srv->shutting_down && !srv->calls && !srv->pool && !srv->rpc_closing) {
		srv->rpc_closing = true;
		rpc_close(srv->rpc, on_rpc_closed);
	}
}

/* ---- calls and the slot queue ---- */

static void unlink_call(struct call *call)
{
	struct server *srv = call->srv;
	if (call->prev)
		call->prev->next = call->next;
	else
		srv->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
}

static void remove_from_queue(struct call *call)
{
	struct server *srv = call->srv;
	struct call **p = &srv->queue_head;
	struct call *last = NULL;
	while (*p && *p != call) {
		last = *p;
		p = &(*p)->queue_next;
	}
	if (!*p)
		return;
	*p = call->queue_next;
	if (srv->queue_tail == call)
		srv->queue_tail = last;
	call->queue_next = NULL;
	srv->queued--;
}

/* Whether a call may take a VM slot now. Not during the first-use build, and not while the
 * client leaves its output unread: a call started then would add its result (up to ~32 MiB)
 * to that output, so only the running calls' results can pile up behind the high mark. */
static bool slot_free(const struct server *srv)
{
	return !srv->images_building && srv->running < srv->cfg.max_concurrent &&
	       !(srv->rpc && rpc_output_backed_up(srv->rpc));
}

static void pump_queue(struct server *srv)
{
	while (srv->queue_head && slot_free(srv)) {
		struct call *call = srv->queue_head;
		srv->queue_head = call->queue_next;
		if (!srv->queue_head)
			srv->queue_tail = NULL;
		call->queue_next = NULL;
		srv->queued--;
		call->holds_slot = true;
		srv->running++;
		call->start(call);
	}
}

void call_run_when_ready(struct call *call)
{
	struct server *srv = call->srv;
	if ((srv->queue_head || !slot_free(srv)) && srv->queued >= srv->cfg.max_queued) {
		/* Refused before it holds anything more: the bound on the queue is the bound on the
		 * requests it keeps in memory. */
		unsigned waiting = srv->queued;
		if (call->release)
			call->release(call);
		call->state = NULL;
		call_finish(call, content_error("airlock is busy: %u calls are already waiting",
						waiting));
		return;
	}
	srv->queued++;
	if (srv->queue_tail)
		srv->queue_tail->queue_next = call;
	else
		srv->queue_head = call;
	srv->queue_tail = call;
	pump_queue(srv);
}

static void end_call(struct call *call)
{
	struct server *srv = call->srv;
	remove_from_queue(call);
	unlink_call(call);
	if (call->holds_slot)
		srv->running--;
	json_decref(call->id);
	json_decref(call->progress_token);
	free(call);
	pump_queue(srv);
	close_if_done(srv);
}

void call_finish(struct call *call, json_t *result)
{
	if (!call->cancelled && !call->srv->rpc_closing)
		rpc_send_result(call->srv->rpc, call->id, result);
	else
		json_decref(result);
	end_call(call);
}

void call_drop(struct call *call)
{
	end_call(call);
}

static void cancel_call(struct call *call)
{
	if (call->cancelled)
		return;
	call->cancelled = true;
	if (call->holds_slot) {
		call->cancel(call); /* the tool kills its VM and drops the call when it is gone */
		return;
	}
	remove_from_queue(call); /* still waiting: nothing runs yet */
	if (call->release)
		call->release(call);
	call_drop(call);
}

void server_shutdown(struct server *srv)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	/* cancel_call may free the call: take the next one first */
	for (struct call *c = srv->calls, *next; c; c = next) {
		next = c->next;
		cancel_call(c);
	}
	close_if_done(srv);
}

static void on_pool_stopped(void *ctx)
{
	struct server *srv = ctx;
	srv->pool = NULL;
	close_if_done(srv);
}

/* ---- the first-use image build, snapshots and the warm pool ---- */

static void build_images(uv_work_t *work)
{
	struct server *srv = work->data;
	const struct server_config *cfg = &srv->cfg;
	if (images_build(&cfg->images, false, srv->images_error, sizeof srv->images_error) != 0 ||
	    snapshot_ensure_all(cfg->backend, &cfg->images, cfg->memory_mb, cfg->vcpus,
				srv->images_error, sizeof srv->images_error) != 0)
		srv->images_failed = true;
}

static void pool_log(void *ctx, const char *message)
{
	server_log(ctx, LOG_WARNING, "%s", message);
}

/* Finds each language's snapshot and starts the warm pool. Without a snapshot a language's VMs
 * boot (slowly, but they work), and that is said once. */
static void start_pool(struct server *srv)
{
	struct pool_config pc = {.size = srv->cfg.pool_size, .log = pool_log, .log_ctx = srv};
	for (int l = AL_LANG_FIRST; l < AL_LANG_END; l++) {
		const char *name = sandbox_language_name((enum al_language)l);
		struct snapshot_spec spec = {srv->cfg.backend, &srv->cfg.images, name,
					     srv->cfg.memory_mb, srv->cfg.vcpus, 0};
		char why[512];
		if (snapshot_locate(&spec, srv->snapshots[l], sizeof srv->snapshots[l]) != 0 ||
		    snapshot_check(&spec, srv->snapshots[l], &srv->snapshot_facts[l], why,
				   sizeof why) != 0) {
			server_log(srv, LOG_WARNING, "%s VMs will boot instead of being restored: %s",
				   name, why);
			srv->snapshots[l][0] = '\0';
		}
		server_vm_spec(srv, (enum al_language)l, &pc.vm[l]);
	}
	if (srv->cfg.pool_size > 0 && pool_start(srv->loop, &pc, &srv->pool) != 0)
		server_log(srv, LOG_WARNING, "cannot start the warm pool; VMs start on demand");
}

static void images_built(uv_work_t *work, int status)
{
	struct server *srv = work->data;
	srv->images_building = false;
	if (status != 0 && !srv->images_failed) {
		srv->images_failed = true;
		snprintf(srv->images_error, sizeof srv->images_error, "image build did not run: %s",
			 uv_strerror(status));
	}
	if (!srv->stopped) { /* the server shut down while the build ran */
		free(srv);
		return;
	}
	if (srv->images_failed) {
		server_log(srv, LOG_ERROR, "%s", srv->images_error);
	} else {
		server_log(srv, LOG_DEBUG, "guest images and snapshots ready");
		if (!srv->shutting_down)
			start_pool(srv);
	}
	pump_queue(srv);
}

void server_vm_spec(const struct server *srv, enum al_language language, struct sandbox_vm *vm)
{
	const struct server_config *cfg = &srv->cfg;
	*vm = (struct sandbox_vm){
		.backend = cfg->backend,
		.kernel = cfg->images.kernel,
		.rootfs = cfg->images.rootfs,
		.memory_mb = cfg->memory_mb,
		.vcpus = cfg->vcpus,
		.boot_timeout_ms = cfg->boot_timeout_ms,
		.verbose = cfg->verbose,
		.snapshot_dir = srv->snapshots[language][0] ? srv->snapshots[language] : NULL,
		.snapshot_language = sandbox_language_name(language),
		.guest_tsc_khz = srv->snapshot_facts[language].guest_tsc_khz,
		.snapshot_memory_ctime_ns = srv->snapshot_facts[language].memory_ctime_ns,
	};
}

struct sandbox *server_take_vm(struct server *srv, enum al_language language)
{
	return srv->pool ? pool_take(srv->pool, language) : NULL;
}

bool server_images_ready(struct server *srv, char *err, size_t err_len)
{
	if (srv->cfg.unavailable[0]) {
		snprintf(err, err_len, "%s", srv->cfg.unavailable);
		return false;
	}
	if (srv->images_failed) {
		snprintf(err, err_len, "%s", srv->images_error);
		return false;
	}
	if (srv->images_building || !images_ready(&srv->cfg.images)) {
		snprintf(err, err_len, "guest images are not built (run `airlock image build`)");
		return false;
	}
	return true;
}

/* ---- methods ---- */

static json_t *initialize_result(const struct server *srv, json_t *params)
{
	char instructions[4096];
	tools_instructions(&srv->cfg, instructions, sizeof instructions);
	const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
	const char *version = MCP_PROTOCOL_LATEST;
	for (size_t i = 0; asked && supported_versions[i]; i++)
		if (strcmp(asked, supported_versions[i]) == 0)
			version = supported_versions[i];
	return json_pack("{s:s, s:{s:{s:b}, s:{}}, s:{s:s, s:s, s:s}, s:s}", "protocolVersion",
			 version, "capabilities", "tools", "listChanged", 0, "logging",
			 "serverInfo", "name", "airlock", "title", "airlock code sandbox", "version",
			 AIRLOCK_VERSION, "instructions", instructions);
}

static void set_log_level(struct server *srv, json_t *id, json_t *params)
{
	const char *level = json_string_value(json_object_get(params, "level"));
	for (size_t i = 0; level && i < LEVEL_COUNT; i++) {
		if (strcmp(level, level_names[i]) == 0) {
			srv->client_level = (int)i;
			rpc_send_result(srv->rpc, id, json_object());
			return;
		}
	}
	rpc_send_error(srv->rpc, id, RPC_INVALID_PARAMS,
		       "Invalid params: level must be one of debug, info, notice, warning, error, "
		       "critical, alert, emergency");
}

static void call_tool(struct server *srv, json_t *id, json_t *params)
{
	json_t *name = json_object_get(params, "name");
	json_t *arguments = json_object_get(params, "arguments");
	if (!json_is_string(name)) {
		rpc_send_error(srv->rpc, id, RPC_INVALID_PARAMS,
			       "Invalid params: tools/call needs a string 'name'");
		return;
	}
	const struct tool *tool = tools_find(json_string_value(name));
	if (!tool) {
		char msg[300], quoted[RPC_EXCERPT_SIZE(200)];
		snprintf(msg, sizeof msg, "Unknown tool: %s",
			 rpc_excerpt(quoted, sizeof quoted, json_string_value(name)));
		rpc_send_error(srv->rpc, id, RPC_INVALID_PARAMS, msg);
		return;
	}
	if (arguments && !json_is_object(arguments)) {
		rpc_send_error(srv->rpc, id, RPC_INVALID_PARAMS,
			       "Invalid params: 'arguments' must be an object");
		return;
	}
	struct call *call = calloc(1, sizeof *call);
	if (!call) {
		rpc_send_error(srv->rpc, id, RPC_INTERNAL_ERROR, "out of memory");
		return;
	}
	call->srv = srv;
	call->id = json_incref(id);
	json_t *token = json_object_get(json_object_get(params, "_meta"), "progressToken");
	if (json_is_string(token) || json_is_integer(token))
		call->progress_token = json_incref(token);
	call->started_ms = now_ms();
	call->next = srv->calls;
	if (srv->calls)
		srv->calls->prev = call;
	srv->calls = call;
	json_t *empty = json_object();
	tool->handler(call, arguments ? arguments : empty);
	json_decref(empty);
}

static void handle_request(struct server *srv, const char *method, json_t *id, json_t *params)
{
	if (strcmp(method, "initialize") == 0) {
		rpc_send_result(srv->rpc, id, initialize_result(srv, params));
	} else if (strcmp(method, "ping") == 0) {
		rpc_send_result(srv->rpc, id, json_object());
	} else if (strcmp(method, "tools/list") == 0) {
		rpc_send_result(srv->rpc, id, json_pack("{s:o}", "tools", tools_list(&srv->cfg)));
	} else if (strcmp(method, "tools/call") == 0) {
		call_tool(srv, id, params);
	} else if (strcmp(method, "logging/setLevel") == 0) {
		set_log_level(srv, id, params);
	} else {
		char msg[300], quoted[RPC_EXCERPT_SIZE(200)];
		snprintf(msg, sizeof msg, "Method not found: %s",
			 rpc_excerpt(quoted, sizeof quoted, method));
		rpc_send_error(srv->rpc, id, RPC_METHOD_NOT_FOUND, msg);
	}
}

static void handle_notification(struct server *srv, const char *method, json_t *params)
{
	if (strcmp(method, "notifications/cancelled") != 0)
		return; /* initialized, roots/list_changed, ...: nothing to do */
	json_t *request_id = json_object_get(params, "requestId");
	for (struct call *c = srv->calls; request_id && c; c = c->next) {
		if (json_equal(c->id, request_id)) {
			server_log(srv, LOG_DEBUG, "cancelling a call at the client's request");
			cancel_call(c);
			return;
		}
	}
}

static void on_message(void *ctx, json_t *msg)
{
	struct server *srv = ctx;
	if (srv->shutting_down)
		return;
	if (!json_is_object(msg)) {
		rpc_send_error(srv->rpc, NULL, RPC_INVALID_REQUEST,
			       json_is_array(msg) ? "Invalid Request: batches are not supported"
						  : "Invalid Request: expected a JSON object");
		return;
	}
	json_t *id = json_object_get(msg, "id");
	json_t *method = json_object_get(msg, "method");
	json_t *params = json_object_get(msg, "params");
	const char *version = json_string_value(json_object_get(msg, "jsonrpc"));
	bool id_ok = !id || json_is_string(id) || json_is_integer(id);
	if (!id_ok || !version || strcmp(version, "2.0") != 0 ||
	    (method && !json_is_string(method))) {
		rpc_send_error(srv->rpc, id_ok ? id : NULL, RPC_INVALID_REQUEST,
			       "Invalid Request: not a JSON-RPC 2.0 request");
		return;
	}
	if (!method) {
		if (!id || (!json_object_get(msg, "result") && !json_object_get(msg, "error")))
			rpc_send_error(srv->rpc, id, RPC_INVALID_REQUEST,
				       "Invalid Request: no method");
		return; /* a response: this server sends no requests, so there is none to match */
	}
	if (params && !json_is_object(params)) {
		if (id)
			rpc_send_error(srv->rpc, id, RPC_INVALID_PARAMS,
				       "Invalid params: params must be an object");
		return;
	}
	if (!id)
		handle_notification(srv, json_string_value(method), params);
	else
		handle_request(srv, json_string_value(method), id, params);
}

static void on_input_closed(void *ctx)
{
	struct server *srv = ctx;
	server_log(srv, LOG_DEBUG, "stdin closed: shutting down");
	server_shutdown(srv);
}

/* The client stopped reading its output (on) or caught up (off). Said on stderr only (the
 * client is not reading, and notifications are dropped meanwhile), and at most once a minute:
 * a client that reads slowly crosses the mark again and again. */
static void on_backpressure(void *ctx, bool on)
{
	struct server *srv = ctx;
	if (!on) {
		pump_queue(srv);
		return;
	}
	uint64_t now = now_ms();
	if (srv->backpressure_said_ms && now - srv->backpressure_said_ms < 60000)
		return;
	srv->backpressure_said_ms = now;
	size_t mark = srv->cfg.output_high_mark ? srv->cfg.output_high_mark : RPC_OUTPUT_HIGH_MARK;
	bool mib = mark >= (1u << 20);
	fprintf(stderr, "airlock: the client leaves over %zu %s of output unread: no new requests "
			"are read, no queued call starts and notifications are dropped until it "
			"reads (%lu dropped before)\n",
		mib ? mark >> 20 : mark >> 10, mib ? "MiB" : "KiB",
		rpc_notifications_dropped(srv->rpc));
}

int server_start(uv_loop_t *loop, const struct server_config *cfg, int in_fd, int out_fd,
		 void (*stopped)(void *ctx), void *ctx, struct server **out)
{
	struct server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return UV_ENOMEM;
	srv->loop = loop;
	srv->cfg = *cfg;
	srv->client_level = LOG_WARNING;
	srv->stopped = stopped;
	srv->ctx = ctx;
	/* the images, then the snapshots: built when missing (first use only; minutes), checked
	 * otherwise (milliseconds); calls wait for it */
	if (!srv->cfg.unavailable[0]) {
		if (!images_ready(&srv->cfg.images))
			fprintf(stderr, "airlock: guest images are not built yet; building them now "
					"(first use only, several minutes); calls wait for it\n");
		srv->images_building = true;
		srv->image_work.data = srv;
		int rc = uv_queue_work(loop, &srv->image_work, build_images, images_built);
		if (rc) {
			free(srv);
			return rc;
		}
	}
	static const struct rpc_handlers handlers = {on_message, on_input_closed, on_backpressure};
	int rc = rpc_start(loop, in_fd, out_fd, srv->cfg.output_high_mark, &handlers, srv,
			   &srv->rpc);
	if (rc) {
		if (srv->images_building)
			srv->stopped = NULL; /* freed by the build's callback */
		else
			free(srv);
		return rc;
	}
	*out = srv;
	return 0;
}
