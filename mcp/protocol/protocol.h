/* protocol/: MCP, the part's one header. Encodings (utf8.c, base64.c), what one call may use
 * (the limits), JSON-RPC over stdio (rpc.c), the structured result and the CallToolResult
 * (result.c, content.c), the server (server.c) and its tool table (tools.c, execute.c).
 */
#ifndef AIRLOCK_PROTOCOL_H
#define AIRLOCK_PROTOCOL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "backend.h"
#include "kept_state.h"
#include "sandbox.h"

/* UTF-8 as MCP's JSON needs it (RFC 3629, as jansson checks it): where user or guest bytes
 * become message text. */

/* Length (1-4) of the valid UTF-8 sequence at p, at most avail bytes, or 0 when there is none:
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
size_t utf8_sequence(const uint8_t *p, size_t avail);

/* Returns a malloc'd copy of data with every invalid UTF-8 sequence replaced by U+FFFD; *out_len
 * gets its length (the copy is also NUL-terminated). NULL when out of memory. */
char *utf8_sanitize(const uint8_t *data, size_t len, size_t *out_len);

/* Hex, lower case (hex.c): out holds 2 * len + 1 bytes. random_hex fills out with bytes random
 * bytes (at most 64); returns 0 or -EIO. sha256_hex writes a digest of data. */
#define SHA256_HEX_SIZE 65
void hex_encode(const uint8_t *data, size_t len, char *out);
int random_hex(char *out, size_t bytes);
void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_SIZE]);

/* A running program's newest output for progress notifications (output_tail.c): complete
 * lines, each cut at OUTPUT_TAIL_LINE_MAX bytes, the newest OUTPUT_TAIL_LINES kept. */
#define OUTPUT_TAIL_LINES 10
#define OUTPUT_TAIL_LINE_MAX 200

struct output_tail_line {
	uint32_t stream; /* AL_STREAM_STDOUT or AL_STREAM_STDERR */
	bool cut;        /* longer than OUTPUT_TAIL_LINE_MAX */
	size_t len;
	uint8_t text[OUTPUT_TAIL_LINE_MAX];
};

struct output_tail_partial { /* a stream's line so far */
	size_t len;
	bool cut;
	uint8_t text[OUTPUT_TAIL_LINE_MAX];
};

struct output_tail {
	struct output_tail_line lines[OUTPUT_TAIL_LINES]; /* a ring: line i at i % LINES */
	uint64_t next;  /* lines completed so far */
	uint64_t shown; /* lines completed before the last output_tail_take */
	struct output_tail_partial partial[2]; /* stdout's, stderr's */
	uint64_t bytes[2];                     /* seen, stdout and stderr */
};

/* Takes a piece of output (zero-initialised t to start). */
void output_tail_add(struct output_tail *t, uint32_t stream, const uint8_t *data, size_t len);
/* The lines completed since the last call (the newest OUTPUT_TAIL_LINES of them, an earlier-lines
 * count first when there were more), one a line, stderr's marked "[stderr] ", as valid UTF-8
 * into out (cut on a character to fit; "" when there are none). Returns 0, or -1 when out of
 * memory. */
int output_tail_take(struct output_tail *t, char *out, size_t out_len);

/* Base64 (RFC 4648, standard alphabet, padded): files into the guest and images out of it. */

/* Returns a malloc'd, NUL-terminated encoding of data, or NULL when out of memory. */
char *base64_encode(const uint8_t *data, size_t len);
/* Decodes text (whitespace ignored; padding optional) into a malloc'd buffer. Returns 0, -EINVAL for text that is
 * not base64, or -ENOMEM. */
int base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len);

/* What one call may use, defined once: execute_code (execute.c), airlock run (cli/run.c) and the
 * tool's description (tools.c) read these. The guest's own sizes are in agent/proto.h
 * (AL_GUEST_TMPFS_MB); the VM's memory is the server's --memory-mb (backend.h's default). */

#define CALL_DEFAULT_TIMEOUT_S 30.0
#define CALL_OUTPUT_CAP (1u << 20)    /* stdout and stderr, each: the rest is read and dropped */
#define CALL_OUT_FILES_CAP (1u << 20) /* files under /work/out returned, in all */

/* JSON-RPC 2.0 over stdio, one message per line (MCP's stdio transport), on a libuv loop.
 * Reads newline-delimited JSON from the input fd (a pipe, socket, tty or plain file), answers
 * unparseable and oversized lines itself (-32700 / -32600, id null) and hands every parsed
 * message to the server. Writes each outgoing message as one line, in order.
 */

