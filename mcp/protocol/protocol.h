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
/* Sends {"jsonrpc":"2.0","id":id,"result":result}; steals result. id may be NULL (null). A
 * request gets its one answer whatever happens: when result is NULL or cannot be encoded, an
 * internal error (-32603) with the same id goes instead. */
int rpc_send_result(struct rpc *rpc, json_t *id, json_t *result);
/* Sends a JSON-RPC error response; id may be NULL (null). A message that cannot be encoded
 * (not UTF-8) is replaced with a generic one, never dropped. */
int rpc_send_error(struct rpc *rpc, json_t *id, int code, const char *message);
/* Sends a notification; steals params (may be NULL). Dropped (UV_EAGAIN) while the output is
 * past its high mark: a progress or log line is worth less than bounded memory. */
int rpc_notify(struct rpc *rpc, const char *method, json_t *params);
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

/* The MCP server: protocol methods (initialize, ping, tools/list, tools/call, logging/setLevel,
 * notifications), the registry of in-flight tool calls (for cancellation and shutdown), the
 * queue that bounds how many VMs run at once, and logging to stderr and to the client.
 */

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
	struct sandbox_policy policy; /* what every call may reach: hosts, indexes, CA, pre-scan */
	struct state_store *states;   /* kept states (keep_state, state_id) */
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
