/* MCP's stdio transport: one client on stdin/stdout, every request on one exchange (rpc.c frames
 * the lines). The client's label is its clientInfo.name once it has said it; its kept states are
 * the server's own (config states).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

struct stdio_transport {
	struct exchange x;
	struct client client;
	struct server *srv;
	struct rpc *rpc;
	uint64_t backpressure_said_ms; /* when stderr last said the client does not read */
	void (*stopped)(void *ctx);
	void *ctx;
};

static int stdio_send(struct exchange *x, json_t *msg, bool final)
{
	(void)final; /* the stream carries every answer */
	struct stdio_transport *t = (struct stdio_transport *)x;
	/* a notification waits for nothing: dropped while the client leaves output unread */
	if (!json_object_get(msg, "id"))
		return rpc_send_notification(t->rpc, msg);
	return rpc_send(t->rpc, msg);
}

static const struct exchange_ops stdio_ops = {stdio_send};

static void on_message(void *ctx, json_t *msg)
{
	struct stdio_transport *t = ctx;
	if (server_shutting_down(t->srv))
		return;
	server_message(t->srv, &t->x, msg);
	/* the client named itself (initialize's clientInfo, or 2026-07-28's in _meta): that is
	 * who the audit log says called */
	if (t->x.client_name[0])
		snprintf(t->client.label, sizeof t->client.label, "%s", t->x.client_name);
}

static void on_input_closed(void *ctx)
{
	struct stdio_transport *t = ctx;
	server_log(t->srv, LOG_DEBUG, "stdin closed: shutting down");
	server_shutdown(t->srv);
}

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

/* The client stopped reading its output (on) or caught up (off). Said on stderr only (the
 * client is not reading, and notifications are dropped meanwhile), and at most once a minute:
 * a client that reads slowly crosses the mark again and again. */
static void on_backpressure(void *ctx, bool on)
{
	struct stdio_transport *t = ctx;
	if (!on) {
		server_client_resumed(t->srv, &t->client);
		return;
	}
	t->client.backed_up = true;
	uint64_t now = now_ms();
	if (t->backpressure_said_ms && now - t->backpressure_said_ms < 60000)
		return;
	t->backpressure_said_ms = now;
	size_t high = server_config(t->srv)->output_high_mark;
	size_t mark = high ? high : RPC_OUTPUT_HIGH_MARK;
	bool mib = mark >= (1u << 20);
	fprintf(stderr, "airlock: the client leaves over %zu %s of output unread: no new requests "
			"are read, no queued call starts and notifications are dropped until it "
			"reads (%lu dropped before)\n",
		mib ? mark >> 20 : mark >> 10, mib ? "MiB" : "KiB",
		rpc_notifications_dropped(t->rpc));
}

static void on_rpc_closed(void *ctx)
{
	struct stdio_transport *t = ctx;
	void (*stopped)(void *) = t->stopped;
	void *stopped_ctx = t->ctx;
	tasks_forget(&t->client); /* every call has ended: what is left is results */
	server_free(t->srv);
	free(t);
	stopped(stopped_ctx);
}

static void on_drained(void *ctx)
{
	struct stdio_transport *t = ctx;
	server_set_console(t->srv, NULL);
	rpc_close(t->rpc, on_rpc_closed);
}

int server_start(uv_loop_t *loop, const struct server_config *cfg, int in_fd, int out_fd,
		 void (*stopped)(void *ctx), void *ctx, struct server **out)
{
	struct stdio_transport *t = calloc(1, sizeof *t);
	if (!t)
		return UV_ENOMEM;
	t->stopped = stopped;
	t->ctx = ctx;
	t->client.states = cfg->states;
	snprintf(t->client.label, sizeof t->client.label, "stdio");
	t->x = (struct exchange){.ops = &stdio_ops, .client = &t->client,
				 .session_level = LOG_WARNING};
	t->x.scope = &t->x;
	static const struct server_hooks hooks = {NULL, on_drained};
	int rc = server_create(loop, cfg, &hooks, t, &t->srv);
	if (rc) {
		free(t);
		return rc;
	}
	static const struct rpc_handlers handlers = {on_message, on_input_closed, on_backpressure};
	rc = rpc_start(loop, in_fd, out_fd, cfg->output_high_mark, &handlers, t, &t->rpc);
	if (rc) {
		server_free(t->srv);
		free(t);
		return rc;
	}
	server_set_console(t->srv, &t->x);
	*out = t->srv;
	return 0;
}
