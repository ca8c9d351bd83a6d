/* The MCP server's framing and dispatch without a VM: a script of request lines goes in through
 * a plain file (stdin redirected from a file), the replies come out in another, and every loop
 * ends with a clean uv_loop_close(). The sandbox is configured as unavailable, so execute_code
 * answers with its reason: argument checks still run first. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "check.h"
#include "rpc.h"
#include "server.h"

struct replies {
	json_t *lines[64];
	size_t count;
};

static void on_stopped(void *ctx)
{
	*(int *)ctx = 1;
}

/* Feeds input to a server, runs the loop until it stops, and collects its output lines. */
static void serve(const char *input, size_t input_len, struct replies *out)
{
	char in_path[] = "/tmp/airlock-test-in-XXXXXX", out_path[] = "/tmp/airlock-test-out-XXXXXX";
	int in_fd = mkstemp(in_path), out_fd = mkstemp(out_path);
	CHECK(in_fd >= 0 && out_fd >= 0);
	CHECK(write(in_fd, input, input_len) == (ssize_t)input_len);
	lseek(in_fd, 0, SEEK_SET);

	struct server_config cfg = {.max_concurrent = 2, .max_timeout_s = 300, .memory_mb = 512,
				    .vcpus = 1};
	snprintf(cfg.unavailable, sizeof cfg.unavailable, "no backend in unit tests");
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server *srv;
	int stopped = 0;
	CHECK(server_start(&loop, &cfg, in_fd, out_fd, on_stopped, &stopped, &srv) == 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(stopped == 1);
	CHECK(uv_loop_close(&loop) == 0);

	FILE *f = fopen(out_path, "r");
	char *line = NULL;
	size_t cap = 0;
	out->count = 0;
	while (f && getline(&line, &cap, f) > 0 && out->count < 64) {
		json_error_t error;
		json_t *msg = json_loads(line, 0, &error);
		CHECK(msg != NULL); /* every line out is one JSON message */
		out->lines[out->count++] = msg;
	}
	free(line);
	if (f)
		fclose(f);
	close(in_fd);
	close(out_fd);
	unlink(in_path);
	unlink(out_path);
}

static void replies_free(struct replies *r)
{
	for (size_t i = 0; i < r->count; i++)
		json_decref(r->lines[i]);
}

static json_t *reply_for(struct replies *r, json_int_t id)
{
	for (size_t i = 0; i < r->count; i++) {
		json_t *rid = json_object_get(r->lines[i], "id");
		if (json_is_integer(rid) && json_integer_value(rid) == id)
			return r->lines[i];
	}
	return NULL;
}

static int error_code(json_t *msg)
{
	return (int)json_integer_value(json_object_get(json_object_get(msg, "error"), "code"));
}

static const char *tool_text(json_t *msg)
{
	json_t *content = json_object_get(json_object_get(msg, "result"), "content");
	return json_string_value(json_object_get(json_array_get(content, 0), "text"));
}

static void answers_the_protocol_methods(void)
{
	const char in[] =
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":"
		"{\"protocolVersion\":\"2024-11-05\",\"capabilities\":{}}}\n"
		"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\r\n"
		"\n"
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"logging/setLevel\",\"params\":{\"level\":\"info\"}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"prompts/list\"}";
	struct replies r;
	serve(in, sizeof in - 1, &r);
	CHECK(r.count == 5);
	json_t *init = json_object_get(reply_for(&r, 1), "result");
	CHECK(strcmp(json_string_value(json_object_get(init, "protocolVersion")), "2024-11-05") == 0);
	CHECK(json_is_object(json_object_get(json_object_get(init, "capabilities"), "logging")));
	CHECK(json_is_object(json_object_get(reply_for(&r, 2), "result")));
	json_t *tools = json_object_get(json_object_get(reply_for(&r, 3), "result"), "tools");
	CHECK(json_array_size(tools) == 1);
	json_t *tool = json_array_get(tools, 0);
	CHECK(json_is_object(json_object_get(tool, "inputSchema")));
	CHECK(json_is_object(json_object_get(tool, "outputSchema")));
	CHECK(strstr(json_string_value(json_object_get(tool, "description")), "300 s") != NULL);
	CHECK(json_is_object(json_object_get(reply_for(&r, 4), "result")));
	CHECK(error_code(reply_for(&r, 5)) == RPC_METHOD_NOT_FOUND);
	replies_free(&r);
}

static void bad_lines_get_errors(void)
{
	char in[] = "{oops\n"
		    "\"a string\"\n"
		    "[]\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"ping\",\"params\":7}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":7,\"id\":8,\"method\":\"ping\"}\n"
		    "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}\n";
	struct replies r;
	serve(in, sizeof in - 1, &r);
	CHECK(r.count == 7);
	CHECK(error_code(r.lines[0]) == RPC_PARSE_ERROR);
	CHECK(json_is_null(json_object_get(r.lines[0], "id")));
	CHECK(error_code(r.lines[1]) == RPC_INVALID_REQUEST);
	CHECK(error_code(r.lines[2]) == RPC_INVALID_REQUEST);
	CHECK(error_code(r.lines[3]) == RPC_INVALID_REQUEST); /* a fractional id */
	CHECK(error_code(reply_for(&r, 6)) == RPC_INVALID_PARAMS);
	CHECK(error_code(r.lines[5]) == RPC_PARSE_ERROR); /* duplicate keys are refused */
	CHECK(json_is_object(json_object_get(reply_for(&r, 9), "result")));
	replies_free(&r);
}

static void oversized_line_is_skipped(void)
{
	size_t big = RPC_MAX_LINE + 100;
	const char tail[] = "\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n";
	char *in = malloc(big + sizeof tail);
	memset(in, 'x', big);
	memcpy(in + big, tail, sizeof tail);
	struct replies r;
	serve(in, big + sizeof tail - 1, &r);
	CHECK(r.count == 2);
	CHECK(error_code(r.lines[0]) == RPC_INVALID_REQUEST);
	CHECK(json_is_object(json_object_get(reply_for(&r, 2), "result")));
	replies_free(&r);
	free(in);
}

static void execute_code_checks_arguments_then_reports_the_sandbox(void)
{
	const char in[] =
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"execute_code\","
		"\"arguments\":{\"code\":\"print(1)\",\"language\":\"rust\"}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"execute_code\","
		"\"arguments\":{\"code\":\"print(1)\",\"files\":[{\"path\":\"a/../../b\",\"content\":\"\"}]}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"execute_code\","
		"\"arguments\":{\"code\":\"print(1)\",\"timeout_s\":1e9,\"files\":[{\"path\":\"d/x.bin\","
		"\"content\":\"AAEC\",\"encoding\":\"base64\"}]}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"other\"}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"execute_code\","
		"\"arguments\":[]}}\n";
	struct replies r;
	serve(in, sizeof in - 1, &r);
	CHECK(r.count == 5);
	CHECK(strstr(tool_text(reply_for(&r, 1)), "language") != NULL);
	CHECK(strstr(tool_text(reply_for(&r, 2)), "files[0].path") != NULL);
	/* valid arguments reach the sandbox, which is unavailable here: isError with the reason */
	CHECK(strstr(tool_text(reply_for(&r, 3)), "no backend in unit tests") != NULL);
	CHECK(json_is_true(json_object_get(json_object_get(reply_for(&r, 3), "result"), "isError")));
	CHECK(error_code(reply_for(&r, 4)) == RPC_INVALID_PARAMS);
	CHECK(error_code(reply_for(&r, 5)) == RPC_INVALID_PARAMS);
	replies_free(&r);
}

static void base64_round_trips_and_refuses_junk(void)
{
	const uint8_t data[] = {0, 1, 2, 253, 254, 255, 'a'};
	for (size_t n = 0; n <= sizeof data; n++) {
		char *text = base64_encode(data, n);
		uint8_t *back = NULL;
		size_t len = 0;
		CHECK(text && base64_decode(text, strlen(text), &back, &len) == 0);
		CHECK(len == n && memcmp(back, data, n) == 0);
		free(back);
		free(text);
	}
	char *hello = base64_encode((const uint8_t *)"hello", 5);
	CHECK(strcmp(hello, "aGVsbG8=") == 0);
	free(hello);
	uint8_t *out;
	size_t len;
	CHECK(base64_decode("aGVs\nbG8", 8, &out, &len) == 0 && len == 5); /* unpadded, wrapped */
	free(out);
	CHECK(base64_decode("a", 1, &out, &len) == -EINVAL);
	CHECK(base64_decode("aGVsbG8=x", 9, &out, &len) == -EINVAL);
	CHECK(base64_decode("aG!s", 4, &out, &len) == -EINVAL);
	CHECK(base64_decode("aGVsbG===", 9, &out, &len) == -EINVAL);
}

int main(void)
{
	TEST(answers_the_protocol_methods);
	TEST(bad_lines_get_errors);
	TEST(oversized_line_is_skipped);
	TEST(execute_code_checks_arguments_then_reports_the_sandbox);
	TEST(base64_round_trips_and_refuses_junk);
	return TEST_EXIT_STATUS();
}
