/* Image recipes (recipe.h): read, check every word, normalize into derived.sh's steps. A recipe
 * is the operator's, not a guest's, but it becomes arguments of a root shell script that runs
 * apt, pip and npm: every word is checked against a narrow character set (no blanks, quotes or
 * shell syntax, never a leading '-' that a tool would take for an option), and every local path
 * stays inside the recipe's folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recipe.h"

#define LINE_MAX_BYTES 1024
#define WORD_MAX_BYTES 512

/* A growing list of words joined by single spaces, bounded by the recipe's own size. */
struct words {
	char text[RECIPE_MAX_BYTES + 1];
	size_t used;
	unsigned count;
};

static void words_add(struct words *w, const char *word)
{
	size_t len = strlen(word);
	if (w->used + len + 2 > sizeof w->text)
		return; /* cannot happen: the words come from a recipe of at most the same size */
	if (w->used)
		w->text[w->used++] = ' ';
	memcpy(w->text + w->used, word, len + 1);
	w->used += len;
	w->count++;
}

static bool chars_in(const char *s, const char *allowed)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr(allowed, *s)))
			return false;
	return true;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool recipe_name_valid(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > RECIPE_NAME_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

/* Debian policy's package name, optionally =VERSION */
static bool valid_apt(const char *s)
{
	const char *eq = strchr(s, '=');
	size_t name_len = eq ? (size_t)(eq - s) : strlen(s);
	if (name_len < 2 || name_len > 128 || !is_alnum(s[0]))
		return false;
	for (size_t i = 0; i < name_len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      strchr("+.-", s[i])))
			return false;
	return !eq || (eq[1] && strlen(eq) <= 128 && chars_in(eq + 1, ".+~:-"));
}

static bool valid_pip(const char *s)
{
	return is_alnum(s[0]) && strlen(s) <= 200 && chars_in(s, "._-[],=<>!~*");
}

static bool valid_url(const char *s)
{
	size_t len = strlen(s);
	bool scheme = strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
	return scheme && len <= WORD_MAX_BYTES && len > 8 && chars_in(s, "._~:/?#@!&*+,;=%-");
}

/* A path relative to the recipe's folder that cannot leave it: no leading '/', no '..'. */
static bool valid_relative(const char *s)
{
	if (!*s || *s == '/' || *s == '-' || strlen(s) > 256 || !chars_in(s, "._/+@=-"))
		return false;
	for (const char *p = s; p; p = strchr(p, '/')) {
		if (*p == '/')
			p++;
		if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
			return false;
	}
	return true;
}

static bool valid_npm(const char *s)
{
	if (strncmp(s, "./", 2) == 0)
		return valid_relative(s + 2);
	return (is_alnum(s[0]) || s[0] == '@') && strlen(s) <= 214 && chars_in(s, "@._/~^:=<>*+-");
}

/* Where a copied file may go: an absolute path, not one that is mounted over in every VM. */
static const char *bad_destination(const char *s)
{
	static const char *const mounted[] = {"/proc", "/sys", "/dev", "/run", "/tmp", "/work"};
	if (s[0] != '/' || !valid_relative(s + 1))
		return "an absolute path without '..', blanks or quotes";
	for (size_t i = 0; i < sizeof mounted / sizeof mounted[0]; i++) {
		size_t len = strlen(mounted[i]);
		if (strncmp(s, mounted[i], len) == 0 && (s[len] == '\0' || s[len] == '/'))
			return "a path outside /proc, /sys, /dev, /run, /tmp and /work (each VM "
			       "mounts its own there)";
	}
	return NULL;
}

