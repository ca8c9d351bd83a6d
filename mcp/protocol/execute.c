/* The execute_code tool: checks the arguments (naming the field at fault), waits for a VM slot,
 * runs the program in a fresh VM, reports progress, and answers with the CallToolResult.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sandbox.h"
#include "protocol.h"

#define MAX_FILES 1000
#define PROGRESS_INTERVAL_MS 1000

struct execution {
	struct call *call;
	enum al_language language;
	double timeout_s;
	char *code, *stdin_data;
	size_t code_len, stdin_len;
	uint8_t *tar;
	size_t tar_len;
	char **packages;
	size_t n_packages;
	struct sandbox *sandbox;
	uv_timer_t progress;
	struct kept_call kept;   /* keep_state, state_id */
	struct output_tail tail; /* what the next progress notification shows */
	json_t *result;          /* held until the progress timer has closed */
};

static void execution_free(struct execution *e)
{
	kept_call_abandon(&e->kept);
	free(e->code);
	free(e->stdin_data);
	free(e->tar);
	for (size_t i = 0; i < e->n_packages; i++)
		free(e->packages[i]);
	free(e->packages);
	free(e);
}

/* ---- arguments ---- */

static char *copy_string(json_t *s, size_t *len)
{
	*len = json_string_length(s);
	char *copy = malloc(*len + 1);
	if (copy)
		memcpy(copy, json_string_value(s), *len + 1);
	return copy;
}

/* One `files` item into the list; why names the problem. */
static int take_file(json_t *item, size_t index, struct file_list *list, char *why, size_t why_len)
{
	const char *key;
	json_t *value;
	if (!json_is_object(item)) {
		snprintf(why, why_len, "files[%zu]: must be an object {path, content, encoding?}",
			 index);
		return -EINVAL;
	}
	json_object_foreach(item, key, value)
	{
		if (strcmp(key, "path") && strcmp(key, "content") && strcmp(key, "encoding")) {
			char quoted[RPC_EXCERPT_SIZE(64)];
			snprintf(why, why_len, "files[%zu]: unknown field '%s' (allowed: path, "
					       "content, encoding)",
				 index, rpc_excerpt(quoted, sizeof quoted, key));
			return -EINVAL;
		}
	}
	json_t *path = json_object_get(item, "path"), *content = json_object_get(item, "content");
	json_t *encoding = json_object_get(item, "encoding");
	char path_why[64];
	if (!json_is_string(path)) {
		snprintf(why, why_len, "files[%zu].path: required, a string", index);
		return -EINVAL;
	}
	if (strlen(json_string_value(path)) != json_string_length(path) ||
	    !archive_path_ok(json_string_value(path), path_why, sizeof path_why)) {
		char quoted[RPC_EXCERPT_SIZE(100)];
		snprintf(why, why_len, "files[%zu].path: '%s' %s", index,
			 rpc_excerpt(quoted, sizeof quoted, json_string_value(path)),
			 strlen(json_string_value(path)) != json_string_length(path)
				 ? "contains a NUL byte"
				 : path_why);
		return -EINVAL;
	}
	if (!json_is_string(content)) {
		snprintf(why, why_len, "files[%zu].content: required, a string", index);
		return -EINVAL;
	}
	const char *enc = encoding ? json_string_value(encoding) : "utf-8";
	if (!enc || (strcmp(enc, "utf-8") && strcmp(enc, "base64"))) {
		snprintf(why, why_len, "files[%zu].encoding: must be \"utf-8\" or \"base64\"", index);
		return -EINVAL;
	}
	if (strcmp(enc, "base64") == 0) {
		uint8_t *data;
		size_t len;
		int rc = base64_decode(json_string_value(content), json_string_length(content), &data,
				       &len);
		if (rc) {
			snprintf(why, why_len, "files[%zu].content: %s", index,
				 rc == -EINVAL ? "not valid base64" : "out of memory");
			return rc;
		}
		rc = file_list_add(list, json_string_value(path), data, len, true);
		free(data);
		return rc;
	}
	return file_list_add(list, json_string_value(path), json_string_value(content),
			     json_string_length(content), true);
}

