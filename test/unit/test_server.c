/* The MCP server's framing and dispatch without a VM: a script of request lines goes in through
 * a plain file (stdin redirected from a file), the replies come out in another, and every loop
 * ends with a clean uv_loop_close(). The sandbox is configured as unavailable, so execute_code
 * answers with its reason: argument checks still run first. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"
#include "check.h"
#include "proto.h"

struct replies {
	json_t *lines[64];
	size_t count;
};

static void on_stopped(void *ctx)
{
	*(int *)ctx = 1;
}

static struct server_config test_config(void)
{
	struct server_config cfg = {.max_concurrent = 2, .max_queued = 8, .max_timeout_s = 300,
				    .memory_mb = 512, .vcpus = 1};
	snprintf(cfg.unavailable, sizeof cfg.unavailable, "no backend in unit tests");
	return cfg;
}

/* Feeds input to a server configured as cfg, runs the loop until it stops, and collects its
 * output lines. */
static void serve_with(const struct server_config *cfg, const char *input, size_t input_len,
		       struct replies *out)
{
	char in_path[] = "/tmp/airlock-test-in-XXXXXX", out_path[] = "/tmp/airlock-test-out-XXXXXX";
	int in_fd = mkstemp(in_path), out_fd = mkstemp(out_path);
	CHECK(in_fd >= 0 && out_fd >= 0);
	CHECK(write(in_fd, input, input_len) == (ssize_t)input_len);
	lseek(in_fd, 0, SEEK_SET);

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server *srv;
	int stopped = 0;
	CHECK(server_start(&loop, cfg, in_fd, out_fd, on_stopped, &stopped, &srv) == 0);
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

static void serve(const char *input, size_t input_len, struct replies *out)
{
	struct server_config cfg = test_config();
	serve_with(&cfg, input, input_len, out);
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

/* The tool says what this server does: every language of AL_LANGUAGES in its schema and its
 * description, and the limits as configured (--memory-mb, --max-timeout) and defined
 * (protocol.h), not figures written beside them. */
static void the_tool_describes_the_tables_and_this_servers_limits(void)
{
	const char in[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n";
	struct server_config cfg = test_config();
	cfg.memory_mb = 768;
	cfg.max_timeout_s = 45;
	struct replies r;
	serve_with(&cfg, in, sizeof in - 1, &r);
	json_t *tool = json_array_get(json_object_get(json_object_get(reply_for(&r, 1), "result"),
						      "tools"), 0);
	const char *description = json_string_value(json_object_get(tool, "description"));
	json_t *props = json_object_get(json_object_get(tool, "inputSchema"), "properties");
	json_t *names = json_object_get(json_object_get(props, "language"), "enum");
	CHECK(description && json_array_size(names) == AL_LANG_END - AL_LANG_FIRST);
	for (uint32_t l = AL_LANG_FIRST; l < AL_LANG_END && description; l++) {
		CHECK(strcmp(json_string_value(json_array_get(names, l - AL_LANG_FIRST)),
			     al_language_name(l)) == 0);
		CHECK(strstr(description, al_language(l)->about) != NULL);
	}
	CHECK(description && strstr(description, "768 MiB of memory") != NULL);
	CHECK(description && strstr(description, "at most 45 s") != NULL);
	CHECK(json_real_value(json_object_get(json_object_get(props, "timeout_s"), "default")) ==
	      CALL_DEFAULT_TIMEOUT_S);
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

static void excerpts_cut_at_a_character_and_repair_utf8(void)
{
	char out[RPC_EXCERPT_SIZE(8)];
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "short"), "short") == 0);
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "12345678"), "12345678") == 0);
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "123456789"), "12345678...") == 0);
	/* "é" is 2 bytes and "€" 3: never cut inside one */
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "1234567\xc3\xa9"), "1234567...") == 0);
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "123456\xe2\x82\xac"), "123456...") == 0);
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "12345\xe2\x82\xac"), "12345\xe2\x82\xac") == 0);
	/* bytes that are not UTF-8: a lone continuation, a cut sequence, an overlong '/', a
	 * surrogate, past U+10FFFF */
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "a\x80" "b\xc3"), "a?b?") == 0);
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "\xc0\xaf\xed\xa0\x80"), "?????") == 0);
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "\xf4\x90\x80\x80"), "????") == 0);
	CHECK(strcmp(rpc_excerpt(out, sizeof out, "\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80") == 0);
	char tiny[2];
	CHECK(strcmp(rpc_excerpt(tiny, sizeof tiny, "abc"), "") == 0);
}