static int fail(char *err, size_t err_len, unsigned line, const char *fmt, ...)
{
	int n = line ? snprintf(err, err_len, "recipe line %u: ", line) : 0;
	size_t used = n > 0 && (size_t)n < err_len ? (size_t)n : 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + used, err_len - used, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int add_source(struct recipe *r, const char *path, int check, char *err, size_t err_len,
		      unsigned line)
{
	if (r->n_sources >= RECIPE_MAX_SOURCES)
		return fail(err, err_len, line, "more than %d local files", RECIPE_MAX_SOURCES);
	if (check) {
		char full[PATH_MAX];
		struct stat st;
		int n = snprintf(full, sizeof full, "%s/%s", r->dir, path);
		if (n < 0 || (size_t)n >= sizeof full)
			return fail(err, err_len, line, "path too long: %s", path);
		if (lstat(full, &st) != 0)
			return fail(err, err_len, line, "%s: %s", full, strerror(errno));
		if (S_ISLNK(st.st_mode))
			return fail(err, err_len, line, "%s is a symbolic link; name what it points "
					"to", full);
	}
	r->sources[r->n_sources] = strdup(path);
	if (!r->sources[r->n_sources])
		return -ENOMEM;
	r->n_sources++;
	return 0;
}

static int add_step(struct recipe *r, const char *fmt, ...)
{
	if (r->n_steps >= RECIPE_MAX_STEPS)
		return -E2BIG;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&r->steps[r->n_steps], fmt, ap);
	va_end(ap);
	if (n < 0) {
		r->steps[r->n_steps] = NULL;
		return -ENOMEM;
	}
	r->n_steps++;
	return 0;
}

/* Everything the lines say, gathered before the steps are made (their order is fixed: apt, pip,
 * npm, then the copies, whatever the recipe's order). */
struct parsed {
	struct words apt, pip, npm, copies;
	char pip_wheels[WORD_MAX_BYTES + 1], pip_index[WORD_MAX_BYTES + 1];
	char npm_registry[WORD_MAX_BYTES + 1];
	unsigned name_line, pip_line, wheels_line, index_line;
};

static void append(char *out, size_t len, const char *what, const struct words *w)
{
	if (!w->count)
		return;
	size_t used = strlen(out);
	snprintf(out + used, len - used, "%s%s: %s", used ? "; " : "", what, w->text);
}

/* One line's words (at most a line's worth), the directive first. */
static int parse_line(struct recipe *r, struct parsed *p, char **word, unsigned n, unsigned line,
		      int check, char *err, size_t err_len)
{
	const char *d = word[0];
	if (!strcmp(d, "name")) {
		if (n != 2 || !recipe_name_valid(word[1]))
			return fail(err, err_len, line, "name takes one word: a-z first, then "
					"a-z, 0-9 or '-', at most %d", RECIPE_NAME_MAX);
		if (p->name_line)
			return fail(err, err_len, line, "a second name (the first is on line %u)",
				    p->name_line);
		p->name_line = line;
		snprintf(r->name, sizeof r->name, "%s", word[1]);
		return 0;
	}
	if (!strcmp(d, "pip-wheels") || !strcmp(d, "pip-index") || !strcmp(d, "npm-registry")) {
		bool wheels = !strcmp(d, "pip-wheels");
		char *slot = wheels ? p->pip_wheels : !strcmp(d, "pip-index") ? p->pip_index
									  : p->npm_registry;
		if (n != 2 || (wheels ? !valid_relative(word[1]) : !valid_url(word[1])))
			return fail(err, err_len, line, "%s takes one %s", d,
				    wheels ? "folder beside the recipe (no '..', blanks or quotes)"
					   : "http:// or https:// URL (no blanks or quotes)");
		if (*slot)
			return fail(err, err_len, line, "a second %s", d);
		snprintf(slot, WORD_MAX_BYTES + 1, "%s", word[1]);
		if (wheels) {
			p->wheels_line = line;
			return add_source(r, word[1], check, err, err_len, line);
		}
		if (!strcmp(d, "pip-index"))
			p->index_line = line;
		return 0;
	}
	if (!strcmp(d, "copy")) {
		const char *why = n == 3 ? bad_destination(word[2]) : NULL;
		if (n != 3 || !valid_relative(word[1]))
			return fail(err, err_len, line, "copy takes a file or folder beside the "
					"recipe (no '..', blanks or quotes) and where it goes");
		if (why)
			return fail(err, err_len, line, "copy's destination %s must be %s", word[2],
				    why);
		char pair[2 * 260];
		snprintf(pair, sizeof pair, "%s %s", word[1], word[2]);
		words_add(&p->copies, pair);
		return add_source(r, word[1], check, err, err_len, line);
	}
	struct words *list = !strcmp(d, "apt") ? &p->apt : !strcmp(d, "pip") ? &p->pip
						 : !strcmp(d, "npm")   ? &p->npm
								       : NULL;
	if (!list)
		return fail(err, err_len, line, "unknown directive '%.40s' (name, apt, pip, "
				"pip-wheels, pip-index, npm, npm-registry, copy)", d);
	if (n < 2)
		return fail(err, err_len, line, "%s needs at least one package", d);
	for (unsigned i = 1; i < n; i++) {
		bool ok = list == &p->apt ? valid_apt(word[i])
			: list == &p->pip ? valid_pip(word[i])
					  : valid_npm(word[i]);
		if (!ok)
			return fail(err, err_len, line, "'%.80s' is not a %s", word[i],
				    list == &p->apt ? "Debian package name (name or name=version)"
				    : list == &p->pip
					    ? "pip requirement without blanks (name, name==1.2, "
					      "name[extra]>=1)"
					    : "npm package spec without blanks (name, name@1.2, "
					      "@scope/name, ./file.tgz)");
		if (list == &p->npm && !strncmp(word[i], "./", 2)) {
			int rc = add_source(r, word[i] + 2, check, err, err_len, line);
			if (rc)
				return rc;
		}
		words_add(list, word[i]);
	}
	if (list == &p->pip && !p->pip_line)
		p->pip_line = line;
	return 0;
}

