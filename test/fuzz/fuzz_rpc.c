/* libFuzzer target: the MCP server's JSON-RPC reader and dispatch. The input is what a client
 * writes on stdin; it reaches the server through a memfd (the plain-file path of rpc.c, so one
 * loop run consumes it all) and the sandbox is unavailable, so tools/call answers without a VM.
 * Besides the sanitizers, it checks what a client relies on: every line out is one JSON object
 * with "jsonrpc":"2.0"; every request gets exactly one answer, in order, carrying its id
 * (whatever its bytes: invalid UTF-8, long names cut in error texts, odd ids), and every line
 * the server cannot take as a request one answer with id null; and the loop closes cleanly
 * (no handle left open). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "protocol.h"

static void on_stopped(void *ctx)
{
	*(int *)ctx = 1;
}

/* What the server owes for one line of input, by the rules of JSON-RPC 2.0 as docs/interface.md
 * applies them: nothing (a blank line, a notification, a response), or one answer, appended to
 * owed as [the id it must carry (null when the line has no usable id), the method (null when
 * none)].
 * Independent of rpc.c and server.c on purpose: a path that forgets to answer shows up as a
 * missing id. */
static void owe(const char *line, size_t len, json_t *owed)
{
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	while (len > 0 && (line[0] == ' ' || line[0] == '\t'))
		line++, len--;
	if (len == 0)
		return;
	json_t *msg = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(msg)) {
		json_array_append_new(owed, json_pack("[nn]")); /* parse error or not a request */
		json_decref(msg);
		return;
	}
	json_t *id = json_object_get(msg, "id"), *method = json_object_get(msg, "method");
	const char *version = json_string_value(json_object_get(msg, "jsonrpc"));
	bool id_ok = !id || json_is_string(id) || json_is_integer(id);
	json_t *answer_id = id && id_ok ? id : NULL;
	bool answer;
	if (!id_ok || !version || strcmp(version, "2.0") != 0 || (method && !json_is_string(method)))
		answer = true;
	else if (!method) /* a response to nothing is dropped; anything else is invalid */
		answer = !id || (!json_object_get(msg, "result") && !json_object_get(msg, "error"));
	else
		answer = id != NULL; /* a request, bad params included; a notification gets none */
	if (answer)
		json_array_append_new(owed, json_pack("[O?O?]", answer_id,
						      json_is_string(method) ? method : NULL));
	json_decref(msg);
}

static json_t *owed_for(const uint8_t *data, size_t size)
{
	json_t *owed = json_array();
	const char *p = (const char *)data, *end = p + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (len > RPC_MAX_LINE)
			json_array_append_new(owed, json_pack("[nn]"));
		else
			owe(p, len, owed);
		p += len + 1;
	}
	return owed;
}

static void check_replies(int out_fd, json_t *owed)
{
	off_t size = lseek(out_fd, 0, SEEK_END);
	char *text = malloc((size_t)(size > 0 ? size : 0) + 1);
	if (!text || (size > 0 && pread(out_fd, text, (size_t)size, 0) != size))
		abort();
	text[size > 0 ? size : 0] = '\0';
	size_t answered = 0;
	for (char *line = text, *end; *line; line = end + 1) {
		end = strchr(line, '\n');
		if (!end)
			abort(); /* every message ends with its newline */
		*end = '\0';
		json_error_t error;
		json_t *msg = json_loads(line, 0, &error);
		const char *version = json_string_value(json_object_get(msg, "jsonrpc"));
		if (!json_is_object(msg) || !version || strcmp(version, "2.0") != 0)
			abort();
		if (!json_object_get(msg, "method")) { /* an answer, not a notification */
			json_t *id = json_object_get(msg, "id");
			bool has_result = json_object_get(msg, "result") != NULL;
			bool has_error = json_is_object(json_object_get(msg, "error"));
			if (!id || has_result == has_error)
				abort(); /* one of result and error, and the id, even when null */
			json_t *want = json_array_get(owed, answered++);
			if (!want || !json_equal(id, json_array_get(want, 0)))
				abort(); /* an answer nobody asked for, or with the wrong id */
			const char *method = json_string_value(json_array_get(want, 1));
			json_t *result = json_object_get(msg, "result");
			const char *type = json_string_value(json_object_get(result, "resultType"));
			bool task = type && strcmp(type, "task") == 0 &&
				    json_is_string(json_object_get(result, "taskId"));
			if (has_result && method && strcmp(method, "tools/call") == 0 && !task &&
			    (!json_is_array(json_object_get(result, "content")) ||
			     !json_is_boolean(json_object_get(result, "isError"))))
				abort(); /* a tool's answer is a CallToolResult (or, in 2026-07-28,
					  * a task's), never an empty {} */
		}
		json_decref(msg);
	}
	if (answered != json_array_size(owed))
		abort(); /* a request that got no answer */
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int in_fd = memfd_create("fuzz-in", MFD_CLOEXEC), out_fd = memfd_create("fuzz-out", MFD_CLOEXEC);
	if (in_fd < 0 || out_fd < 0 || write(in_fd, data, size) != (ssize_t)size)
		abort();
	lseek(in_fd, 0, SEEK_SET);

	struct server_config cfg = {.max_concurrent = 2, .max_queued = 2, .max_timeout_s = 300,
				    .memory_mb = 512, .vcpus = 1};
	snprintf(cfg.unavailable, sizeof cfg.unavailable, "no backend while fuzzing");
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server *srv;
	int stopped = 0;
	if (server_start(&loop, &cfg, in_fd, out_fd, on_stopped, &stopped, &srv) != 0)
		abort();
	uv_run(&loop, UV_RUN_DEFAULT);
	if (!stopped || uv_loop_close(&loop) != 0)
		abort();
	json_t *owed = owed_for(data, size);
	check_replies(out_fd, owed);
	json_decref(owed);
	close(in_fd);
	close(out_fd);
	return 0;
}
