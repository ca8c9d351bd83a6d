/* The structured result of a run (see protocol.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol.h"

const char *signal_name(int signal, char *buf, size_t buf_len)
{
	const char *abbrev = sigabbrev_np(signal);
	if (abbrev)
		snprintf(buf, buf_len, "SIG%s", abbrev);
	else
		snprintf(buf, buf_len, "SIG%d", signal);
	return buf;
}

const char *mime_type_for(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{"png", "image/png"},        {"jpg", "image/jpeg"},        {"jpeg", "image/jpeg"},
		{"gif", "image/gif"},        {"svg", "image/svg+xml"},     {"webp", "image/webp"},
		{"txt", "text/plain"},       {"log", "text/plain"},        {"md", "text/markdown"},
		{"csv", "text/csv"},         {"tsv", "text/tab-separated-values"},
		{"json", "application/json"}, {"html", "text/html"},       {"htm", "text/html"},
		{"xml", "application/xml"},  {"pdf", "application/pdf"},   {"py", "text/x-python"},
		{"js", "text/javascript"},   {"sh", "text/x-shellscript"}, {"yaml", "application/yaml"},
		{"yml", "application/yaml"}, {"zip", "application/zip"},   {"gz", "application/gzip"},
	};
	const char *slash = strrchr(path, '/');
	const char *dot = strrchr(slash ? slash : path, '.');
	if (dot)
		for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
			if (strcasecmp(dot + 1, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

int result_output_files(const struct sandbox_result *r, uint64_t cap, struct file_list *files)
{
	/* The guest applies the cap; the host does not rely on it. */
	if (r->files_len) {
		int rc = archive_unpack(r->files_tar, r->files_len, RESULT_MAX_FILES, cap, files);
		if (rc)
			return rc;
	}
	/* "SIZE PATH\n" lines from the guest: parse defensively */
	const char *p = r->skipped, *end = r->skipped ? r->skipped + r->skipped_len : NULL;
	while (p && p < end && files->len < RESULT_MAX_FILES) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		char line[ARCHIVE_MAX_PATH + 32];
		size_t n = (size_t)(nl - p);
		if (n < sizeof line) {
			memcpy(line, p, n);
			line[n] = '\0';
			char *space = strchr(line, ' ');
			char *num_end;
			unsigned long long size = strtoull(line, &num_end, 10);
			char why[64];
			if (space && num_end == space && archive_path_ok(space + 1, why, sizeof why)) {
				int rc = file_list_add(files, space + 1, NULL, 0, false);
				if (rc)
					return rc;
				files->items[files->len - 1].size = (size_t)size;
			}
		}
		p = nl + 1;
	}
	return 0;
}

static json_t *utf8_json_string(const struct byte_buffer *b)
{
	size_t len;
	char *s = utf8_sanitize(b->data ? b->data : (const uint8_t *)"", b->len, &len);
	if (!s)
		return NULL;
	json_t *j = json_stringn_nocheck(s, len);
	free(s);
	return j;
}

json_t *result_structured(const struct sandbox_result *r, const struct file_list *files)
{
	char sig[32];
	json_t *list = json_array();
	for (size_t i = 0; list && files && i < files->len; i++) {
		const struct file_entry *f = &files->items[i];
		/* the guest names its files: bytes that are not UTF-8 become U+FFFD, rather than
		 * the file going missing from the list */
		struct byte_buffer name = {(uint8_t *)f->path, strlen(f->path), 0};
		json_t *entry = json_pack("{s:o, s:I, s:s, s:b}", "path", utf8_json_string(&name),
					  "size", (json_int_t)f->size, "mime_type",
					  mime_type_for(f->path), "returned", f->returned);
		if (!entry || json_array_append_new(list, entry) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	json_t *out = utf8_json_string(&r->out), *err = utf8_json_string(&r->err);
	if (!list || !out || !err) {
		json_decref(list);
		json_decref(out);
		json_decref(err);
		return NULL;
	}
	json_t *obj = json_pack("{s:o, s:o, s:b, s:o, s:o, s:b, s:b, s:f, s:o}",
			 "exit_code", r->exited ? json_integer(r->exit_code) : json_null(),
			 "signal", r->signal ? json_string(signal_name(r->signal, sig, sizeof sig))
					     : json_null(),
			 "timed_out", r->timed_out, "stdout", out, "stderr", err,
			 "stdout_truncated", r->stdout_truncated, "stderr_truncated",
			 r->stderr_truncated, "duration_ms", r->duration_ms, "files", list);
	if (obj && result_add_setup_fields(r, obj) != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

json_t *result_advisories(const struct sandbox_result *r)
{
	/* the pre-scan ran in the guest: its JSON is untrusted, taken only as far as it is well
	 * formed, RESULT_MAX_ADVISORIES entries at most, each field bounded */
	json_t *list = json_array();
	json_t *doc = r->scan_output.len ? json_loadb((const char *)r->scan_output.data,
						      r->scan_output.len, 0, NULL)
					 : NULL;
	json_t *items = json_object_get(doc, "advisories"), *item;
	size_t i;
	json_array_foreach(items, i, item)
	{
		json_t *rule = json_object_get(item, "rule"), *line = json_object_get(item, "line");
		json_t *message = json_object_get(item, "message");
		if (json_array_size(list) == RESULT_MAX_ADVISORIES)
			break;
		if (!json_is_string(rule) || !json_is_integer(line) || !json_is_string(message))
			continue;
		struct byte_buffer rb = {(uint8_t *)json_string_value(rule),
					 strnlen(json_string_value(rule), 64), 0};
		struct byte_buffer mb = {(uint8_t *)json_string_value(message),
					 strnlen(json_string_value(message), 400), 0};
		json_array_append_new(list, json_pack("{s:o, s:I, s:o}", "rule", utf8_json_string(&rb),
						      "line", json_integer_value(line), "message",
						      utf8_json_string(&mb)));
	}
	json_decref(doc);
	return list;
}

int result_add_setup_fields(const struct sandbox_result *r, json_t *obj)
{
	if (r->egress) {
		json_t *network = json_array();
		for (size_t i = 0; network && i < r->network_len; i++) {
			const struct egress_attempt *a = &r->network[i];
			json_array_append_new(network,
					      json_pack("{s:s, s:i, s:b, s:s, s:I, s:I}", "host",
							a->host, "port", a->port, "allowed",
							a->allowed, "reason", a->reason, "bytes_sent",
							(json_int_t)a->bytes_sent, "bytes_received",
							(json_int_t)a->bytes_received));
		}
		if (!network || json_object_set_new(obj, "network", network) != 0)
			return -ENOMEM;
	}
	if (r->installed) {
		json_t *log = utf8_json_string(&r->install_log);
		json_t *install = log ? json_pack("{s:b, s:f, s:o}", "ok", r->install_ok,
						  "duration_ms", r->install_ms, "log", log)
				      : NULL;
		if (!install || json_object_set_new(obj, "install", install) != 0)
			return -ENOMEM;
	}
	if (r->scanned) {
		json_t *advisories = result_advisories(r);
		if (!advisories || json_object_set_new(obj, "advisories", advisories) != 0)
			return -ENOMEM;
	}
	return 0;
}
