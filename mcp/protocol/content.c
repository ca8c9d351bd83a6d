/* execute_code's CallToolResult (see protocol.h). */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

struct text {
	char *data;
	size_t len, cap;
	bool failed;
};

static void text_append(struct text *t, const char *s, size_t n)
{
	if (t->failed)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 4096;
		while (cap < t->len + n + 1)
			cap *= 2;
		char *p = realloc(t->data, cap);
		if (!p) {
			t->failed = true;
			return;
		}
		t->data = p;
		t->cap = cap;
	}
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
}

static void text_append_utf8(struct text *t, const struct byte_buffer *b)
{
	size_t len;
	char *s = utf8_sanitize(b->data ? b->data : (const uint8_t *)"", b->len, &len);
	if (!s) {
		t->failed = true;
		return;
	}
	text_append(t, s, len);
	free(s);
}

static void text_line(struct text *t, const char *line)
{
	if (t->len > 0 && t->data[t->len - 1] != '\n')
		text_append(t, "\n", 1);
	text_append(t, line, strlen(line));
}

static bool clean_exit(const struct sandbox_result *r)
{
	return r->exited && r->exit_code == 0 && !r->timed_out;
}

/* Why the program did not run: the install's output, or the pre-scan's findings. */
static void not_run_text(struct text *t, const struct sandbox_result *r)
{
	if (r->installed && !r->install_ok) {
		text_line(t, "[the packages could not be installed; the program did not run]\n");
		text_append_utf8(t, &r->install_log);
		return;
	}
	text_line(t, "[refused by the pre-scan (--scan deny); the program did not run]\n");
	json_t *advisories = result_advisories(r), *a;
	size_t i;
	json_array_foreach(advisories, i, a)
	{
		char line[600];
		snprintf(line, sizeof line, "line %lld: %s (%s)\n",
			 (long long)json_integer_value(json_object_get(a, "line")),
			 json_string_value(json_object_get(a, "message")),
			 json_string_value(json_object_get(a, "rule")));
		text_append(t, line, strlen(line));
	}
	json_decref(advisories);
}

/* stdout, then stderr under [stderr], then one status line when not a clean, complete exit 0. */
static json_t *readable_text(const struct sandbox_result *r, double timeout_s)
{
	struct text t = {0};
	if (r->not_run) {
		not_run_text(&t, r);
		json_t *block = t.failed ? NULL
					 : json_pack("{s:s, s:s%}", "type", "text", "text", t.data, t.len);
		free(t.data);
		return block;
	}
	text_append_utf8(&t, &r->out);
	if (r->err.len) {
		text_line(&t, "[stderr]\n");
		text_append_utf8(&t, &r->err);
	}
	char status[128] = "";
	if (r->timed_out)
		snprintf(status, sizeof status, "[timed out after %g s]", timeout_s);
	else if (r->signal) {
		char name[32];
		snprintf(status, sizeof status, "[signal %s]", signal_name(r->signal, name, sizeof name));
	} else if (r->exited && r->exit_code != 0)
		snprintf(status, sizeof status, "[exit code %d]", r->exit_code);
	if (status[0])
		text_line(&t, status);
	if (r->stdout_truncated || r->stderr_truncated)
		text_line(&t, "[output truncated]");
	if (t.len == 0)
		text_append(&t, "[no output]", 11);
	json_t *block = t.failed ? NULL : json_pack("{s:s, s:s%}", "type", "text", "text", t.data, t.len);
	free(t.data);
	return block;
}

static bool is_image(const char *mime)
{
	return !strcmp(mime, "image/png") || !strcmp(mime, "image/jpeg") || !strcmp(mime, "image/gif");
}

static bool utf8_valid(const uint8_t *data, size_t len)
{
	size_t out_len;
	char *s = utf8_sanitize(data, len, &out_len);
	bool ok = s && out_len == len && memcmp(s, data, len) == 0;
	free(s);
	return ok;
}

/* airlock://out/<path>, with every byte outside RFC 3986's unreserved set (and '/') escaped. */
static char *out_uri(const char *path)
{
	static const char prefix[] = "airlock://out/";
	char *uri = malloc(sizeof prefix + strlen(path) * 3);
	if (!uri)
		return NULL;
	char *o = uri + sprintf(uri, "%s", prefix);
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~/", *p))
			*o++ = (char)*p;
		else
			o += sprintf(o, "%%%02X", *p);
	}
	*o = '\0';
	return uri;
}

static json_t *file_block(const struct file_entry *f)
{
	const char *mime = mime_type_for(f->path);
	if (is_image(mime)) {
		char *b64 = base64_encode(f->data, f->size);
		json_t *block = b64 ? json_pack("{s:s, s:s, s:s}", "type", "image", "data", b64,
						"mimeType", mime)
				    : NULL;
		free(b64);
		return block;
	}
	char *uri = out_uri(f->path);
	if (!uri)
		return NULL;
	json_t *resource;
	if (utf8_valid(f->data, f->size)) {
		resource = json_pack("{s:s, s:s, s:s%}", "uri", uri, "mimeType", mime, "text",
				     (const char *)f->data, f->size);
	} else {
		char *b64 = base64_encode(f->data, f->size);
		resource = b64 ? json_pack("{s:s, s:s, s:s}", "uri", uri, "mimeType", mime, "blob",
					   b64)
			       : NULL;
		free(b64);
	}
	free(uri);
	return resource ? json_pack("{s:s, s:o}", "type", "resource", "resource", resource) : NULL;
}

json_t *content_run_result(const struct sandbox_result *r, const struct file_list *files,
			   double timeout_s, json_t *extra)
{
	json_t *structured = result_structured(r, files);
	if (structured && extra)
		json_object_update(structured, extra);
	json_t *content = json_array();
	json_t *text = readable_text(r, timeout_s);
	if (!structured || !content || !text) {
		json_decref(structured);
		json_decref(content);
		json_decref(text);
		return NULL;
	}
	json_array_append_new(content, text);
	for (int pass = 0; pass < 2; pass++) /* images first, then the other files */
		for (size_t i = 0; files && i < files->len; i++) {
			const struct file_entry *f = &files->items[i];
			if (f->returned && is_image(mime_type_for(f->path)) == (pass == 0))
				json_array_append_new(content, file_block(f));
		}
	/* The spec's backwards-compatibility text block, without sending the output twice. */
	json_t *summary = json_deep_copy(structured);
	json_object_del(summary, "stdout");
	json_object_del(summary, "stderr");
	char *summary_text = json_dumps(summary, JSON_COMPACT | JSON_REAL_PRECISION(12));
	json_decref(summary);
	json_array_append_new(content, json_pack("{s:s, s:s}", "type", "text", "text",
						 summary_text ? summary_text : "{}"));
	free(summary_text);
	return json_pack("{s:o, s:o, s:b}", "content", content, "structuredContent", structured,
			 "isError", !clean_exit(r));
}

json_t *content_error(const char *fmt, ...)
{
	/* The reason may quote the guest (its error, its serial log) or a cut of the caller's
	 * text: made UTF-8 here, or json_pack would fail and the call get no useful answer. */
	char raw[4096], text[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);
	rpc_excerpt(text, sizeof text, raw);
	return json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", text, "isError",
			 1);
}