static int make_steps(struct recipe *r, const struct parsed *p, char *err, size_t err_len)
{
	if (!p->name_line)
		return fail(err, err_len, 0, "the recipe has no name line (name NAME)");
	if (!p->apt.count && !p->pip.count && !p->npm.count && !p->copies.count)
		return fail(err, err_len, 0, "the recipe adds nothing (apt, pip, npm or copy)");
	if (p->pip.count && !*p->pip_wheels == !*p->pip_index)
		return fail(err, err_len, p->pip_line, "pip needs exactly one source: pip-wheels "
				"FOLDER or pip-index URL");
	if (!p->pip.count && (p->wheels_line || p->index_line))
		return fail(err, err_len, p->wheels_line ? p->wheels_line : p->index_line,
			    "a pip source without pip requirements");
	int rc = 0;
	if (p->apt.count)
		rc = add_step(r, "apt %s", p->apt.text);
	if (!rc && p->pip.count)
		rc = add_step(r, "pip %s %s %s", *p->pip_wheels ? "wheels" : "index",
			      *p->pip_wheels ? p->pip_wheels : p->pip_index, p->pip.text);
	if (!rc && p->npm.count)
		rc = add_step(r, "npm %s %s", *p->npm_registry ? p->npm_registry : "-", p->npm.text);
	/* the copies, one step each: "SRC DEST" pairs, in the recipe's order */
	char copies[sizeof p->copies.text];
	memcpy(copies, p->copies.text, sizeof copies);
	char *save = NULL;
	for (char *src = strtok_r(copies, " ", &save); !rc && src;
	     src = strtok_r(NULL, " ", &save)) {
		const char *dest = strtok_r(NULL, " ", &save);
		rc = add_step(r, "copy %s %s", src, dest);
	}
	if (rc)
		return rc == -E2BIG ? fail(err, err_len, 0, "more than %d steps", RECIPE_MAX_STEPS)
				    : rc;
	append(r->contents, sizeof r->contents, "Debian packages", &p->apt);
	append(r->contents, sizeof r->contents, "Python packages", &p->pip);
	append(r->contents, sizeof r->contents, "npm packages", &p->npm);
	struct words files = {.used = 0};
	for (unsigned i = 1; i < r->n_steps + 1; i++) {
		const char *s = r->steps[i - 1];
		if (!strncmp(s, "copy ", 5))
			words_add(&files, strchr(s + 5, ' ') + 1);
	}
	append(r->contents, sizeof r->contents, "files", &files);
	return 0;
}

