/* What progress notifications show of a running program's output (protocol/output_tail.c): lines
 * split across pieces, stderr marked, only what is new, the newest lines when many came, long
 * lines cut, and bytes that are not UTF-8. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "protocol.h"

static void add(struct output_tail *t, uint32_t stream, const char *s)
{
	output_tail_add(t, stream, (const uint8_t *)s, strlen(s));
}

static int takes(struct output_tail *t, const char *want)
{
	char out[4096];
	int ok = output_tail_take(t, out, sizeof out) == 0 && strcmp(out, want) == 0;
	if (!ok)
		fprintf(stderr, "got \"%s\", want \"%s\"\n", out, want);
	return ok;
}

static void shows_complete_lines_once_stderr_marked(void)
{
	struct output_tail *t = calloc(1, sizeof *t);
	add(t, AL_STREAM_STDOUT, "hel");
	CHECK(takes(t, "")); /* no line complete yet */
	add(t, AL_STREAM_STDOUT, "lo\nwor");
	add(t, AL_STREAM_STDERR, "oops\n");
	CHECK(takes(t, "hello\n[stderr] oops\n"));
	CHECK(takes(t, "")); /* shown once */
	add(t, AL_STREAM_STDOUT, "ld\n");
	CHECK(takes(t, "world\n"));
	CHECK(t->bytes[0] == 12 && t->bytes[1] == 5);
	free(t);
}

static void keeps_the_newest_lines_and_counts_the_rest(void)
{
	struct output_tail *t = calloc(1, sizeof *t);
	char want[1024] = "(5 earlier lines not shown)\n";
	for (int i = 0; i < OUTPUT_TAIL_LINES + 5; i++) {
		char line[16];
		snprintf(line, sizeof line, "%d\n", i);
		add(t, AL_STREAM_STDOUT, line);
		if (i >= 5)
			strcat(want, line);
	}
	CHECK(takes(t, want));
	free(t);
}

static void cuts_long_lines_and_repairs_utf8(void)
{
	struct output_tail *t = calloc(1, sizeof *t);
	char *longer = malloc(OUTPUT_TAIL_LINE_MAX * 3);
	memset(longer, 'x', OUTPUT_TAIL_LINE_MAX * 3 - 1);
	longer[OUTPUT_TAIL_LINE_MAX * 3 - 2] = '\n';
	longer[OUTPUT_TAIL_LINE_MAX * 3 - 1] = '\0';
	add(t, AL_STREAM_STDOUT, longer);
	char want[OUTPUT_TAIL_LINE_MAX + 16];
	memset(want, 'x', OUTPUT_TAIL_LINE_MAX);
	strcpy(want + OUTPUT_TAIL_LINE_MAX, " [...]\n");
	CHECK(takes(t, want));
	add(t, AL_STREAM_STDOUT, "caf\xC3"); /* a character split across pieces */
	add(t, AL_STREAM_STDOUT, "\xA9 \xFF\n");
	CHECK(takes(t, "caf\xC3\xA9 \xEF\xBF\xBD\n"));
	free(longer);
	free(t);
}

static void a_small_buffer_ends_on_a_whole_character(void)
{
	struct output_tail *t = calloc(1, sizeof *t);
	add(t, AL_STREAM_STDOUT, "ab\xE2\x82\xAC\n");
	char out[5]; /* "ab" and 2 of the euro sign's 3 bytes would fit */
	CHECK(output_tail_take(t, out, sizeof out) == 0 && strcmp(out, "ab") == 0);
	free(t);
}

int main(void)
{
	TEST(shows_complete_lines_once_stderr_marked);
	TEST(keeps_the_newest_lines_and_counts_the_rest);
	TEST(cuts_long_lines_and_repairs_utf8);
	TEST(a_small_buffer_ends_on_a_whole_character);
	return TEST_EXIT_STATUS();
}
