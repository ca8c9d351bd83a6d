/* The tool table: each tool is one entry {name, title, description, input schema, output schema,
 * handler}. Adding a tool is one entry here and one handler. */
#ifndef AIRLOCK_TOOLS_H
#define AIRLOCK_TOOLS_H

#include <jansson.h>

#include "server.h"

struct tool {
	const char *name;
	const char *title;
	/* Writes the description for this server's configuration (its limits). */
	void (*describe)(const struct server_config *cfg, char *out, size_t len);
	const char *input_schema;  /* JSON text */
	const char *output_schema; /* JSON text */
	/* Validates the arguments and starts the call; it ends with call_finish() or call_drop(). */
	void (*handler)(struct call *call, json_t *arguments);
};

const struct tool *tools_find(const char *name);
/* The tools/list array (new reference). */
json_t *tools_list(const struct server_config *cfg);
/* The `instructions` paragraph of initialize. */
const char *tools_instructions(void);

/* execute.c */
void execute_code(struct call *call, json_t *arguments);

#endif
