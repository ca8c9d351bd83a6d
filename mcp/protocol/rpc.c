/* JSON-RPC line framing on stdio (see protocol.h). libuv streams for pipes, sockets and ttys; for a
 * plain file (stdin redirected from a file, or /dev/null) reads go through uv_fs_read and writes
 * are plain blocking writes, because libuv cannot poll regular files. Reading pauses while the
 * client leaves too much of our output unread (backpressure), so memory stays bounded.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol.h"

#define READ_CHUNK (64u * 1024)

union stream_handle {
	uv_handle_t handle;
	uv_stream_t stream;
	uv_pipe_t pipe;
	uv_tcp_t tcp;
	uv_tty_t tty;
};

struct rpc {
	uv_loop_t *loop;
	struct rpc_handlers handlers;
	void *ctx;

	/* input */
	int in_fd;
	bool in_is_file;
	union stream_handle in;
	uv_fs_t file_read;
	bool file_read_busy;
	int64_t file_offset; /* -1: read at the current position (pipes given as files) */
	char file_buf[READ_CHUNK];
	char *line;
	size_t line_len, line_cap;
	bool skipping; /* inside an oversized line: drop bytes until its newline */
	bool input_done;
	/* Reading stopped for backpressure; held keeps the rest of the chunk then being framed
	 * (at most one read's worth), to frame first when reading resumes. */
	bool input_paused;
	char held[READ_CHUNK];
	size_t held_len;

	/* output */
	int out_fd;
	bool out_is_file;
	union stream_handle out;
	unsigned pending_writes;
	size_t out_pending;    /* bytes handed to uv_write whose callback has not come yet */
	size_t out_high_mark;  /* the low mark is half of it */
	bool out_backed_up;    /* out_pending passed the high mark, not yet down to the low */
	unsigned long dropped; /* notifications dropped while backed up */

	/* closing */
	bool closing;
	bool handles_closing; /* past this point nothing more can be written */
	/* a client that never reads again cannot hold the close up past RPC_CLOSE_DRAIN_MS */
	uv_timer_t drain_timer;
	bool drain_timer_on, drain_overdue;
	int in_callback;      /* >0 while handlers run: closing waits until they return */
	int open_handles;
	void (*closed)(void *ctx);
};

struct write_req {
	uv_write_t req;
	struct rpc *rpc;
	size_t len;
	char data[];
};

/* ---- output ---- */

static void maybe_finish_close(struct rpc *rpc);
static void resume_input(struct rpc *rpc);

static void on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct rpc *rpc = w->rpc;
	(void)status; /* a reader that went away: nothing left to tell it (the output drains) */
	rpc->pending_writes--;
	rpc->out_pending -= w->len;
	free(w);
	if (rpc->out_backed_up && rpc->out_pending <= rpc->out_high_mark / 2) {
		rpc->out_backed_up = false;
		rpc->in_callback++;
		if (rpc->handlers.backpressure)
			rpc->handlers.backpressure(rpc->ctx, false);
		resume_input(rpc);
		rpc->in_callback--;
	}
	maybe_finish_close(rpc);
}

static int write_line(struct rpc *rpc, const char *text, size_t len)
{
	if (rpc->handles_closing)
		return UV_EPIPE;
	struct write_req *w = malloc(sizeof *w + len + 1);
	if (!w)
		return UV_ENOMEM;
	memcpy(w->data, text, len);
	w->data[len] = '\n';
	w->len = len + 1;
	w->rpc = rpc;
	if (rpc->out_is_file) {
		const char *p = w->data;
		size_t left = w->len;
		int rc = 0;
		while (left > 0) {
			ssize_t n = write(rpc->out_fd, p, left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				rc = uv_translate_sys_error(errno);
				break;
			}
			p += n;
			left -= (size_t)n;
		}
		free(w);
		return rc;
	}
	uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
	int rc = uv_write(&w->req, &rpc->out.stream, &buf, 1, on_written);
	if (rc) {
		free(w);
		return rc;
	}
	rpc->pending_writes++;
	rpc->out_pending += w->len;
	if (!rpc->out_backed_up && rpc->out_pending >= rpc->out_high_mark) {
		rpc->out_backed_up = true; /* input pauses before its next line */
		if (rpc->handlers.backpressure)
			rpc->handlers.backpressure(rpc->ctx, true);
	}
	return 0;
}

