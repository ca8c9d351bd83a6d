/* JSON-RPC 2.0 over stdio, one message per line (MCP's stdio transport), on a libuv loop.
 * Reads newline-delimited JSON from the input fd (a pipe, socket, tty or plain file), answers
 * unparseable and oversized lines itself (-32700 / -32600, id null) and hands every parsed
 * message to the server. Writes each outgoing message as one line, in order.
 */
#ifndef AIRLOCK_RPC_H
#define AIRLOCK_RPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

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

#endif
