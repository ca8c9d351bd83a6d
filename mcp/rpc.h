/* JSON-RPC 2.0 over stdio, one message per line (MCP's stdio transport), on a libuv loop.
 * Reads newline-delimited JSON from the input fd (a pipe, socket, tty or plain file), answers
 * unparseable and oversized lines itself (-32700 / -32600, id null) and hands every parsed
 * message to the server. Writes each outgoing message as one line, in order.
 */
#ifndef AIRLOCK_RPC_H
#define AIRLOCK_RPC_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#define RPC_MAX_LINE (16u << 20) /* a longer message is answered with an error and skipped */

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
};

/* Starts reading in_fd and prepares out_fd for writing. Returns 0 or a libuv error. */
int rpc_start(uv_loop_t *loop, int in_fd, int out_fd, const struct rpc_handlers *handlers,
	      void *ctx, struct rpc **out);
/* Sends one message (borrowed). Returns 0 or a libuv error. */
int rpc_send(struct rpc *rpc, json_t *msg);
/* Sends {"jsonrpc":"2.0","id":id,"result":result}; steals result. id may be NULL (null). */
int rpc_send_result(struct rpc *rpc, json_t *id, json_t *result);
/* Sends a JSON-RPC error response; id may be NULL (null). */
int rpc_send_error(struct rpc *rpc, json_t *id, int code, const char *message);
/* Sends a notification; steals params (may be NULL). */
int rpc_notify(struct rpc *rpc, const char *method, json_t *params);
/* Stops reading; closes the handles once queued writes are flushed; then calls closed(ctx). */
void rpc_close(struct rpc *rpc, void (*closed)(void *ctx));

#endif