bool rpc_output_backed_up(const struct rpc *rpc)
{
	return rpc->out_backed_up;
}

unsigned long rpc_notifications_dropped(const struct rpc *rpc)
{
	return rpc->dropped;
}

int rpc_send(struct rpc *rpc, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(12));
	if (!text)
		return UV_ENOMEM;
	int rc = write_line(rpc, text, strlen(text));
	free(text);
	return rc;
}

json_t *rpc_error_message(json_t *id, int code, const char *message)
{
	static const char shape[] = "{s:s, s:O?, s:{s:i, s:s}}";
	json_t *msg = json_pack(shape, "jsonrpc", "2.0", "id", id, "error", "code", code,
				"message", message);
	if (!msg) /* message is not UTF-8 (a caller's bug) or memory ran out */
		msg = json_pack(shape, "jsonrpc", "2.0", "id", id, "error", "code", code, "message",
				"Internal error: the error message could not be encoded");
	return msg;
}

int rpc_send_error(struct rpc *rpc, json_t *id, int code, const char *message)
{
	json_t *msg = rpc_error_message(id, code, message);
	int rc = msg ? rpc_send(rpc, msg) : UV_ENOMEM;
	json_decref(msg);
	if (rc == UV_ENOMEM) /* nothing left to build an answer with: at least say so */
		fprintf(stderr, "airlock: out of memory: a request got no answer\n");
	return rc;
}

int rpc_send_notification(struct rpc *rpc, json_t *msg)
{
	if (rpc->out_backed_up) {
		rpc->dropped++;
		return UV_EAGAIN;
	}
	return rpc_send(rpc, msg);
}

/* ---- input ---- */

static void handle_line(struct rpc *rpc, const char *line, size_t len)
{
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	size_t start = 0;
	while (start < len && (line[start] == ' ' || line[start] == '\t'))
		start++;
	if (start == len)
		return; /* blank lines are not messages */
	json_error_t error;
	json_t *msg = json_loadb(line + start, len - start, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
				 &error);
	if (!msg) {
		rpc_send_error(rpc, NULL, RPC_PARSE_ERROR, "Parse error: not a JSON text");
		return;
	}
	rpc->handlers.message(rpc->ctx, msg);
	json_decref(msg);
}

static int line_reserve(struct rpc *rpc, size_t need)
{
	if (need <= rpc->line_cap)
		return 0;
	size_t cap = rpc->line_cap ? rpc->line_cap : 64 * 1024;
	while (cap < need)
		cap *= 2;
	char *p = realloc(rpc->line, cap);
	if (!p)
		return -ENOMEM;
	rpc->line = p;
	rpc->line_cap = cap;
	return 0;
}

/* Frames data into lines and handles each, until the output is backed up. Returns how many
 * bytes it took (all of them unless it stopped). */
static size_t feed(struct rpc *rpc, const char *data, size_t len)
{
	const char *start = data;
	while (len > 0 && !rpc->closing && !rpc->out_backed_up) {
		const char *nl = memchr(data, '\n', len);
		size_t take = nl ? (size_t)(nl - data) : len;
		if (rpc->skipping) {
			if (nl)
				rpc->skipping = false;
		} else if (rpc->line_len + take > RPC_MAX_LINE) {
			rpc->line_len = 0;
			rpc->skipping = nl == NULL;
			rpc_send_error(rpc, NULL, RPC_INVALID_REQUEST,
				       "Invalid Request: message longer than 16 MiB");
		} else if (nl && rpc->line_len == 0) {
			handle_line(rpc, data, take); /* whole line in this chunk: no copy */
		} else {
			if (line_reserve(rpc, rpc->line_len + take) != 0) {
				rpc->line_len = 0;
				rpc->skipping = nl == NULL;
				rpc_send_error(rpc, NULL, RPC_INTERNAL_ERROR, "out of memory");
			} else {
				memcpy(rpc->line + rpc->line_len, data, take);
				rpc->line_len += take;
				if (nl) {
					handle_line(rpc, rpc->line, rpc->line_len);
					rpc->line_len = 0;
				}
			}
		}
		if (!nl)
			return (size_t)(data + take - start);
		data = nl + 1;
		len -= take + 1;
	}
	return (size_t)(data - start);
}

static void pause_input(struct rpc *rpc)
{
	rpc->input_paused = true;
	if (!rpc->in_is_file)
		uv_read_stop(&rpc->in.stream); /* a file's next read is simply not started */
}

