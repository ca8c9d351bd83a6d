/* libFuzzer target: the MCP server's JSON-RPC reader and dispatch. The input is what a client
 * writes on stdin; it reaches the server through a memfd (the plain-file path of rpc.c, so one
 * loop run consumes it all) and the sandbox is unavailable, so tools/call answers without a VM.
 * Besides the sanitizers, it checks what a client relies on: every line out is one JSON object
 * with "jsonrpc":"2.0", and the loop closes cleanly (no handle left open). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "server.h"

static void on_stopped(void *ctx)
{
	*(int *)ctx = 1;
}

static void check_replies(int out_fd)
{
	off_t size = lseek(out_fd, 0, SEEK_END);
	if (size <= 0)
		return;
	char *text = malloc((size_t)size + 1);
	if (!text || pread(out_fd, text, (size_t)size, 0) != size)
		abort();
	text[size] = '\0';
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
		json_decref(msg);
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int in_fd = memfd_create("fuzz-in", MFD_CLOEXEC), out_fd = memfd_create("fuzz-out", MFD_CLOEXEC);
	if (in_fd < 0 || out_fd < 0 || write(in_fd, data, size) != (ssize_t)size)
		abort();
	lseek(in_fd, 0, SEEK_SET);

	struct server_config cfg = {.max_concurrent = 2, .max_timeout_s = 300, .memory_mb = 512,
				    .vcpus = 1};
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
	check_replies(out_fd);
	close(in_fd);
	close(out_fd);
	return 0;
}