static int take_files(json_t *files, struct execution *e, char *why, size_t why_len)
{
	if (!json_is_array(files)) {
		snprintf(why, why_len, "files: must be an array of {path, content, encoding?}");
		return -EINVAL;
	}
	if (json_array_size(files) > MAX_FILES) {
		snprintf(why, why_len, "files: at most %d files", MAX_FILES);
		return -EINVAL;
	}
	if (json_array_size(files) == 0)
		return 0;
	struct file_list list = {0};
	size_t i;
	json_t *item;
	int rc = 0;
	json_array_foreach(files, i, item)
	{
		if ((rc = take_file(item, i, &list, why, why_len)) != 0)
			break;
	}
	if (rc == 0)
		rc = archive_pack(&list, &e->tar, &e->tar_len, why, why_len);
	file_list_free(&list);
	return rc;
}

/* `packages`: strings, checked against the language and the operator's indexes. */
static int take_packages(json_t *packages, const struct sandbox_policy *policy,
			 struct execution *e, char *why, size_t why_len)
{
	if (!json_is_array(packages)) {
		snprintf(why, why_len, "packages: must be an array of strings");
		return -EINVAL;
	}
	size_t n = json_array_size(packages);
	if (n == 0)
		return 0;
	if (n > SANDBOX_MAX_PACKAGES) {
		snprintf(why, why_len, "packages: at most %d", SANDBOX_MAX_PACKAGES);
		return -EINVAL;
	}
	e->packages = calloc(n, sizeof *e->packages);
	if (!e->packages) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *item = json_array_get(packages, i);
		size_t len;
		if (!json_is_string(item) || strlen(json_string_value(item)) != json_string_length(item)) {
			snprintf(why, why_len, "packages[%zu]: must be a string", i);
			return -EINVAL;
		}
		if (!(e->packages[i] = copy_string(item, &len))) {
			snprintf(why, why_len, "out of memory");
			return -ENOMEM;
		}
		e->n_packages = i + 1;
	}
	return sandbox_packages_check(policy, e->language, (const char *const *)e->packages,
				      e->n_packages, why, why_len);
}

/* Fills e from the arguments. Returns 0, or -errno with why naming the field at fault. */
static int take_arguments(json_t *args, const struct server_config *cfg,
			  struct state_store *states, struct execution *e, char *why, size_t why_len)
{
	double max_timeout_s = cfg->max_timeout_s;
	const char *key;
	json_t *value;
	json_object_foreach(args, key, value)
	{
		if (strcmp(key, "code") && strcmp(key, "language") && strcmp(key, "timeout_s") &&
		    strcmp(key, "stdin") && strcmp(key, "files") && strcmp(key, "packages") &&
		    strcmp(key, "keep_state") && strcmp(key, "state_id")) {
			char quoted[RPC_EXCERPT_SIZE(64)];
			snprintf(why, why_len, "unknown argument '%s' (allowed: code, language, "
					       "timeout_s, stdin, files, packages, keep_state, "
					       "state_id)",
				 rpc_excerpt(quoted, sizeof quoted, key));
			return -EINVAL;
		}
	}
	json_t *code = json_object_get(args, "code"), *language = json_object_get(args, "language");
	json_t *timeout = json_object_get(args, "timeout_s"), *input = json_object_get(args, "stdin");
	json_t *files = json_object_get(args, "files");
	if (!json_is_string(code)) {
		snprintf(why, why_len, code ? "code: must be a string" : "code: required");
		return -EINVAL;
	}
	e->language = AL_LANG_PYTHON;
	if (language && (!json_is_string(language) ||
			 sandbox_language(json_string_value(language), &e->language) != 0)) {
		char names[128];
		sandbox_language_list(names, sizeof names);
		snprintf(why, why_len, "language: must be one of %s", names);
		return -EINVAL;
	}
	e->timeout_s = CALL_DEFAULT_TIMEOUT_S;
	if (timeout) {
		double t = json_number_value(timeout);
		if (!json_is_number(timeout) || !(t > 0) || !isfinite(t)) {
			snprintf(why, why_len, "timeout_s: must be a number of seconds > 0");
			return -EINVAL;
		}
		e->timeout_s = t;
	}
	if (e->timeout_s > max_timeout_s)
		e->timeout_s = max_timeout_s;
	json_t *keep = json_object_get(args, "keep_state"), *state = json_object_get(args, "state_id");
	if (keep && !json_is_boolean(keep)) {
		snprintf(why, why_len, "keep_state: must be true or false");
		return -EINVAL;
	}
	if (state && (!json_is_string(state) || !state_id_valid(json_string_value(state)))) {
		char quoted[RPC_EXCERPT_SIZE(40)];
		snprintf(why, why_len, "state_id: unknown state '%s' (a state_id is what a call "
				       "with keep_state returned)",
			 json_is_string(state)
				 ? rpc_excerpt(quoted, sizeof quoted, json_string_value(state))
				 : "(not a string)");
		return -EINVAL;
	}
	if (kept_call_begin(&e->kept, states, state ? json_string_value(state) : NULL,
			    json_is_true(keep), language ? json_string_value(language) : NULL,
			    &e->language, why, why_len) != 0)
		return -EINVAL;
	if (input && !json_is_string(input)) {
		snprintf(why, why_len, "stdin: must be a string");
		return -EINVAL;
	}
	if (files && take_files(files, e, why, why_len) != 0)
		return -EINVAL;
	json_t *packages = json_object_get(args, "packages");
	if (packages && take_packages(packages, &cfg->policy, e, why, why_len) != 0)
		return -EINVAL;
	e->code = copy_string(code, &e->code_len);
	e->stdin_data = input ? copy_string(input, &e->stdin_len) : NULL;
	if (!e->code || (input && !e->stdin_data)) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* ---- the run ---- */

static void on_progress_closed(uv_handle_t *handle)
{
	struct execution *e = handle->data;
	struct call *call = e->call;
	json_t *result = e->result;
	execution_free(e);
	if (result)
		call_finish(call, result);
	else
		call_drop(call);
}

static void on_progress_tick(uv_timer_t *timer)
{
	struct execution *e = timer->data;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double elapsed = (double)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 -
				  e->call->started_ms) / 1000.0;
	/* the elapsed time and byte counts, then the lines completed since the last one */
	static char message[256 + OUTPUT_TAIL_LINES * (OUTPUT_TAIL_LINE_MAX * 3 + 16)];
	int head = snprintf(message, sizeof message,
			    "running for %.1f s, %llu bytes of output so far (stdout %llu, "
			    "stderr %llu)\n",
			    elapsed,
			    (unsigned long long)(e->sandbox ? sandbox_output_bytes(e->sandbox) : 0),
			    (unsigned long long)e->tail.bytes[0], (unsigned long long)e->tail.bytes[1]);
	if (output_tail_take(&e->tail, message + head, sizeof message - (size_t)head) != 0)
		message[head] = '\0'; /* out of memory: the counts alone */
	size_t len = strlen(message);
	if (len > 0 && message[len - 1] == '\n')
		message[len - 1] = '\0';
	server_progress(e->call, elapsed, message);
}