#define RPC_MAX_LINE (16u << 20) /* a longer message is answered with an error and skipped */
/* Output the client has not read yet: past the high mark the server stops reading requests
 * (the client cannot make new work while it does not read) and drops notifications; it reads
 * again once the output is down to the low mark. 64 MiB holds the largest single response
 * (a CallToolResult, ~32 MiB at worst: 1 MiB of stdout and of stderr, each sent twice and
 * JSON-escaped up to 6 bytes a byte, plus 1 MiB of files) twice over, so a client that reads
 * at all never sees the pause. Worst case held: the high mark, plus one response to the last
 * request read (<= RPC_MAX_LINE + 8 KiB: an id is echoed), plus one result per running call. */
#define RPC_OUTPUT_HIGH_MARK (64u << 20) /* the low mark is half the high one */
/* At close, how long output the client has not read yet may hold the end up (SIGTERM to a
 * server whose client stopped reading); then it is dropped. */
#define RPC_CLOSE_DRAIN_MS 2000

enum rpc_error_code {
	RPC_PARSE_ERROR = -32700,
	RPC_INVALID_REQUEST = -32600,
	RPC_METHOD_NOT_FOUND = -32601,
	RPC_INVALID_PARAMS = -32602,
	RPC_INTERNAL_ERROR = -32603,
	/* MCP 2026-07-28's own */
	RPC_HEADER_MISMATCH = -32020,     /* HTTP headers that do not agree with the body */
	RPC_MISSING_CAPABILITY = -32021,  /* a capability the request did not declare */
	RPC_UNSUPPORTED_VERSION = -32022, /* a protocol version the server does not speak */
};

struct rpc;

struct rpc_handlers {
	/* A parsed message (any JSON value; the server checks its shape). Borrowed. */
	void (*message)(void *ctx, json_t *msg);
	/* The input ended (EOF or a read error). */
	void (*input_closed)(void *ctx);
	/* The unread output went past the high mark (on) or back down to the low mark (off).
	 * May be NULL. */
	void (*backpressure)(void *ctx, bool on);
};

/* Starts reading in_fd and prepares out_fd for writing; high_mark is the output's high mark in
 * bytes (0: RPC_OUTPUT_HIGH_MARK). Returns 0 or a libuv error. */
int rpc_start(uv_loop_t *loop, int in_fd, int out_fd, size_t high_mark,
	      const struct rpc_handlers *handlers, void *ctx, struct rpc **out);
/* Sends one message (borrowed). Returns 0 or a libuv error. */
int rpc_send(struct rpc *rpc, json_t *msg);
/* {"jsonrpc":"2.0","id":id,"error":{code,message}} (new reference; NULL only when out of
 * memory). id may be NULL (null). A message that cannot be encoded (not UTF-8) is replaced with
 * a generic one, so that the request still gets its answer. */
json_t *rpc_error_message(json_t *id, int code, const char *message);
/* Sends a JSON-RPC error response; id may be NULL (null). A message that cannot be encoded
 * (not UTF-8) is replaced with a generic one, never dropped. */
int rpc_send_error(struct rpc *rpc, json_t *id, int code, const char *message);
/* Sends a notification message (borrowed). Dropped (UV_EAGAIN) while the output is past its
 * high mark: a progress or log line is worth less than bounded memory. */
int rpc_send_notification(struct rpc *rpc, json_t *msg);
/* Whether the unread output is past the high mark (and not yet back to the low mark). */
bool rpc_output_backed_up(const struct rpc *rpc);
/* Notifications dropped because the output was backed up, since the start. */
unsigned long rpc_notifications_dropped(const struct rpc *rpc);

/* Room for an excerpt of at most max bytes of text, the mark of a cut, and the NUL. */
#define RPC_EXCERPT_SIZE(max) ((max) + sizeof "...")
/* Copies text into out (out_size bytes, NUL-terminated) fit to go into a message: cut at a
 * character boundary to at most out_size - 4 bytes and ended with "..." when cut, each byte
 * that is not part of valid UTF-8 replaced with '?'. jansson refuses to build a string that is
 * not UTF-8, and a response it cannot build would otherwise never be sent. Returns out. */
const char *rpc_excerpt(char *out, size_t out_size, const char *text);
/* Stops reading; closes the handles once queued writes are flushed; then calls closed(ctx). */
void rpc_close(struct rpc *rpc, void (*closed)(void *ctx));

