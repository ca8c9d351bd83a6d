/* The structured result: UTF-8 repair, signal names, MIME types, path rules, and the JSON shape
 * docs/interface.md gives for execute_code's structuredContent. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "protocol.h"

static int sanitizes_to(const char *in, size_t in_len, const char *want)
{
	size_t len;
	char *out = utf8_sanitize((const uint8_t *)in, in_len, &len);
	int ok = out && len == strlen(want) && memcmp(out, want, len) == 0;
	free(out);
	return ok;
}

#define FFFD "\xEF\xBF\xBD"

static void repairs_invalid_utf8(void)
{
	CHECK(sanitizes_to("plain", 5, "plain"));
	CHECK(sanitizes_to("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14,
			   "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
	CHECK(sanitizes_to("a\xFF" "b", 3, "a" FFFD "b"));
	CHECK(sanitizes_to("\xC0\x80", 2, FFFD FFFD));             /* overlong NUL */
	CHECK(sanitizes_to("\xED\xA0\x80", 3, FFFD FFFD FFFD));    /* surrogate */
	CHECK(sanitizes_to("\xF4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD)); /* past U+10FFFF */
	CHECK(sanitizes_to("ok\xE2\x82", 4, "ok" FFFD FFFD));      /* cut at the end */
	CHECK(sanitizes_to("", 0, ""));
	size_t len;
	char *out = utf8_sanitize((const uint8_t *)"a\0b", 3, &len); /* NUL is valid UTF-8 */
	CHECK(out && len == 3 && out[1] == '\0');
	free(out);
}

static void names_signals_and_types(void)
{
	char buf[32];
	CHECK(strcmp(signal_name(9, buf, sizeof buf), "SIGKILL") == 0);
	CHECK(strcmp(signal_name(11, buf, sizeof buf), "SIGSEGV") == 0);
	CHECK(strncmp(signal_name(200, buf, sizeof buf), "SIG", 3) == 0);
	CHECK(strcmp(mime_type_for("plot.PNG"), "image/png") == 0);
	CHECK(strcmp(mime_type_for("a/b.c/data.csv"), "text/csv") == 0);
	CHECK(strcmp(mime_type_for("dir.png/noext"), "application/octet-stream") == 0);
}

static void checks_paths(void)
{
	char why[64];
	CHECK(archive_path_ok("data/in.csv", why, sizeof why));
	CHECK(archive_path_ok(".hidden", why, sizeof why));
	CHECK(!archive_path_ok("", why, sizeof why));
	CHECK(!archive_path_ok("/etc/passwd", why, sizeof why));
	CHECK(!archive_path_ok("../x", why, sizeof why));
	CHECK(!archive_path_ok("a/./b", why, sizeof why));
	CHECK(!archive_path_ok("a//b", why, sizeof why));
	CHECK(!archive_path_ok("dir/", why, sizeof why));
	CHECK(!archive_path_ok("bad\nname", why, sizeof why));
	char longp[300];
	memset(longp, 'a', sizeof longp);
	longp[256] = '\0';
	CHECK(!archive_path_ok(longp, why, sizeof why));
}

static void builds_the_structured_result(void)
{
	const char skipped[] = "2000000 big.bin\nnot-a-line\n12 ../evil\n5 ok.txt\n";
	struct sandbox_result r = {
		.exited = false, .signal = 9, .timed_out = true, .stdout_truncated = true,
		.out = {(uint8_t *)"out\xFF", 4, 4}, .err = {NULL, 0, 0}, .duration_ms = 12.5,
		.skipped = skipped, .skipped_len = sizeof skipped - 1,
	};
	struct file_list files = {0};
	CHECK(result_output_files(&r, 1 << 20, &files) == 0);
	CHECK(files.len == 2); /* the malformed and the unsafe lines are dropped */
	json_t *j = result_structured(&r, &files);
	CHECK(j != NULL);
	if (j) {
		CHECK(json_is_null(json_object_get(j, "exit_code")));
		CHECK(strcmp(json_string_value(json_object_get(j, "signal")), "SIGKILL") == 0);
		CHECK(json_is_true(json_object_get(j, "timed_out")));
		CHECK(strcmp(json_string_value(json_object_get(j, "stdout")), "out" FFFD) == 0);
		CHECK(strcmp(json_string_value(json_object_get(j, "stderr")), "") == 0);
		CHECK(json_is_true(json_object_get(j, "stdout_truncated")));
		CHECK(json_is_false(json_object_get(j, "stderr_truncated")));
		CHECK(json_real_value(json_object_get(j, "duration_ms")) == 12.5);
		json_t *f = json_array_get(json_object_get(j, "files"), 0);
		CHECK(strcmp(json_string_value(json_object_get(f, "path")), "big.bin") == 0);
		CHECK(json_integer_value(json_object_get(f, "size")) == 2000000);
		CHECK(json_is_false(json_object_get(f, "returned")));
		CHECK(json_object_size(j) == 9);
	}
	json_decref(j);
	file_list_free(&files);

	struct sandbox_result ok = {.exited = true, .exit_code = 0};
	j = result_structured(&ok, NULL);
	CHECK(j && json_integer_value(json_object_get(j, "exit_code")) == 0);
	CHECK(j && json_is_null(json_object_get(j, "signal")));
	json_decref(j);
}

static void a_file_name_that_is_not_utf8_is_listed_repaired(void)
{
	struct sandbox_result r = {.exited = true};
	struct file_list files = {0};
	CHECK(file_list_add(&files, "bad\xFFname.txt", "x", 1, true) == 0);
	json_t *j = result_structured(&r, &files);
	json_t *list = json_object_get(j, "files");
	CHECK(json_array_size(list) == 1);
	const char *path = json_string_value(json_object_get(json_array_get(list, 0), "path"));
	CHECK(path && strcmp(path, "bad" FFFD "name.txt") == 0);
	json_decref(j);
	file_list_free(&files);
}

int main(void)
{
	TEST(repairs_invalid_utf8);
	TEST(names_signals_and_types);
	TEST(checks_paths);
	TEST(builds_the_structured_result);
	TEST(a_file_name_that_is_not_utf8_is_listed_repaired);
	return TEST_EXIT_STATUS();
}