/* The outside review's case (2026-12-06, item 8): names cut inside a UTF-8 character used to
 * make json_pack fail, and the request got no answer at all, or an empty result. */
static void user_text_cut_inside_a_character_still_gets_its_answer(void)
{
	char a199[200], b63[64], c99[100];
	memset(a199, 'a', 199), a199[199] = '\0';
	memset(b63, 'b', 63), b63[63] = '\0';
	memset(c99, 'c', 99), c99[99] = '\0';
	char in[4096];
	int n = snprintf(in, sizeof in,
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\xc3\xa9\"}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"%s\xc3\xa9\"}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"execute_code\","
		"\"arguments\":{\"code\":\"1\",\"%s\xc3\xa9\":1}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"execute_code\","
		"\"arguments\":{\"code\":\"1\",\"files\":[{\"path\":\"p\",\"content\":\"\",\"%s\xc3\xa9\":1}]}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"execute_code\","
		"\"arguments\":{\"code\":\"1\",\"files\":[{\"path\":\"%s\xc3\xa9/../x\",\"content\":\"\"}]}}}\n",
		a199, a199, b63, b63, c99);
	CHECK(n > 0 && (size_t)n < sizeof in);
	struct replies r;
	serve(in, (size_t)n, &r);
	CHECK(r.count == 5);
	const char *message = json_string_value(
		json_object_get(json_object_get(reply_for(&r, 1), "error"), "message"));
	CHECK(message && strstr(message, "Unknown tool: aaaa") && strstr(message, "a..."));
	CHECK(error_code(reply_for(&r, 2)) == RPC_METHOD_NOT_FOUND);
	for (json_int_t id = 3; id <= 5; id++) {
		const char *text = tool_text(reply_for(&r, id));
		CHECK(text && strstr(text, "Invalid arguments") && strstr(text, "..."));
	}
	const char *path_text = tool_text(reply_for(&r, 5));
	CHECK(path_text && strstr(path_text, "files[0].path") != NULL);
	replies_free(&r);
}

static void calls_past_max_queued_are_refused_at_once(void)
{
	struct server_config cfg = test_config();
	cfg.max_concurrent = 0; /* nothing starts: every call waits (the unit tests run no VM) */
	cfg.max_queued = 2;
	char in[1024];
	size_t len = 0;
	for (int id = 1; id <= 4; id++)
		len += (size_t)snprintf(in + len, sizeof in - len,
					"{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\","
					"\"params\":{\"name\":\"execute_code\",\"arguments\":"
					"{\"code\":\"print(%d)\"}}}\n",
					id, id);
	struct replies r;
	serve_with(&cfg, in, len, &r);
	/* 1 and 2 wait (and are cancelled unanswered when stdin ends); 3 and 4 are refused */
	CHECK(r.count == 2);
	CHECK(reply_for(&r, 1) == NULL && reply_for(&r, 2) == NULL);
	for (json_int_t id = 3; id <= 4; id++) {
		const char *text = tool_text(reply_for(&r, id));
		CHECK(text && strcmp(text, "airlock is busy: 2 calls are already waiting") == 0);
		CHECK(json_is_true(json_object_get(json_object_get(reply_for(&r, id), "result"),
						   "isError")));
	}
	replies_free(&r);
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A client that writes requests whose answers are large (pings with 64 KiB ids) and does not
 * read: the server stops reading past its output's high mark (here 1 MiB; it says so on
 * stderr), and once the client reads, every answer comes, in order. The input is a plain file
 * (the uv_fs_read path pauses by not starting its next read); the output a socket (a libuv
 * stream, whose buffer takes a few hundred KiB before the server holds any). */
