/* The MCP server: protocol methods (initialize, ping, tools/list, tools/call, logging/setLevel,
 * notifications), the registry of in-flight tool calls (for cancellation and shutdown), the
 * queue that bounds how many VMs run at once, and logging to stderr and to the client.
 */
#ifndef AIRLOCK_SERVER_H
#define AIRLOCK_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "images.h"
#include "backend.h"
#include "sandbox.h"

#define MCP_PROTOCOL_LATEST "2025-11-25"

struct server_config {
	const struct backend *backend;
	struct images images;
	unsigned memory_mb, vcpus;
	unsigned max_concurrent; /* VMs running at once; further calls wait */
	/* Calls waiting for a VM slot; past it a call is refused at once ("airlock is busy").
	 * Each holds its request (at most RPC_MAX_LINE: code, stdin and files, plus <= 1 MiB of
	 * tar headers), so the queue holds at most max_queued x ~17 MiB. */
	unsigned max_queued;
	size_t output_high_mark; /* unread output that pauses input; 0: RPC_OUTPUT_HIGH_MARK */
	unsigned pool_size;      /* warm VMs waiting per language */
	double max_timeout_s;    /* cap on execute_code's timeout_s */
	uint32_t boot_timeout_ms;
	bool verbose;
	/* Non-empty when no sandbox can run (no backend, no agent): every call fails with this
	 * reason and its fix, and the server keeps serving. */
	char unavailable[512];
};

enum log_level { LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERROR, LOG_CRITICAL };

struct server;
struct call;

/* A tool call in flight. The tool owns `state`; the server owns the rest. */
struct call {
	struct server *srv;
	json_t *id;             /* the request id */
	json_t *progress_token; /* _meta.progressToken, or NULL */
	uint64_t started_ms;
	void (*start)(struct call *call); /* runs once a VM slot is free */
	/* Cancels a started call: the tool kills its VM and then ends the call with call_drop(). */
	void (*cancel)(struct call *call);
	/* Frees the tool's state of a call cancelled before it started. */
	void (*release)(struct call *call);
	void *state;
	bool holds_slot;
	bool cancelled;
	struct call *prev, *next; /* the server's list of calls */
	struct call *queue_next;  /* waiting for a slot */
};

/* Starts serving MCP on in_fd/out_fd. stopped(ctx) runs once the server has shut down and closed
 * every handle. Returns 0 or a libuv error. */
int server_start(uv_loop_t *loop, const struct server_config *cfg, int in_fd, int out_fd,
		 void (*stopped)(void *ctx), void *ctx, struct server **out);
/* Shuts down: cancels every call (its VM is killed), flushes stdout, closes. Idempotent. */
void server_shutdown(struct server *srv);

const struct server_config *server_config(const struct server *srv);
uv_loop_t *server_loop(const struct server *srv);
/* Logs to stderr and, at or above the client's level, as notifications/message. */
void server_log(struct server *srv, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Sends notifications/progress for the call (no-op without a progress token). */
void server_progress(struct call *call, double progress, const char *message);

/* Runs call->start once a VM slot is free, the guest images are built and the client reads
 * its output (FIFO). When it cannot start now and max_queued calls already wait, the call is
 * refused instead: its state is released (call->release) and it ends with an isError result. */
void call_run_when_ready(struct call *call);
/* The VM a call of language starts when the pool has none: restored from the language's
 * snapshot when there is one, else booted. */
void server_vm_spec(const struct server *srv, enum al_language language, struct sandbox_vm *vm);
/* A warm VM for language from the pool (the caller's now), or NULL. */
struct sandbox *server_take_vm(struct server *srv, enum al_language language);
/* Whether the images are ready; when they are not, err explains (build running or failed). */
bool server_images_ready(struct server *srv, char *err, size_t err_len);
/* Ends the call with a result (stolen) and frees it; releases its VM slot. */
void call_finish(struct call *call, json_t *result);
/* Ends the call without a reply (it was cancelled) and frees it. */
void call_drop(struct call *call);

#endif