/* Frames a chunk of input; what a backed-up output leaves unframed waits in held. data may
 * point into held. */
static void take_input(struct rpc *rpc, const char *data, size_t len)
{
	size_t used = feed(rpc, data, len);
	if (used < len && !rpc->closing) {
		memmove(rpc->held, data + used, len - used);
		rpc->held_len = len - used;
		pause_input(rpc);
	}
}

static void input_ended(struct rpc *rpc)
{
	if (rpc->input_done)
		return;
	rpc->input_done = true;
	/* a last line without its newline is still a message */
	if (!rpc->skipping && rpc->line_len > 0 && !rpc->closing) {
		handle_line(rpc, rpc->line, rpc->line_len);
		rpc->line_len = 0;
	}
	if (!rpc->closing)
		rpc->handlers.input_closed(rpc->ctx);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct rpc *rpc = handle->data;
	*buf = uv_buf_init(rpc->file_buf, sizeof rpc->file_buf);
}

static void on_stream_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct rpc *rpc = stream->data;
	rpc->in_callback++;
	if (nread > 0)
		take_input(rpc, buf->base, (size_t)nread);
	else if (nread < 0) {
		uv_read_stop(stream);
		input_ended(rpc);
	}
	rpc->in_callback--;
	maybe_finish_close(rpc);
}

static void start_file_read(struct rpc *rpc);

static void on_file_read(uv_fs_t *req)
{
	struct rpc *rpc = req->data;
	ssize_t n = req->result;
	uv_fs_req_cleanup(req);
	rpc->file_read_busy = false;
	rpc->in_callback++;
	if (n <= 0 && !rpc->closing) {
		input_ended(rpc);
	} else if (n > 0 && !rpc->closing) {
		if (rpc->file_offset >= 0)
			rpc->file_offset += n;
		take_input(rpc, rpc->file_buf, (size_t)n);
		if (!rpc->closing && !rpc->input_paused)
			start_file_read(rpc);
	}
	rpc->in_callback--;
	maybe_finish_close(rpc);
}

static void start_file_read(struct rpc *rpc)
{
	uv_buf_t buf = uv_buf_init(rpc->file_buf, sizeof rpc->file_buf);
	rpc->file_read.data = rpc;
	if (uv_fs_read(rpc->loop, &rpc->file_read, rpc->in_fd, &buf, 1, rpc->file_offset,
		       on_file_read) == 0)
		rpc->file_read_busy = true;
	else
		input_ended(rpc);
}

/* The output is back down to the low mark: frame what was held, then read again. Runs with
 * in_callback raised. */
static void resume_input(struct rpc *rpc)
{
	if (!rpc->input_paused || rpc->closing)
		return;
	rpc->input_paused = false;
	size_t held = rpc->held_len;
	rpc->held_len = 0;
	take_input(rpc, rpc->held, held);
	if (rpc->input_paused || rpc->closing)
		return;
	if (rpc->in_is_file)
		start_file_read(rpc);
	else if (uv_read_start(&rpc->in.stream, on_alloc, on_stream_read) != 0)
		input_ended(rpc);
}

/* ---- set-up and tear-down ---- */

static int open_stream(struct rpc *rpc, int fd, union stream_handle *h, bool readable,
		       bool *is_file)
{
	int rc;
	switch (uv_guess_handle(fd)) {
	case UV_TTY:
		rc = uv_tty_init(rpc->loop, &h->tty, fd, readable);
		break;
	case UV_NAMED_PIPE:
		rc = uv_pipe_init(rpc->loop, &h->pipe, 0);
		if (rc == 0 && (rc = uv_pipe_open(&h->pipe, fd)) != 0)
			uv_close(&h->handle, NULL);
		break;
	case UV_TCP:
		rc = uv_tcp_init(rpc->loop, &h->tcp);
		if (rc == 0 && (rc = uv_tcp_open(&h->tcp, fd)) != 0)
			uv_close(&h->handle, NULL);
		break;
	case UV_FILE:
		*is_file = true;
		return 0;
	default:
		return UV_EINVAL;
	}
	if (rc == 0) {
		h->handle.data = rpc;
		rpc->open_handles++;
	}
	return rc;
}

