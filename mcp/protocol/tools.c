/* The tools airlock offers, and what it tells an LLM about them. */
#include <stdio.h>
#include <string.h>

#include "protocol.h"
#include "proto.h"

/* What the network is for a call of this server, in a sentence or two: the hosts the operator
 * allowed (--allow-host), the package indexes, or none. */
static void describe_network(const struct server_config *cfg, char *out, size_t len)
{
	const struct sandbox_policy *p = &cfg->policy;
	char hosts[768];
	size_t used = 0;
	out[0] = '\0';
	if (p->egress.n_allow) {
		egress_rules_describe(p->egress.allow, p->egress.n_allow, hosts, sizeof hosts);
		int n = snprintf(out, len,
				 "Network: HTTP and HTTPS to these hosts only, through a proxy the "
				 "environment names (HTTP_PROXY/HTTPS_PROXY; Python, pip, curl, git, "
				 "npm and Node's fetch use it): %s (ports 443 and 80 unless one is "
				 "given). Anything else is refused with HTTP 403; the result's "
				 "`network` lists every attempt.",
				 hosts);
		used = n > 0 && (size_t)n < len ? (size_t)n : len;
	} else {
		int n = snprintf(out, len, "There is no network access.");
		used = n > 0 && (size_t)n < len ? (size_t)n : len;
	}
	if (used < len && (p->pip_index || p->npm_registry))
		snprintf(out + used, len - used,
			 " `packages` installs %s%s%s before the program (wheels only, no install "
			 "scripts; counted in timeout_s; the result's `install` has the log).",
			 p->pip_index ? "pip requirements for python" : "",
			 p->pip_index && p->npm_registry ? " and " : "",
			 p->npm_registry ? "npm packages for javascript" : "");
}

/* What an image of one's own (--image) adds to the stock one, in a sentence; "" for the stock. */
static void describe_image(const struct server_config *cfg, char *out, size_t len)
{
	const struct images *im = &cfg->images;
	if (im->image_name[0])
		snprintf(out, len, " This image (%s) also has %s.", im->image_name,
			 im->image_contents);
	else
		out[0] = '\0';
}

/* The description, from the facts it states: the languages (AL_LANGUAGES, agent/proto.h), this
 * server's limits (its --max-timeout and --memory-mb) and a call's (protocol.h). */
