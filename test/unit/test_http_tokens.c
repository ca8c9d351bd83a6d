/* The token file of `airlock mcp --http` and the bearer check: labels, bare tokens, what is
 * refused at start (short, duplicated, unlabelled junk), and that only a whole, exact token
 * matches. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "check.h"

static int load(const char *text, struct token **out, char *err, size_t err_len)
{
	char path[] = "/tmp/airlock-test-tokens-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	int n = tokens_load(path, out, err, err_len);
	unlink(path);
	return n;
}

static void labels_and_bare_tokens_are_read(void)
{
	struct token *t = NULL;
	char err[256];
	int n = load("# team tokens\n\nalice:0123456789abcdef\n  fedcba9876543210xyz  \n"
		     "ci.bot-1:ABCDEFGHIJKLMNOP:with:colons\n",
		     &t, err, sizeof err);
	CHECK(n == 3);
	if (n == 3) {
		CHECK(strcmp(t[0].label, "alice") == 0);
		CHECK(strcmp(t[0].secret, "0123456789abcdef") == 0);
		CHECK(strcmp(t[1].label, "token-2") == 0); /* named by its place */
		CHECK(strcmp(t[1].secret, "fedcba9876543210xyz") == 0);
		CHECK(strcmp(t[2].label, "ci.bot-1") == 0); /* the first colon splits */
		CHECK(strcmp(t[2].secret, "ABCDEFGHIJKLMNOP:with:colons") == 0);
	}
	free(t);
}

static void weak_or_ambiguous_files_are_refused(void)
{
	struct token *t = NULL;
	char err[256];
	CHECK(load("alice:short\n", &t, err, sizeof err) < 0);
	CHECK(strstr(err, "line 1") != NULL);
	CHECK(load("\n# nothing\n", &t, err, sizeof err) < 0);
	CHECK(load("a:0123456789abcdef\nb:0123456789abcdef\n", &t, err, sizeof err) < 0);
	CHECK(load("a:0123456789abcdef\na:0123456789abcdeg\n", &t, err, sizeof err) < 0);
	CHECK(load("bad label:0123456789abcdef\n", &t, err, sizeof err) < 0);
	CHECK(load("a:0123456789abcdef ghij\n", &t, err, sizeof err) < 0); /* a space inside */
	CHECK(tokens_load("/nonexistent/tokens", &t, err, sizeof err) == -ENOENT);
}

static void only_a_whole_exact_token_matches(void)
{
	struct token *t = NULL;
	char err[256];
	int n = load("a:0123456789abcdef\nb:ffffffffffffffffffff\n", &t, err, sizeof err);
	CHECK(n == 2);
	if (n != 2)
		return;
	CHECK(tokens_match(t, n, "Bearer 0123456789abcdef") == 0);
	CHECK(tokens_match(t, n, "bearer ffffffffffffffffffff") == 1); /* the scheme is any case */
	CHECK(tokens_match(t, n, "Bearer 0123456789abcde") == -1);      /* a prefix */
	CHECK(tokens_match(t, n, "Bearer 0123456789abcdefX") == -1);    /* longer */
	CHECK(tokens_match(t, n, "Basic 0123456789abcdef") == -1);
	CHECK(tokens_match(t, n, "0123456789abcdef") == -1);
	CHECK(tokens_match(t, n, "") == -1);
	CHECK(tokens_match(t, n, "Bearer ") == -1);
	char huge[600];
	memset(huge, 'f', sizeof huge - 1);
	huge[sizeof huge - 1] = '\0';
	memcpy(huge, "Bearer ", 7);
	CHECK(tokens_match(t, n, huge) == -1);
	free(t);
}

int main(void)
{
	TEST(labels_and_bare_tokens_are_read);
	TEST(weak_or_ambiguous_files_are_refused);
	TEST(only_a_whole_exact_token_matches);
	return TEST_EXIT_STATUS();
}
