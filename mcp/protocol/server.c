/* The MCP server's core (see protocol.h): the calls in flight, the fair queue of VM slots, the
 * first-use image build, the warm pool, logging, progress, and shutdown. It never names a
 * transport or an era: answers go out through each call's exchange.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol.h"
#include "sandbox.h"

static const char *const level_names[LOG_LEVEL_COUNT] = {
	"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"};

struct server {
	uv_loop_t *loop;
	struct server_config cfg;
	struct server_hooks hooks;
	void *hooks_ctx;
	struct metrics *metrics;
	/* stdio's client hears the server's own log lines (HTTP has no stream to put them on) */
	struct exchange *console;
	int console_level;

	uv_work_t image_work;
	bool images_building, images_failed;
	char images_error[1024];

	/* per language: the snapshot VMs restore from (empty: boot instead), and the warm pool */
	char snapshots[AL_LANG_END][PATH_MAX];
	struct snapshot_facts snapshot_facts[AL_LANG_END];
	struct pool *pool;
	bool pool_stopping;

	struct call *calls;          /* every call in flight, queued or running */
	struct client *turn;         /* the ring of clients with calls waiting: whose turn next */
	unsigned queued, running;

	bool shutting_down, drained, freed_pending;
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *log_level_name(int level)
{
	return level >= 0 && level < LOG_LEVEL_COUNT ? level_names[level] : NULL;
}