static void describe_execute_code(const struct server_config *cfg, char *out, size_t len)
{
	char network[1536];
	describe_network(cfg, network, sizeof network);
	char languages[1024] = "";
	size_t used = 0;
	for (uint32_t l = AL_LANG_FIRST; l < AL_LANG_END && used < sizeof languages; l++) {
		int n = snprintf(languages + used, sizeof languages - used, "%s%s",
				 l > AL_LANG_FIRST ? ", " : "", al_language(l)->about);
		used += n > 0 ? (size_t)n : 0;
	}
	char image[RECIPE_CONTENTS_MAX + 64];
	describe_image(cfg, image, sizeof image);
	snprintf(out, len,
		 "Run a program in a fresh, isolated Linux microVM and get back its stdout, stderr, "
		 "exit status and the files it writes under /work/out (images come back as images). "
		 "Languages: %s.%s %s Every call starts from a clean machine, unless it continues a "
		 "state: a call with keep_state: true returns a state_id, and a later call with "
		 "state_id runs in a fresh VM restored from it, with the variables, imports, loaded "
		 "data and files (python, javascript, bash) as that call left them. Otherwise include "
		 "all imports and data in each call, or pass input files with `files` (written under "
		 "/work, the working directory). Limits: "
		 "timeout_s (default %g s, at most %g s), %u MiB of memory, %u MiB in /work and in "
		 "/tmp, stdout and stderr returned up to %u MiB each, output files up to %u MiB in "
		 "total. The program runs as an unprivileged user.",
		 languages, image, network, CALL_DEFAULT_TIMEOUT_S, cfg->max_timeout_s, cfg->memory_mb,
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
	"}}},"
	"\"packages\":{\"type\":\"array\",\"default\":[],\"maxItems\":64,"
	"\"items\":{\"type\":\"string\",\"maxLength\":200},"
	"\"description\":\"Installed before the run: pip requirements (python) or npm package "
	"specs (javascript), from the operator's index; refused when none is configured.\"},"
	"\"keep_state\":{\"type\":\"boolean\",\"default\":false,"
	"\"description\":\"After the run, save the VM (variables, imports, loaded data, /work "
	"and /tmp) and return a state_id that later calls can continue from.\"},"
	"\"state_id\":{\"type\":\"string\",\"pattern\":\"^[0-9a-f]{32}$\","
	"\"description\":\"Run in a fresh VM restored from this kept state (its language); "
	"the same id may be continued any number of times, each an independent branch.\"}"
	"}}";

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
	"\"mime_type\":{\"type\":\"string\"},\"returned\":{\"type\":\"boolean\"}}}},"
	"\"network\":{\"type\":\"array\",\"description\":\"Every connection the program "
	"tried through the proxy (present when the server allows hosts or installs packages).\","
	"\"items\":{\"type\":\"object\",\"additionalProperties\":false,"
	"\"required\":[\"host\",\"port\",\"allowed\",\"reason\",\"bytes_sent\","
	"\"bytes_received\"],\"properties\":{"
	"\"host\":{\"type\":\"string\"},\"port\":{\"type\":\"integer\"},"
	"\"allowed\":{\"type\":\"boolean\"},"
	"\"reason\":{\"type\":\"string\",\"description\":\"Why it was refused or failed; "
	"empty when it went through.\"},"
	"\"bytes_sent\":{\"type\":\"integer\"},\"bytes_received\":{\"type\":\"integer\"}}}},"
	"\"install\":{\"type\":\"object\",\"additionalProperties\":false,"
	"\"required\":[\"ok\",\"duration_ms\",\"log\"],\"properties\":{"
	"\"ok\":{\"type\":\"boolean\"},\"duration_ms\":{\"type\":\"number\"},"
	"\"log\":{\"type\":\"string\",\"description\":\"The installer's output (its end).\"}}},"
	"\"advisories\":{\"type\":\"array\",\"description\":\"The advisory pre-scan's "
	"findings (defence in depth, not a boundary).\","
	"\"items\":{\"type\":\"object\",\"additionalProperties\":false,"
	"\"required\":[\"rule\",\"line\",\"message\"],\"properties\":{"
	"\"rule\":{\"type\":\"string\"},\"line\":{\"type\":\"integer\"},"
	"\"message\":{\"type\":\"string\"}}}},"
	"\"state_id\":{\"type\":[\"string\",\"null\"],\"description\":\"With "
	"keep_state: the kept state to pass as state_id later; null when none was kept.\"},"
	"\"state_expires_at\":{\"type\":[\"string\",\"null\"],\"description\":\"When "
	"the kept state expires unless used (RFC 3339; each use renews it).\"},"
	"\"state_error\":{\"type\":[\"string\",\"null\"],\"description\":\"Why "
	"keep_state kept no state (the program timed out, the save failed).\"}}}";

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
		char description[4096];
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

void tools_instructions(const struct server_config *cfg, char *out, size_t len)
{
	char network[1536], image[RECIPE_CONTENTS_MAX + 64];
	describe_network(cfg, network, sizeof network);
	describe_image(cfg, image, sizeof image);
	snprintf(out, len,
		 "airlock runs code in a fresh, hardware-isolated Linux microVM for every call: use "
		 "the execute_code tool to compute, test code, or analyse data. Each call starts "
		 "from a clean machine with Python 3.11 (numpy, pandas, scipy, matplotlib), Node.js "
		 "18, bash and Go 1.19.%s %s Pass input data with `files`, write results (plots, "
		 "CSV) under /work/out to get them back; plt.show() returns figures as images. "
		 "Nothing persists between calls unless you ask: keep_state: true returns a state_id, "
		 "and calls with that state_id continue where it left off (variables, imports, "
		 "loaded data, files), each in a fresh VM, as often as you like.",
		 image, network);
}