int rpc_start(uv_loop_t *loop, int in_fd, int out_fd, size_t high_mark,
	      const struct rpc_handlers *handlers, void *ctx, struct rpc **out)
{
	struct rpc *rpc = calloc(1, sizeof *rpc);
	if (!rpc)
		return UV_ENOMEM;
	rpc->loop = loop;
	rpc->handlers = *handlers;
	rpc->ctx = ctx;
	rpc->in_fd = in_fd;
	rpc->out_fd = out_fd;
	rpc->out_high_mark = high_mark ? high_mark : RPC_OUTPUT_HIGH_MARK;
	int rc = open_stream(rpc, out_fd, &rpc->out, false, &rpc->out_is_file);
	if (rc == 0)
		rc = open_stream(rpc, in_fd, &rpc->in, true, &rpc->in_is_file);
	if (rc) {
		free(rpc);
		return rc; /* only reachable before any handle is open, or for an unusable fd */
	}
	if (rpc->in_is_file) {
		/* a regular file is read from the start; a character device at its position */
		rpc->file_offset = lseek(in_fd, 0, SEEK_CUR) == 0 ? 0 : -1;
		start_file_read(rpc);
	} else {
		rc = uv_read_start(&rpc->in.stream, on_alloc, on_stream_read);
		if (rc)
			input_ended(rpc);
	}
	*out = rpc;
	return 0;
}

static void finish_close(struct rpc *rpc)
{
	void (*closed)(void *) = rpc->closed;
	void *ctx = rpc->ctx;
	free(rpc->line);
	free(rpc);
	if (closed)
		closed(ctx);
}

static void on_handle_closed(uv_handle_t *handle)
{
	struct rpc *rpc = handle->data;
	if (--rpc->open_handles == 0)
		finish_close(rpc);
}

static void maybe_finish_close(struct rpc *rpc)
{
	if (!rpc->closing || rpc->handles_closing || rpc->in_callback > 0 ||
	    (rpc->pending_writes > 0 && !rpc->drain_overdue) || rpc->file_read_busy)
		return;
	rpc->handles_closing = true;
	if (rpc->drain_timer_on)
		uv_close((uv_handle_t *)&rpc->drain_timer, on_handle_closed);
	if (rpc->open_handles == 0) {
		finish_close(rpc); /* plain files on both sides: no handle to close */
		return;
	}
	if (!rpc->in_is_file && !uv_is_closing(&rpc->in.handle))
		uv_close(&rpc->in.handle, on_handle_closed);
	if (!rpc->out_is_file && !uv_is_closing(&rpc->out.handle))
		uv_close(&rpc->out.handle, on_handle_closed); /* unwritten output is dropped */
}

static void on_drain_overdue(uv_timer_t *timer)
{
	struct rpc *rpc = timer->data;
	rpc->drain_overdue = true;
	maybe_finish_close(rpc);
}

void rpc_close(struct rpc *rpc, void (*closed)(void *ctx))
{
	if (rpc->closing)
		return;
	rpc->closing = true;
	rpc->closed = closed;
	if (!rpc->in_is_file)
		uv_read_stop(&rpc->in.stream);
	else if (rpc->file_read_busy)
		uv_cancel((uv_req_t *)&rpc->file_read); /* fails harmlessly once it runs */
	if (rpc->pending_writes > 0 && uv_timer_init(rpc->loop, &rpc->drain_timer) == 0) {
		rpc->drain_timer.data = rpc;
		rpc->drain_timer_on = true;
		rpc->open_handles++;
		uv_timer_start(&rpc->drain_timer, on_drain_overdue, RPC_CLOSE_DRAIN_MS, 0);
	}
	maybe_finish_close(rpc);
}

/* ---- user text in messages ---- */

const char *rpc_excerpt(char *out, size_t out_size, const char *text)
{
	static const char mark[] = "...";
	if (out_size < sizeof mark) {
		if (out_size > 0)
			out[0] = '\0';
		return out;
	}
	const size_t max = out_size - sizeof mark;
	const unsigned char *s = (const unsigned char *)text;
	size_t len = strlen(text), o = 0;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_sequence(s + i, len - i);
		size_t take = n ? n : 1;
		if (o + take > max) {
			memcpy(out + o, mark, sizeof mark);
			return out;
		}
		if (n)
			memcpy(out + o, s + i, n);
		else
			out[o] = '?';
		o += take;
		i += take;
	}
	out[o] = '\0';
	return out;
}
