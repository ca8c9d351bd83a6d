/* The CallToolResult of execute_code, in docs/interface.md's order: the readable text block, an
 * image block per image under /work/out, an embedded resource per other file, and the structured
 * result as text (without stdout/stderr); plus structuredContent and isError. */
#ifndef AIRLOCK_CONTENT_H
#define AIRLOCK_CONTENT_H

#include <jansson.h>

#include "archive_files.h"
#include "sandbox.h"

/* The result of a run that happened (new reference; NULL when out of memory). */
json_t *content_run_result(const struct sandbox_result *r, const struct file_list *files,
			   double timeout_s);
/* An isError result with one line of text (new reference). */
json_t *content_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