/* What a run produced, in the shape docs/interface.md gives `execute_code`'s structuredContent (and
 * `airlock run --json`): exit status, output as UTF-8, truncation flags, duration, output files.
 */

#define RESULT_MAX_FILES 1000

/* "SIGKILL" for 9; "SIG<n>" when the number has no name. */
const char *signal_name(int signal, char *buf, size_t buf_len);

/* A MIME type from a file name's extension ("application/octet-stream" when unknown). */
const char *mime_type_for(const char *path);

/* Collects the output files: those returned in the tar (at most cap bytes of content; files past
 * it are marked not returned), then those the guest listed as skipped. */
int result_output_files(const struct sandbox_result *r, uint64_t cap, struct file_list *files);

/* Builds the structured result (new reference, NULL when out of memory). */
json_t *result_structured(const struct sandbox_result *r, const struct file_list *files);
/* Adds what the run's setup produced, where it applies: `network` (the run had egress),
 * `install` (it had packages), `advisories` (the pre-scan ran). Returns 0 or -ENOMEM. */
int result_add_setup_fields(const struct sandbox_result *r, json_t *obj);
/* The pre-scan's advisories, taken from its (untrusted) JSON output (new reference). */
#define RESULT_MAX_ADVISORIES 100
json_t *result_advisories(const struct sandbox_result *r);

/* The CallToolResult of execute_code, in docs/interface.md's order: the readable text block, an
 * image block per image under /work/out, an embedded resource per other file, and the structured
 * result as text (without stdout/stderr); plus structuredContent and isError. */

/* The result of a run that happened (new reference; NULL when out of memory); extra's fields
 * (NULL: none) go into structuredContent too (kept_call_annotate). */
json_t *content_run_result(const struct sandbox_result *r, const struct file_list *files,
			   double timeout_s, json_t *extra);

/* A call that keeps its state or continues one (keep_state, state_id; sandbox/kept_state.h),
 * for execute_code and `airlock run` alike. */
struct kept_call {
	bool keep, from_state;
	char state_id[STATE_ID_LEN + 1]; /* the state it continues */
	struct kept_state from;
	char staged[PATH_MAX];       /* where its VM saves, until committed or removed */
	char snapshot_dir[PATH_MAX]; /* the origin's, copied */
	struct state_origin origin;
	/* the outcome, once finished: the state kept, or why none */
	char kept_id[STATE_ID_LEN + 1];
	int64_t expires_at;
	char error[512];
};

/* Checks what the call asks (state_id may be NULL; language: the one given, or NULL) and sets
 * *lang: the state's own language when it continues one. Returns 0, or -errno with err a
 * sentence for the caller (an unknown id, a language that does not match or keeps no state). */
int kept_call_begin(struct kept_call *kc, struct state_store *st, const char *state_id, bool keep,
		    const char *language, enum al_language *lang, char *err, size_t err_len);
/* Sets up the VM (vm: the language's snapshot restore, as the server or run would start it)
 * and the request: the state it restores, checked (state_find), the directory it saves into,
 * cells. Returns 0, or -errno with err set. */
int kept_call_prepare(struct kept_call *kc, struct state_store *st, struct sandbox_vm *vm,
		      struct sandbox_request *req, char *err, size_t err_len);
/* After the sandbox's result: commits the saved state, or notes why there is none. */
void kept_call_finish(struct kept_call *kc, struct state_store *st, const struct sandbox_result *r);
/* Removes what a call that never finished staged. */
void kept_call_abandon(struct kept_call *kc);
/* state_id, state_expires_at and state_error into structured (a call with keep_state only). */
void kept_call_annotate(const struct kept_call *kc, json_t *structured);
/* An isError result with one line of text (new reference). */
json_t *content_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The MCP server. The core (server.c) knows neither the protocol era nor the transport: the
 * calls in flight, the fair queue of VM slots, the first-use image build, the warm pool,
 * shutdown. methods.c reads each message in its era (the initialize era up to 2025-11-25, or
 * stateless 2026-07-28) and dispatches it; tasks.c runs a tools/call as a task; audit.c and
 * metrics.c record calls. A transport (stdio.c; http_*.c) brings messages in from its clients
 * and takes every answer back out through an exchange.
 */

#define MCP_PROTOCOL_LATEST "2025-11-25"    /* the newest of the initialize era */
#define MCP_PROTOCOL_STATELESS "2026-07-28" /* the stateless era */
#define MCP_VERSION_MAX 16

struct audit;
struct metrics;