static void on_output(void *ctx, uint32_t stream, const uint8_t *data, size_t len)
{
	struct execution *e = ctx;
	if (e->call->progress_token)
		output_tail_add(&e->tail, stream, data, len);
}

static void on_sandbox_done(struct sandbox *sb, const struct sandbox_result *r, void *ctx)
{
	(void)sb;
	struct execution *e = ctx;
	struct call *call = e->call;
	e->sandbox = NULL;
	if (call->cancelled || r->error == -ECANCELED) {
		e->result = NULL; /* no reply for a cancelled request */
	} else if (r->error) {
		call_log(call, LOG_WARNING, "sandbox failure: %s", r->message);
		e->result = content_error("Sandbox error (not your code's fault): %s. Check the host "
					  "with `airlock doctor`.",
					  r->message);
	} else {
		struct file_list files = {0};
		if (result_output_files(r, CALL_OUT_FILES_CAP, &files) != 0)
			call_log(call, LOG_WARNING, "the guest returned a malformed archive");
		kept_call_finish(&e->kept, call->client->states, r);
		if (call->audit)
			json_object_set_new(call->audit, "bytes_out",
					    json_integer((json_int_t)(r->stdout_total +
								      r->stderr_total)));
		json_t *state = json_object();
		kept_call_annotate(&e->kept, state);
		e->result = content_run_result(r, &files, e->timeout_s, state);
		json_decref(state);
		file_list_free(&files);
		if (!e->result)
			e->result = content_error("Sandbox error: out of memory building the result");
	}
	uv_timer_stop(&e->progress);
	uv_close((uv_handle_t *)&e->progress, on_progress_closed);
}

static void cancel_execution(struct call *call)
{
	struct execution *e = call->state;
	if (e->sandbox)
		sandbox_cancel(e->sandbox); /* on_sandbox_done follows and drops the call */
}

static void release_execution(struct call *call)
{
	execution_free(call->state);
}