int recipe_parse(struct recipe *r, const char *text, size_t len, const char *dir,
		 int check_sources, char *err, size_t err_len)
{
	memset(r, 0, sizeof *r);
	snprintf(r->dir, sizeof r->dir, "%s", dir);
	if (len > RECIPE_MAX_BYTES)
		return fail(err, err_len, 0, "the recipe is over %u bytes", RECIPE_MAX_BYTES);
	if (memchr(text, '\0', len))
		return fail(err, err_len, 0, "the recipe holds a NUL byte");
	struct parsed *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	int rc = 0;
	unsigned line = 0;
	for (size_t at = 0; at < len && rc == 0;) {
		const char *end = memchr(text + at, '\n', len - at);
		size_t n = end ? (size_t)(end - (text + at)) : len - at;
		line++;
		if (n >= LINE_MAX_BYTES) {
			rc = fail(err, err_len, line, "longer than %d bytes", LINE_MAX_BYTES - 1);
			break;
		}
		char buf[LINE_MAX_BYTES];
		memcpy(buf, text + at, n);
		buf[n] = '\0';
		at += n + 1;
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = '\0';
		char *word[LINE_MAX_BYTES / 2];
		unsigned words = 0;
		char *save = NULL;
		for (char *w = strtok_r(buf, " \t\r", &save); w; w = strtok_r(NULL, " \t\r", &save))
			word[words++] = w;
		for (unsigned i = 0; i < words && rc == 0; i++)
			if (strlen(word[i]) > WORD_MAX_BYTES)
				rc = fail(err, err_len, line, "a word over %d bytes", WORD_MAX_BYTES);
		if (rc == 0 && words)
			rc = parse_line(r, p, word, words, line, check_sources, err, err_len);
	}
	if (rc == 0)
		rc = make_steps(r, p, err, err_len);
	free(p);
	if (rc) {
		recipe_free(r);
		if (rc == -ENOMEM)
			snprintf(err, err_len, "out of memory reading the recipe");
	}
	return rc;
}

int recipe_read(struct recipe *r, const char *path, char *err, size_t err_len)
{
	memset(r, 0, sizeof *r);
	char resolved[PATH_MAX];
	int fd = realpath(path, resolved) ? open(resolved, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, err_len, "cannot read the recipe %s: %s", path, strerror(-rc));
		return rc;
	}
	char *text = malloc(RECIPE_MAX_BYTES + 1);
	size_t len = 0;
	ssize_t n = 0;
	while (text && len <= RECIPE_MAX_BYTES &&
	       (n = read(fd, text + len, RECIPE_MAX_BYTES + 1 - len)) > 0)
		len += (size_t)n;
	int saved = errno;
	close(fd);
	if (!text || n < 0) {
		free(text);
		snprintf(err, err_len, "cannot read the recipe %s: %s", path,
			 text ? strerror(saved) : "out of memory");
		return text ? -saved : -ENOMEM;
	}
	*strrchr(resolved, '/') = '\0'; /* realpath's result is absolute: a '/' is there */
	char msg[512];
	int rc = recipe_parse(r, text, len, *resolved ? resolved : "/", 1, msg, sizeof msg);
	free(text);
	if (rc)
		snprintf(err, err_len, "%s: %s", path, msg);
	return rc;
}

void recipe_free(struct recipe *r)
{
	for (unsigned i = 0; i < r->n_steps; i++)
		free(r->steps[i]);
	for (unsigned i = 0; i < r->n_sources; i++)
		free(r->sources[i]);
	r->n_steps = r->n_sources = 0;
}