struct server_config {
	const struct backend *backend;
	struct images images;
	unsigned memory_mb, vcpus;
	unsigned max_concurrent; /* VMs running at once; further calls wait */
	/* Calls waiting for a VM slot, per client; past it the client's call is refused at once
	 * ("airlock is busy"). Each holds its request (at most RPC_MAX_LINE: code, stdin and
	 * files, plus <= 1 MiB of tar headers), so one client's queue holds at most max_queued x
	 * ~17 MiB. */
	unsigned max_queued;
	size_t output_high_mark; /* unread output that pauses input; 0: RPC_OUTPUT_HIGH_MARK */
	unsigned pool_size;      /* warm VMs waiting per language */
	double max_timeout_s;    /* cap on execute_code's timeout_s */
	uint32_t boot_timeout_ms;
	bool verbose;
	struct sandbox_policy policy; /* what every call may reach: hosts, indexes, CA, pre-scan */
	struct state_store *states;   /* kept states of stdio's client (keep_state, state_id) */
	struct audit *audit;          /* --audit-log, or NULL */
	/* Non-empty when no sandbox can run (no backend, no agent): every call fails with this
	 * reason and its fix, and the server keeps serving. */
	char unavailable[512];
};

enum log_level { LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERROR, LOG_CRITICAL };
#define LOG_LEVEL_COUNT 8 /* and alert, emergency: levels a client may ask for */
/* The level's name ("debug" ...), or NULL; and back (-1 when unknown). */
const char *log_level_name(int level);
int log_level_parse(const char *name);

struct server;
struct call;
struct task;

/* Who sends requests: stdio's one client, or one bearer token over HTTP. Each client has its own
 * queue and the queues take turns at free VM slots, so one client cannot starve the others. */
#define CLIENT_LABEL_MAX 64
struct client {
	char label[CLIENT_LABEL_MAX]; /* the audit log's client: clientInfo.name, or the token's */
	struct state_store *states;   /* the kept states it may use and make (NULL: none) */
	bool backed_up;               /* leaves output unread: none of its calls starts now */
	/* the fair queue (server.c) */
	struct call *queue_head, *queue_tail;
	unsigned queued, running;
	struct client *turn_next; /* in the ring of clients with calls waiting */
	bool in_turn;
	/* tasks.c */
	struct task *tasks;
	unsigned n_tasks;
	/* metrics, by outcome */
	uint64_t calls_done, calls_refused;
};

/* One way back to a client: stdio's stream (every request), or one HTTP request. */
struct exchange;
struct exchange_ops {
	/* Sends msg (borrowed): a notification, or with final the answer to the request. After a
	 * final send on a one-shot exchange the server no longer touches it. msg NULL with final:
	 * the request gets no answer (a notification, a stray response). Returns 0 or a libuv
	 * error; UV_ENOMEM when msg cannot be encoded (nothing was sent, nothing ended). */
	int (*send)(struct exchange *x, json_t *msg, bool final);
};
struct exchange {
	const struct exchange_ops *ops;
	struct client *client;
	bool one_shot; /* one request, one answer (HTTP); else a stream of them (stdio) */
	bool stateless; /* the transport knows the request is 2026-07-28 (an HTTP header) */
	/* What request ids are unique within, for notifications/cancelled: stdio's stream, an
	 * HTTP session (NULL: none, a 2026-07-28 request over HTTP, cancelled by closing). */
	const void *scope;
	/* The initialize era's state for this exchange's client (stdio's, or an HTTP session's):
	 * its version once initialize is answered, its level (logging/setLevel). */
	char session_version[MCP_VERSION_MAX];
	int session_level;
	/* Out, for the transport: what methods.c made of the last request. */
	bool initialized; /* it was an initialize, answered */
	char client_name[CLIENT_LABEL_MAX];
	bool bad_envelope; /* its answer is an error about the request's frame, not its method */
	struct call *call; /* a one-shot exchange's tool call in flight (the server's) */
};