static void a_client_that_does_not_read_stops_the_input(void)
{
	enum { count = 64, id_len = 64 << 10 };
	char in_path[] = "/tmp/airlock-test-in-XXXXXX", err_path[] = "/tmp/airlock-test-err-XXXXXX";
	int in_fd = mkstemp(in_path), err_fd = mkstemp(err_path), sv[2];
	CHECK(in_fd >= 0 && err_fd >= 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	char *line = malloc(id_len + 128);
	if (!line)
		abort();
	for (int i = 0; i < count; i++) {
		int head = sprintf(line, "{\"jsonrpc\":\"2.0\",\"id\":\"%03d", i);
		memset(line + head, 'x', id_len);
		int tail = sprintf(line + head + id_len, "\",\"method\":\"ping\"}\n");
		CHECK(write(in_fd, line, (size_t)(head + id_len + tail)) == head + id_len + tail);
	}
	free(line);
	lseek(in_fd, 0, SEEK_SET);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	int saved_stderr = dup(2);
	dup2(err_fd, 2);

	struct server_config cfg = test_config();
	cfg.output_high_mark = 1 << 20;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct server *srv;
	int stopped = 0;
	CHECK(server_start(&loop, &cfg, in_fd, sv[0], on_stopped, &stopped, &srv) == 0);
	/* not reading until the server says it stopped reading */
	struct stat st = {0};
	uint64_t deadline = monotonic_ms() + 60000; /* it takes well under a second */
	while (fstat(err_fd, &st) == 0 && st.st_size == 0 && monotonic_ms() < deadline) {
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	CHECK(st.st_size > 0);
	/* then reading everything: the answers in order, then EOF on stdin stops the server */
	size_t cap = (size_t)count * (id_len + 64), got = 0;
	char *replies = malloc(cap);
	if (!replies)
		abort();
	deadline = monotonic_ms() + 120000;
	while (!stopped && monotonic_ms() < deadline) {
		uv_run(&loop, UV_RUN_NOWAIT);
		ssize_t n;
		while (got < cap && (n = read(sv[1], replies + got, cap - got)) > 0)
			got += (size_t)n;
		usleep(100);
	}
	CHECK(stopped == 1);
	CHECK(uv_loop_close(&loop) == 0);
	dup2(saved_stderr, 2);
	close(saved_stderr);

	size_t answered = 0;
	for (char *p = replies, *end; p < replies + got; p = end + 1) {
		end = memchr(p, '\n', (size_t)(replies + got - p));
		if (!end)
			break;
		json_t *msg = json_loadb(p, (size_t)(end - p), 0, NULL);
		const char *id = json_string_value(json_object_get(msg, "id"));
		char want[4];
		snprintf(want, sizeof want, "%03zu", answered);
		CHECK(id && strncmp(id, want, 3) == 0 && strlen(id) == 3 + id_len);
		CHECK(json_is_object(json_object_get(msg, "result")));
		json_decref(msg);
		answered++;
	}
	CHECK(answered == count);
	char said[512] = "";
	CHECK(pread(err_fd, said, sizeof said - 1, 0) > 0);
	CHECK(strstr(said, "the client leaves over 1 MiB of output unread") != NULL);
	free(replies);
	close(sv[0]);
	close(sv[1]);
	close(in_fd);
	close(err_fd);
	unlink(in_path);
	unlink(err_path);
}

#define META_2026                                                                           \
	"\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","            \
	"\"io.modelcontextprotocol/clientCapabilities\":{}}"

static const char *result_type(json_t *msg)
{
	return json_string_value(json_object_get(json_object_get(msg, "result"), "resultType"));
}

/* One stream, both eras: a request whose _meta names 2026-07-28 is answered statelessly (with
 * resultType, and discover), an initialize-era one as its session says; each era's methods and
 * errors are its own. */
static void answers_both_eras_on_one_stream(void)
{
	const char in[] =
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{" META_2026 "}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{" META_2026 "}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\",\"params\":{" META_2026 "}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/list\",\"params\":{\"_meta\":"
		"{\"io.modelcontextprotocol/protocolVersion\":\"2099-01-01\","
		"\"io.modelcontextprotocol/clientCapabilities\":{}}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/list\",\"params\":{\"_meta\":"
		"{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"initialize\",\"params\":"
		"{\"protocolVersion\":\"2026-07-28\",\"capabilities\":{}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tasks/get\",\"params\":{\"taskId\":\"x\","
		META_2026 "}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tasks/get\",\"params\":{\"taskId\":\"x\","
		"\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
		"\"io.modelcontextprotocol/clientCapabilities\":{\"extensions\":"
		"{\"io.modelcontextprotocol/tasks\":{}}}}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"tools/call\",\"params\":{\"name\":"
		"\"execute_code\",\"arguments\":{\"code\":\"print(1)\"}," META_2026 "}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"server/discover\",\"params\":{}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":12,\"method\":\"tools/list\",\"params\":{\"_meta\":"
		"{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
		"\"io.modelcontextprotocol/clientCapabilities\":{},"
		"\"io.modelcontextprotocol/logLevel\":\"loud\"}}}\n"
		"{\"jsonrpc\":\"2.0\",\"id\":13,\"method\":\"tools/call\",\"params\":{\"name\":"
		"\"execute_code\",\"arguments\":{\"code\":\"1\",\"timeout_s\":60},\"_meta\":"
		"{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
		"\"io.modelcontextprotocol/clientCapabilities\":{\"extensions\":"
		"{\"io.modelcontextprotocol/tasks\":{}}}}}}\n";
	struct replies r;
	serve(in, sizeof in - 1, &r);
	CHECK(r.count == 13);
	json_t *discover = json_object_get(reply_for(&r, 1), "result");
	CHECK(strcmp(result_type(reply_for(&r, 1)), "complete") == 0);
	json_t *versions = json_object_get(discover, "supportedVersions");
	CHECK(strcmp(json_string_value(json_array_get(versions, 0)), "2026-07-28") == 0);
	CHECK(strcmp(json_string_value(json_array_get(versions, 1)), "2025-11-25") == 0);
	CHECK(json_is_object(json_object_get(
		json_object_get(json_object_get(discover, "capabilities"), "extensions"),
		"io.modelcontextprotocol/tasks")));
	CHECK(json_is_integer(json_object_get(discover, "ttlMs")));
	CHECK(strcmp(json_string_value(json_object_get(
			     json_object_get(json_object_get(discover, "_meta"),
					     "io.modelcontextprotocol/serverInfo"),
			     "name")),
		     "airlock") == 0);
	json_t *list = json_object_get(reply_for(&r, 2), "result");
	CHECK(strcmp(result_type(reply_for(&r, 2)), "complete") == 0);
	CHECK(json_is_integer(json_object_get(list, "ttlMs")));
	CHECK(json_is_string(json_object_get(list, "cacheScope")));
	CHECK(error_code(reply_for(&r, 3)) == RPC_METHOD_NOT_FOUND); /* not in 2026-07-28 */
	json_t *unsupported = reply_for(&r, 4);
	CHECK(error_code(unsupported) == -32022);
	json_t *data = json_object_get(json_object_get(unsupported, "error"), "data");
	CHECK(strcmp(json_string_value(json_object_get(data, "requested")), "2099-01-01") == 0);
	CHECK(json_array_size(json_object_get(data, "supported")) == 5);
	CHECK(error_code(reply_for(&r, 5)) == RPC_INVALID_PARAMS); /* no clientCapabilities */
	/* initialize asks for a version of the other era: the newest of its own */
	json_t *init = json_object_get(reply_for(&r, 6), "result");
	CHECK(strcmp(json_string_value(json_object_get(init, "protocolVersion")), "2025-11-25") == 0);
	CHECK(json_object_get(init, "resultType") == NULL);
	CHECK(json_is_object(json_object_get(reply_for(&r, 7), "result")));
	CHECK(error_code(reply_for(&r, 8)) == -32021); /* tasks without the extension */
	CHECK(error_code(reply_for(&r, 9)) == RPC_INVALID_PARAMS); /* no such task */
	/* a tool call answered at once (the sandbox is unavailable) still speaks 2026-07-28 */
	CHECK(strcmp(result_type(reply_for(&r, 10)), "complete") == 0);
	CHECK(json_is_true(json_object_get(json_object_get(reply_for(&r, 10), "result"), "isError")));
	CHECK(error_code(reply_for(&r, 11)) == RPC_INVALID_PARAMS); /* discover without _meta */
	CHECK(error_code(reply_for(&r, 12)) == RPC_INVALID_PARAMS); /* an unknown log level */
	/* a long call from a client that declares tasks: a task, kept until the server ends */
	CHECK(strcmp(result_type(reply_for(&r, 13)), "task") == 0);
	CHECK(json_is_string(json_object_get(json_object_get(reply_for(&r, 13), "result"),
					     "taskId")));
	replies_free(&r);
}

int main(void)
{
	TEST(answers_the_protocol_methods);
	TEST(the_tool_describes_the_tables_and_this_servers_limits);
	TEST(bad_lines_get_errors);
	TEST(oversized_line_is_skipped);
	TEST(execute_code_checks_arguments_then_reports_the_sandbox);
	TEST(base64_round_trips_and_refuses_junk);
	TEST(excerpts_cut_at_a_character_and_repair_utf8);
	TEST(user_text_cut_inside_a_character_still_gets_its_answer);
	TEST(calls_past_max_queued_are_refused_at_once);
	TEST(a_client_that_does_not_read_stops_the_input);
	TEST(answers_both_eras_on_one_stream);
	return TEST_EXIT_STATUS();
}