int log_level_parse(const char *name)
{
	for (int i = 0; name && i < LOG_LEVEL_COUNT; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

const struct server_config *server_config(const struct server *srv)
{
	return &srv->cfg;
}

uv_loop_t *server_loop(const struct server *srv)
{
	return srv->loop;
}

struct metrics *server_metrics(struct server *srv)
{
	return srv->metrics;
}

bool server_shutting_down(const struct server *srv)
{
	return srv->shutting_down;
}

void server_set_console(struct server *srv, struct exchange *x)
{
	srv->console = x;
}

/* Sends a notification on x; steals params. */
static void notify(struct exchange *x, const char *method, json_t *params)
{
	json_t *msg = json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method, "params",
				params);
	if (msg)
		x->ops->send(x, msg, false);
	json_decref(msg);
}

static json_t *log_params(enum log_level level, const char *text)
{
	return json_pack("{s:s, s:s, s:s}", "level", level_names[level], "logger", "airlock",
			 "data", text);
}

/* A log line's text: formatted, then cut and repaired (it may quote text that is not UTF-8). */
static void log_text(char text[1024], const char *fmt, va_list ap)
{
	char raw[1024];
	vsnprintf(raw, sizeof raw, fmt, ap);
	rpc_excerpt(text, 1024, raw);
}

void server_log(struct server *srv, enum log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	log_text(text, fmt, ap);
	va_end(ap);
	if (level >= LOG_INFO || srv->cfg.verbose)
		fprintf(stderr, "airlock: %s: %s\n", level_names[level], text);
	struct exchange *x = srv->console;
	if (x && (int)level >= x->session_level && !srv->drained)
		notify(x, "notifications/message", log_params(level, text));
}

void call_notify(struct call *call, const char *method, json_t *params)
{
	if (call->x && !call->srv->drained)
		notify(call->x, method, params);
	else
		json_decref(params);
}

void call_log(struct call *call, enum log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	log_text(text, fmt, ap);
	va_end(ap);
	if (level >= LOG_INFO || call->srv->cfg.verbose)
		fprintf(stderr, "airlock: %s: %s%s%s\n", level_names[level],
			call->client->label[0] ? call->client->label : "",
			call->client->label[0] ? ": " : "", text);
	if ((int)level >= call->log_level)
		call_notify(call, "notifications/message", log_params(level, text));
}

void server_progress(struct call *call, double progress, const char *message)
{
	if (!call->progress_token)
		return;
	call_notify(call, "notifications/progress",
		    json_pack("{s:O, s:f, s:s}", "progressToken", call->progress_token, "progress",
			      progress, "message", message));
}

/* ---- shutdown ---- */

static void on_pool_stopped(void *ctx);

static void drain_if_done(struct server *srv)
{
	if (srv->shutting_down && srv->pool && !srv->pool_stopping) {
		srv->pool_stopping = true;
		pool_stop(srv->pool, on_pool_stopped, srv);
	}
	if (srv->shutting_down && !srv->calls && !srv->pool && !srv->drained) {
		srv->drained = true;
		srv->hooks.drained(srv->hooks_ctx);
	}
}

static void on_pool_stopped(void *ctx)
{
	struct server *srv = ctx;
	srv->pool = NULL;
	drain_if_done(srv);
}

void server_free(struct server *srv)
{
	if (srv->images_building) {
		srv->freed_pending = true; /* the image work's callback frees it */
		return;
	}
	metrics_free(srv->metrics);
	free(srv);
}

/* ---- calls and the fair queue ---- */

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

/* The ring of clients with calls waiting: srv->turn is the next to be served, and each client
 * goes to the back once served. */
static void turn_join(struct server *srv, struct client *c)
{
	if (c->in_turn)
		return;
	c->in_turn = true;
	if (!srv->turn) {
		c->turn_next = c;
		srv->turn = c;
		return;
	}
	/* the new client goes last: just before the one whose turn it is */
	struct client *last = srv->turn;
	while (last->turn_next != srv->turn)
		last = last->turn_next;
	last->turn_next = c;
	c->turn_next = srv->turn;
}

static void turn_leave(struct server *srv, struct client *c)
{
	if (!c->in_turn)
		return;
	c->in_turn = false;
	if (c->turn_next == c) {
		srv->turn = NULL;
		return;
	}
	struct client *prev = c;
	while (prev->turn_next != c)
		prev = prev->turn_next;
	prev->turn_next = c->turn_next;
	if (srv->turn == c)
		srv->turn = c->turn_next;
}

static void remove_from_queue(struct call *call)
{
	struct client *c = call->client;
	struct call **p = &c->queue_head;
	struct call *last = NULL;
	while (*p && *p != call) {
		last = *p;
		p = &(*p)->queue_next;
	}
	if (!*p)
		return;
	*p = call->queue_next;
	if (c->queue_tail == call)
		c->queue_tail = last;
	call->queue_next = NULL;
	c->queued--;
	call->srv->queued--;
	if (!c->queue_head)
		turn_leave(call->srv, c);
}

/* Whether any call may take a VM slot now: not during the first-use build, not past
 * max_concurrent. */
static bool slot_free(const struct server *srv)
{
	return !srv->images_building && srv->running < srv->cfg.max_concurrent;
}

/* Starts waiting calls while slots are free, one client's at a time in turn. A client that
 * leaves its output unread waits its turn out: a call started then would add its result (up to
 * ~32 MiB) to that output. */
static void pump_queue(struct server *srv)
{
	while (srv->turn && slot_free(srv)) {
		struct client *first = srv->turn, *c = first;
		while (c->backed_up) {
			c = c->turn_next;
			if (c == first)
				return; /* every waiting client is backed up */
		}
		struct call *call = c->queue_head;
		srv->turn = c->turn_next; /* the next client's turn after this one */
		remove_from_queue(call);
		call->holds_slot = true;
		srv->running++;
		c->running++;
		call->start(call);
	}
}

struct call *call_new(struct server *srv, struct client *client, struct exchange *x, json_t *id)
{
	struct call *call = calloc(1, sizeof *call);
	if (!call)
		return NULL;
	call->srv = srv;
	call->client = client;
	call->x = x;
	call->id = json_incref(id);
	call->log_level = LOG_WARNING;
	call->started_ms = now_ms();
	call->next = srv->calls;
	if (srv->calls)
		srv->calls->prev = call;
	srv->calls = call;
	if (x && x->one_shot)
		x->call = call;
	return call;
}

void call_run_when_ready(struct call *call)
{
	struct server *srv = call->srv;
	struct client *c = call->client;
	if ((c->queue_head || !slot_free(srv) || c->backed_up) &&
	    c->queued >= srv->cfg.max_queued) {
		/* Refused before it holds anything more: the bound on the queue is the bound on the
		 * requests it keeps in memory. */
		unsigned waiting = c->queued;
		if (call->release)
			call->release(call);
		call->state = NULL;
		c->calls_refused++;
		call->refused = true;
		call_finish(call, content_error("airlock is busy: %u calls are already waiting",
						waiting));
		return;
	}
	c->queued++;
	srv->queued++;
	if (c->queue_tail)
		c->queue_tail->queue_next = call;
	else
		c->queue_head = call;
	c->queue_tail = call;
	turn_join(srv, c);
	pump_queue(srv);
}

static void end_call(struct call *call, json_t *result, bool answered)
{
	struct server *srv = call->srv;
	remove_from_queue(call);
	unlink_call(call);
	if (call->holds_slot) {
		srv->running--;
		call->client->running--;
	}
	/* every tools/call is counted and audited, refused and cancelled ones too */
	double seconds = (double)(now_ms() - call->started_ms) / 1000.0;
	bool failed = result && json_is_true(json_object_get(result, "isError"));
	metrics_call(srv->metrics, call->client->label,
		     call->refused			 ? "refused"
		     : call->cancelled && !answered ? "cancelled"
		     : failed			 ? "error"
						 : "ok",
		     seconds);
	if (srv->cfg.audit)
		audit_call(srv->cfg.audit, call, srv->cfg.backend ? srv->cfg.backend->name : "none",
			   call->cancelled && !answered, result);
	call->client->calls_done++;
	if (call->x && call->x->call == call)
		call->x->call = NULL;
	json_decref(call->id);
	json_decref(call->progress_token);
	json_decref(call->audit);
	free(call);
	pump_queue(srv);
	drain_if_done(srv);
}

void call_finish(struct call *call, json_t *result)
{
	json_t *kept = json_incref(result);
	if (call->task) {
		task_finish(call, result);
	} else if (call->x && !call->cancelled && !call->srv->drained) {
		struct exchange *x = call->x;
		call->x = NULL;
		if (x->call == call)
			x->call = NULL;
		reply_result(x, call->version, call->id, result);
	} else {
		json_decref(result);
	}
	end_call(call, kept, true);
	json_decref(kept);
}

void call_drop(struct call *call)
{
	if (call->task)
		task_finish(call, NULL);
	struct exchange *x = call->x;
	if (x && x->one_shot && !call->srv->drained) { /* its request gets no answer: done */
		call->x = NULL;
		if (x->call == call)
			x->call = NULL;
		x->ops->send(x, NULL, true);
	}
	end_call(call, NULL, false);
}

void call_cancel(struct call *call)
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
	call->state = NULL;
	call_drop(call);
}