/* A tool call in flight. The tool owns `state`; the server owns the rest. */
struct call {
	struct server *srv;
	struct client *client;
	struct exchange *x;     /* where its answer goes; NULL: a task's, or its client left */
	struct task *task;      /* run as a task (tasks.c): the answer is kept there */
	json_t *id;             /* the request id */
	json_t *progress_token; /* _meta.progressToken, or NULL */
	int log_level;          /* notifications/message at or above it */
	char version[MCP_VERSION_MAX]; /* the protocol version its answer speaks */
	bool tasks_ok;          /* its request declared the tasks extension */
	uint64_t started_ms;
	void (*start)(struct call *call); /* runs once a VM slot is free */
	/* Cancels a started call: the tool kills its VM and then ends the call with call_drop(). */
	void (*cancel)(struct call *call);
	/* Frees the tool's state of a call cancelled before it started. */
	void (*release)(struct call *call);
	void *state;
	json_t *audit; /* the audit line's fields the tool knows (execute.c), or NULL */
	bool holds_slot;
	bool cancelled;
	bool refused; /* turned away: the queue was full */
	struct call *prev, *next; /* the server's list of calls */
	struct call *queue_next;  /* waiting for a slot */
};

/* What a transport hears from the server. */
struct server_hooks {
	/* Shutting down: stop taking new requests (the calls in flight are being cancelled). */
	void (*stop_taking)(void *ctx);
	/* Every call has ended and the pool is stopped: close, then server_free. */
	void (*drained)(void *ctx);
};

/* The core, without a transport. Returns 0 or a libuv error. */
int server_create(uv_loop_t *loop, const struct server_config *cfg,
		  const struct server_hooks *hooks, void *ctx, struct server **out);
/* Frees a drained server (or, while the first-use image build still runs, once it ends). */
void server_free(struct server *srv);
/* Shuts down: stops the transport taking requests, cancels every call (its VM is killed),
 * stops the pool, then calls hooks->drained. Idempotent. */
void server_shutdown(struct server *srv);
bool server_shutting_down(const struct server *srv);

/* Serves MCP on in_fd/out_fd (stdio.c): the server and its stdio transport together.
 * stopped(ctx) runs once it has shut down and closed every handle. Returns 0 or a libuv error. */
int server_start(uv_loop_t *loop, const struct server_config *cfg, int in_fd, int out_fd,
		 void (*stopped)(void *ctx), void *ctx, struct server **out);

/* Serves MCP over Streamable HTTP (http_mcp.c): the server and its HTTP transport together.
 * Prints the listening line on stderr once it accepts connections. stopped(ctx) runs once it
 * has shut down (server_shutdown, on SIGTERM) and closed every handle. Returns 0, or a libuv
 * error or -errno with err saying why. */
struct http_serve_config {
	const char *host; /* an IP literal */
	int port;         /* 0: a free one */
	const char *token_file; /* NULL: loopback only, every local process may call */
	const char *const *origins; /* Origin values allowed besides loopback ones */
	size_t n_origins;
	bool state_persist; /* tokens' kept states outlive the process */
};
int http_serve(uv_loop_t *loop, const struct server_config *cfg,
	       const struct http_serve_config *http, void (*stopped)(void *ctx), void *ctx,
	       struct server **out, char *err, size_t err_len);

/* A message from x's client (any JSON value; methods.c checks its shape). Borrowed. */
void server_message(struct server *srv, struct exchange *x, json_t *msg);
/* A one-shot exchange's client went away before its answer: its call is cancelled (the VM
 * killed) and x is not touched again. */
void server_exchange_gone(struct server *srv, struct exchange *x);
/* A client's output is read again: its waiting calls may start. */
void server_client_resumed(struct server *srv, struct client *client);
/* Whether calls can run (for /healthz); why says what stops them. */
bool server_healthy(struct server *srv, char *why, size_t why_len);
/* stdio's exchange: the server's own log lines go to it (at its session level) too. */
void server_set_console(struct server *srv, struct exchange *x);

