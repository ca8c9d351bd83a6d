/* The token file of `airlock mcp --http --token-file F`, and the check of a request's bearer
 * token against it. Every token is compared whole and in constant time (CRYPTO_memcmp), so
 * neither the time taken nor which token matched leaks how much of a guess was right.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "http.h"

static bool label_ok(const char *s, size_t len)
{
	if (len == 0 || len >= CLIENT_LABEL_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-@", s[i]))
			return false;
	return true;
}

static bool secret_ok(const char *s, size_t len)
{
	if (len < TOKEN_MIN_LEN || len > TOKEN_MAX_LEN)
		return false;
	for (size_t i = 0; i < len; i++) /* what an Authorization header can carry as one word */
		if (s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return true;
}

int tokens_load(const char *path, struct token **out, char *err, size_t err_len)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		int rc = -errno;
		snprintf(err, err_len, "--token-file %s: %s", path, strerror(errno));
		return rc;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		fprintf(stderr, "airlock: warning: %s is readable by other users (chmod 600 it)\n",
			path);
	struct token *tokens = calloc(TOKENS_MAX, sizeof *tokens);
	char line[1024];
	int n = 0, lineno = 0, rc = 0;
	while (tokens && fgets(line, sizeof line, f)) {
		lineno++;
		size_t len = strlen(line);
		if (len == sizeof line - 1 && line[len - 1] != '\n') {
			snprintf(err, err_len, "--token-file %s line %d: longer than a token may be",
				 path, lineno);
			rc = -EINVAL;
			break;
		}
		while (len > 0 && isspace((unsigned char)line[len - 1]))
			line[--len] = '\0';
		char *s = line;
		while (isspace((unsigned char)*s))
			s++;
		if (*s == '\0' || *s == '#')
			continue;
		if (n == TOKENS_MAX) {
			snprintf(err, err_len, "--token-file %s: more than %d tokens", path,
				 TOKENS_MAX);
			rc = -E2BIG;
			break;
		}
		struct token *t = &tokens[n];
		char *colon = strchr(s, ':');
		const char *secret = colon ? colon + 1 : s;
		if (colon && !label_ok(s, (size_t)(colon - s))) {
			snprintf(err, err_len, "--token-file %s line %d: a label is 1-%d letters, "
					       "digits or ._-@",
				 path, lineno, CLIENT_LABEL_MAX - 1);
			rc = -EINVAL;
			break;
		}
		if (!secret_ok(secret, strlen(secret))) {
			snprintf(err, err_len, "--token-file %s line %d: a token is %d-%d printable "
					       "characters without spaces",
				 path, lineno, TOKEN_MIN_LEN, TOKEN_MAX_LEN);
			rc = -EINVAL;
			break;
		}
		if (colon)
			snprintf(t->label, sizeof t->label, "%.*s", (int)(colon - s), s);
		else
			snprintf(t->label, sizeof t->label, "token-%d", n + 1);
		t->secret_len = strlen(secret);
		memcpy(t->secret, secret, t->secret_len + 1);
		for (int i = 0; i < n; i++) {
			if (strcmp(tokens[i].label, t->label) == 0 ||
			    strcmp(tokens[i].secret, t->secret) == 0) {
				snprintf(err, err_len, "--token-file %s line %d: the same label or "
						       "token twice",
					 path, lineno);
				rc = -EINVAL;
			}
		}
		if (rc)
			break;
		n++;
	}
	fclose(f);
	if (!tokens) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	if (rc == 0 && n == 0) {
		snprintf(err, err_len, "--token-file %s: no token in it", path);
		rc = -EINVAL;
	}
	if (rc) {
		explicit_bzero(tokens, TOKENS_MAX * sizeof *tokens);
		free(tokens);
		return rc;
	}
	*out = tokens;
	return n;
}

int tokens_match(const struct token *tokens, int n, const char *authorization)
{
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return -1;
	const char *given = authorization + 7;
	while (*given == ' ')
		given++;
	size_t len = strlen(given);
	if (len > TOKEN_MAX_LEN)
		return -1;
	/* the guess padded to the longest token's size: every comparison reads as many bytes */
	char padded[TOKEN_MAX_LEN + 1] = {0};
	memcpy(padded, given, len);
	int found = -1;
	for (int i = 0; i < n; i++) {
		char secret[TOKEN_MAX_LEN + 1] = {0};
		memcpy(secret, tokens[i].secret, tokens[i].secret_len);
		int same = CRYPTO_memcmp(padded, secret, sizeof padded) == 0 &&
			   len == tokens[i].secret_len;
		found = same ? i : found;
	}
	return found;
}