static void start_execution(struct call *call)
{
	struct execution *e = call->state;
	struct server *srv = call->srv;
	char err[1024];
	if (!server_images_ready(srv, err, sizeof err)) {
		struct call *c = e->call;
		execution_free(e);
		call_finish(c, content_error("Sandbox error: %s", err));
		return;
	}
	uv_timer_init(server_loop(srv), &e->progress);
	e->progress.data = e;
	struct sandbox_request req = {
		.language = e->language,
		.code = e->code,
		.code_len = e->code_len,
		.stdin_data = e->stdin_data,
		.stdin_len = e->stdin_len,
		.files_tar = e->tar,
		.files_len = e->tar_len,
		.timeout_ms = (uint32_t)llround(e->timeout_s * 1000),
		.stdout_cap = CALL_OUTPUT_CAP,
		.stderr_cap = CALL_OUTPUT_CAP,
		.out_files_cap = CALL_OUT_FILES_CAP,
		.policy = &server_config(srv)->policy,
		.packages = (const char *const *)e->packages,
		.n_packages = e->n_packages,
		.on_output = on_output,
		.output_ctx = e,
	};
	/* a warm VM from the pool, else one restored (or booted) now; a kept state's restored now
	 * (a pooled VM could not be saved into a directory of its own) */
	struct sandbox_vm vm;
	server_vm_spec(srv, e->language, &vm);
	bool kept = e->kept.keep || e->kept.from_state;
	if (kept && kept_call_prepare(&e->kept, call->client->states, &vm, &req, err,
				      sizeof err) != 0) {
		e->result = content_error("%s", err);
		uv_close((uv_handle_t *)&e->progress, on_progress_closed);
		return;
	}
	if (!kept && (e->sandbox = server_take_vm(srv, e->language)) != NULL) {
		sandbox_submit(e->sandbox, &req, on_sandbox_done, e);
	} else if (sandbox_start(server_loop(srv), &vm, &req, on_sandbox_done, e, &e->sandbox, err,
				 sizeof err) != 0) {
		e->result = content_error("Sandbox error: %s. Check the host with `airlock doctor`.",
					  err);
		uv_close((uv_handle_t *)&e->progress, on_progress_closed);
		return;
	}
	if (call->progress_token)
		uv_timer_start(&e->progress, on_progress_tick, PROGRESS_INTERVAL_MS,
			       PROGRESS_INTERVAL_MS);
}

/* The audit line's fields known from the arguments: what ran, under which limits, from which
 * state. The code itself never goes into it, only its digest. */
static void audit_arguments(struct call *call, const struct execution *e)
{
	if (!call->audit)
		return;
	char digest[SHA256_HEX_SIZE];
	sha256_hex(e->code, e->code_len, digest);
	const struct server_config *cfg = server_config(call->srv);
	json_object_set_new(call->audit, "language",
			    json_string(sandbox_language_name(e->language)));
	json_object_set_new(call->audit, "code_sha256", json_string(digest));
	json_object_set_new(call->audit, "limits",
			    json_pack("{s:f, s:i, s:i, s:i, s:i}", "timeout_s", e->timeout_s,
				      "memory_mb", (int)cfg->memory_mb, "vcpus", (int)cfg->vcpus,
				      "output_bytes", (int)CALL_OUTPUT_CAP, "files_bytes",
				      (int)CALL_OUT_FILES_CAP));
	json_object_set_new(call->audit, "state_from",
			    e->kept.from_state ? json_string(e->kept.state_id) : json_null());
}

void execute_code(struct call *call, json_t *arguments)
{
	struct execution *e = calloc(1, sizeof *e);
	if (!e) {
		call_finish(call, content_error("Sandbox error: out of memory"));
		return;
	}
	e->call = call;
	char why[512];
	if (take_arguments(arguments, server_config(call->srv), call->client->states, e, why,
			   sizeof why) != 0) {
		execution_free(e);
		call_finish(call, content_error("Invalid arguments: %s", why));
		return;
	}
	audit_arguments(call, e);
	call->state = e;
	call->start = start_execution;
	call->cancel = cancel_execution;
	call->release = release_execution;
	/* a call that may run past the default timeout, from a client that can poll: a task */
	if (e->timeout_s > CALL_DEFAULT_TIMEOUT_S && task_possible(call) &&
	    task_begin(call, e->timeout_s) != 0)
		call_log(call, LOG_WARNING, "cannot make a task; the call is answered when it ends");
	call_run_when_ready(call);
}
