/* The tools airlock offers, and what it tells an LLM about them. */
#include <stdio.h>
#include <string.h>

#include "protocol.h"
#include "proto.h"

/* The description, from the facts it states: the languages (AL_LANGUAGES, agent/proto.h), this
 * server's limits (its --max-timeout and --memory-mb) and a call's (protocol.h). */
static void describe_execute_code(const struct server_config *cfg, char *out, size_t len)
{
	char languages[1024] = "";
	size_t used = 0;
	for (uint32_t l = AL_LANG_FIRST; l < AL_LANG_END && used < sizeof languages; l++) {
		int n = snprintf(languages + used, sizeof languages - used, "%s%s",
				 l > AL_LANG_FIRST ? ", " : "", al_language(l)->about);
		used += n > 0 ? (size_t)n : 0;
	}
	snprintf(out, len,
		 "Run a program in a fresh, isolated Linux microVM and get back its stdout, stderr, "
		 "exit status and the files it writes under /work/out (images come back as images). "
		 "Languages: %s. There is no network access. Nothing persists between calls: every "
		 "call starts from a clean machine, so include all imports and data in each call, or "
		 "pass input files with `files` (written under /work, the working directory). Limits: "
		 "timeout_s (default %g s, at most %g s), %u MiB of memory, %u MiB in /work and in "
		 "/tmp, stdout and stderr returned up to %u MiB each, output files up to %u MiB in "
		 "total. The program runs as an unprivileged user.",
		 languages, CALL_DEFAULT_TIMEOUT_S, cfg->max_timeout_s, cfg->memory_mb,
		 AL_GUEST_TMPFS_MB, CALL_OUTPUT_CAP >> 20, CALL_OUT_FILES_CAP >> 20);
}

static const char execute_code_input_schema[] =
	"{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"code\"],"
	"\"properties\":{"
	"\"code\":{\"type\":\"string\",\"description\":\"The program text.\"},"
	"\"language\":{\"type\":\"string\",\"default\":\"python\","
	"\"description\":\"The interpreter.\"}," /* its enum: input_schema() */
	"\"timeout_s\":{\"type\":\"number\",\"exclusiveMinimum\":0," /* default: the same */
	"\"description\":\"Wall-clock limit in seconds; the program is killed after it.\"},"
	"\"stdin\":{\"type\":\"string\",\"default\":\"\","
	"\"description\":\"Fed to the program's standard input.\"},"
	"\"files\":{\"type\":\"array\",\"default\":[],"
	"\"description\":\"Files written under /work before the run.\","
	"\"items\":{\"type\":\"object\",\"additionalProperties\":false,"
	"\"required\":[\"path\",\"content\"],\"properties\":{"
	"\"path\":{\"type\":\"string\",\"description\":\"Relative to /work; no '..'.\"},"
	"\"content\":{\"type\":\"string\"},"
	"\"encoding\":{\"type\":\"string\",\"enum\":[\"utf-8\",\"base64\"],\"default\":\"utf-8\"}"
	"}}}}}";

static const char execute_code_output_schema[] =
	"{\"type\":\"object\",\"additionalProperties\":false,"
	"\"required\":[\"exit_code\",\"signal\",\"timed_out\",\"stdout\",\"stderr\","
	"\"stdout_truncated\",\"stderr_truncated\",\"duration_ms\",\"files\"],"
	"\"properties\":{"
	"\"exit_code\":{\"type\":[\"integer\",\"null\"],"
	"\"description\":\"The program's exit status; null when a signal or the timeout ended it.\"},"
	"\"signal\":{\"type\":[\"string\",\"null\"],\"description\":\"e.g. SIGKILL\"},"
	"\"timed_out\":{\"type\":\"boolean\"},"
	"\"stdout\":{\"type\":\"string\"},\"stderr\":{\"type\":\"string\"},"
	"\"stdout_truncated\":{\"type\":\"boolean\"},\"stderr_truncated\":{\"type\":\"boolean\"},"
	"\"duration_ms\":{\"type\":\"number\"},"
	"\"files\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"additionalProperties\":false,"
	"\"required\":[\"path\",\"size\",\"mime_type\",\"returned\"],\"properties\":{"
	"\"path\":{\"type\":\"string\"},\"size\":{\"type\":\"integer\"},"
	"\"mime_type\":{\"type\":\"string\"},\"returned\":{\"type\":\"boolean\"}}}}}}";

static const struct tool tools[] = {
	{
		.name = "execute_code",
		.title = "Run code in a sandbox",
		.describe = describe_execute_code,
		.input_schema = execute_code_input_schema,
		.output_schema = execute_code_output_schema,
		.handler = execute_code,
	},
};

const struct tool *tools_find(const char *name)
{
	for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
		if (strcmp(tools[i].name, name) == 0)
			return &tools[i];
	return NULL;
}

/* execute_code's input schema, with what the tables say: the languages and the default timeout. */
static json_t *input_schema(const struct tool *t)
{
	json_t *schema = json_loads(t->input_schema, 0, NULL);
	json_t *props = json_object_get(schema, "properties");
	json_t *language = json_object_get(props, "language");
	json_t *timeout = json_object_get(props, "timeout_s");
	if (language) {
		json_t *names = json_array();
		for (uint32_t l = AL_LANG_FIRST; l < AL_LANG_END; l++)
			json_array_append_new(names, json_string(al_language_name(l)));
		json_object_set_new(language, "enum", names);
	}
	if (timeout)
		json_object_set_new(timeout, "default", json_real(CALL_DEFAULT_TIMEOUT_S));
	return schema;
}

json_t *tools_list(const struct server_config *cfg)
{
	json_t *list = json_array();
	for (size_t i = 0; list && i < sizeof tools / sizeof tools[0]; i++) {
		const struct tool *t = &tools[i];
		char description[2048];
		t->describe(cfg, description, sizeof description);
		json_t *entry = json_pack("{s:s, s:s, s:s, s:o, s:o, s:{s:b, s:b, s:b}}", "name",
					  t->name, "title", t->title, "description", description,
					  "inputSchema", input_schema(t),
					  "outputSchema", json_loads(t->output_schema, 0, NULL),
					  "annotations", "readOnlyHint", 1, "openWorldHint", 0,
					  "idempotentHint", 0);
		json_array_append_new(list, entry);
	}
	return list;
}

const char *tools_instructions(void)
{
	return "airlock runs code in a fresh, hardware-isolated Linux microVM for every call: use "
	       "the execute_code tool to compute, test code, or analyse data. Each call starts "
	       "from a clean machine (nothing persists between calls) with Python 3.11 (numpy, "
	       "pandas, scipy, matplotlib), Node.js 18 and bash; there is no network. Pass input "
	       "data with `files`, write results (plots, CSV) under /work/out to get them back; "
	       "plt.show() returns figures as images.";
}