struct call *server_find_call(struct server *srv, struct exchange *x, json_t *id)
{
	for (struct call *c = srv->calls; x->scope && c; c = c->next)
		if (c->x && c->x->scope == x->scope && c->client == x->client &&
		    json_equal(c->id, id))
			return c;
	return NULL;
}

void server_exchange_gone(struct server *srv, struct exchange *x)
{
	(void)srv;
	struct call *call = x->call;
	x->call = NULL;
	if (!call)
		return;
	call->x = NULL; /* nothing more goes to it */
	call_cancel(call);
}

void server_client_resumed(struct server *srv, struct client *client)
{
	client->backed_up = false;
	pump_queue(srv);
}

void server_shutdown(struct server *srv)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	if (srv->hooks.stop_taking)
		srv->hooks.stop_taking(srv->hooks_ctx);
	/* call_cancel may free the call: take the next one first */
	for (struct call *c = srv->calls, *next; c; c = next) {
		next = c->next;
		call_cancel(c);
	}
	drain_if_done(srv);
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
	if (srv->freed_pending) { /* the server shut down while the build ran */
		server_free(srv);
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
	drain_if_done(srv);
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

bool server_healthy(struct server *srv, char *why, size_t why_len)
{
	if (srv->shutting_down) {
		snprintf(why, why_len, "shutting down");
		return false;
	}
	if (srv->images_building && !srv->cfg.unavailable[0]) {
		snprintf(why, why_len, "building the guest images (first use)");
		return false;
	}
	return server_images_ready(srv, why, why_len);
}

void server_gauges(const struct server *srv, struct metrics_gauges *g)
{
	g->running = srv->running;
	g->queued = srv->queued;
	g->vms_live = sandbox_live_count();
	g->pool_ready = 0;
	for (int l = AL_LANG_FIRST; srv->pool && l < AL_LANG_END; l++) {
		unsigned idle = 0, starting = 0;
		pool_counts(srv->pool, (enum al_language)l, &idle, &starting);
		g->pool_ready += idle;
	}
}

int server_create(uv_loop_t *loop, const struct server_config *cfg,
		  const struct server_hooks *hooks, void *ctx, struct server **out)
{
	struct server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return UV_ENOMEM;
	srv->metrics = metrics_new();
	if (!srv->metrics) {
		free(srv);
		return UV_ENOMEM;
	}
	srv->loop = loop;
	srv->cfg = *cfg;
	srv->hooks = *hooks;
	srv->hooks_ctx = ctx;
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
			metrics_free(srv->metrics);
			free(srv);
			return rc;
		}
	}
	*out = srv;
	return 0;
}