const struct server_config *server_config(const struct server *srv);
uv_loop_t *server_loop(const struct server *srv);
struct metrics *server_metrics(struct server *srv);
/* Logs to stderr and, at or above its level, as notifications/message to stdio's client. */
void server_log(struct server *srv, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Logs about a call: to stderr, and to the call's client at or above the call's level. */
void call_log(struct call *call, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Sends notifications/progress for the call (no-op without a progress token). */
void server_progress(struct call *call, double progress, const char *message);
/* Sends a notification to a call's client, on its exchange (dropped without one). */
void call_notify(struct call *call, const char *method, json_t *params);

/* A new call of client, answered on x (NULL: a task's), linked into the server's list. */
struct call *call_new(struct server *srv, struct client *client, struct exchange *x, json_t *id);
/* Runs call->start once a VM slot is free, the guest images are built and its client reads
 * its output (each client's calls in order, the clients in turn). When it cannot start now and
 * its client already has max_queued calls waiting, the call is refused instead: its state is
 * released (call->release) and it ends with an isError result. */
void call_run_when_ready(struct call *call);
/* The call of x's client with this request id within x's scope, or NULL. */
struct call *server_find_call(struct server *srv, struct exchange *x, json_t *id);
/* Cancels a call: waiting, it ends at once; running, its tool kills the VM. No answer. */
void call_cancel(struct call *call);
/* The VM a call of language starts when the pool has none: restored from the language's
 * snapshot when there is one, else booted. */
void server_vm_spec(const struct server *srv, enum al_language language, struct sandbox_vm *vm);
/* A warm VM for language from the pool (the caller's now), or NULL. */
struct sandbox *server_take_vm(struct server *srv, enum al_language language);
/* Whether the images are ready; when they are not, err explains (build running or failed). */
bool server_images_ready(struct server *srv, char *err, size_t err_len);
/* Ends the call with a result (stolen) and frees it; releases its VM slot. */
void call_finish(struct call *call, json_t *result);
/* Ends the call without a reply (it was cancelled) and frees it; its exchange, one-shot and
 * still there, ends without an answer. */
void call_drop(struct call *call);

/* Whether version is one of the initialize era's (2025-11-25 back to 2024-11-05). */
bool mcp_initialize_era_version(const char *version);
/* methods.c: the answers, in the request's era. A result (stolen) gets resultType "complete"
 * in 2026-07-28. */
void reply_result(struct exchange *x, const char *version, json_t *id, json_t *result);
void reply_error(struct exchange *x, json_t *id, int code, const char *message, json_t *data);

/* tasks.c: the tasks extension (io.modelcontextprotocol/tasks) of 2026-07-28. */
#define TASKS_EXTENSION "io.modelcontextprotocol/tasks"
#define TASKS_PER_CLIENT_MAX 64
/* Whether the call may run as a task (its request declared the extension, its client has
 * room); then task_begin answers its exchange at once with the task, and the result is kept
 * there for tasks/get. */
bool task_possible(const struct call *call);
int task_begin(struct call *call, double timeout_s);
/* The call's result (stolen; NULL: cancelled) goes into its task. */
void task_finish(struct call *call, json_t *result);
/* tasks/get, tasks/result, tasks/cancel, tasks/list. Returns false for another method. */
bool task_method(struct server *srv, struct exchange *x, const char *version, const char *method,
		 json_t *id, json_t *params, bool declared);
/* Forgets the client's tasks (its calls are already gone). */
void tasks_forget(struct client *client);

/* audit.c: --audit-log, one JSON line per tools/call (SPEC.md's fields, never code or output). */
/* Opens (appending, 0600 when new) path. Returns 0 or -errno. */
int audit_open(const char *path, struct audit **out);
void audit_close(struct audit *a);
/* Writes the call's line: fields the server knows plus call->audit's. */
void audit_call(struct audit *a, const struct call *call, const char *backend, bool cancelled,
		json_t *result);

/* metrics.c: counters for GET /metrics, in Prometheus' text format. */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);
/* A call ended: outcome is "ok", "error" (isError), "cancelled" or "refused". */
void metrics_call(struct metrics *m, const char *client, const char *outcome, double seconds);
void metrics_refusal(struct metrics *m, const char *reason); /* HTTP: 401, 403, 413, ... */
/* The text: counters plus the gauges given now. Returns a malloc'd string or NULL. */
struct metrics_gauges {
	unsigned running, queued, vms_live, pool_ready, connections, sessions, tasks;
};
char *metrics_render(const struct metrics *m, const struct metrics_gauges *g);
/* The server's gauges now (running, queued, VMs, pool); the transport adds its own. */
void server_gauges(const struct server *srv, struct metrics_gauges *g);

/* The tool table: each tool is one entry {name, title, description, input schema, output schema,
 * handler}. Adding a tool is one entry here and one handler. */

struct tool {
	const char *name;
	const char *title;
	/* Writes the description for this server's configuration (its limits). */
	void (*describe)(const struct server_config *cfg, char *out, size_t len);
	const char *input_schema;  /* JSON text */
	const char *output_schema; /* JSON text */
	/* Validates the arguments and starts the call; it ends with call_finish() or call_drop(). */
	void (*handler)(struct call *call, json_t *arguments);
};

const struct tool *tools_find(const char *name);
/* The tools/list array (new reference). */
json_t *tools_list(const struct server_config *cfg);
/* The `instructions` paragraph of initialize. */
void tools_instructions(const struct server_config *cfg, char *out, size_t len);

/* execute.c */
void execute_code(struct call *call, json_t *arguments);

#endif
