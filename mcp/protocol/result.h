/* What a run produced, in the shape docs/interface.md gives `execute_code`'s structuredContent (and
 * `airlock run --json`): exit status, output as UTF-8, truncation flags, duration, output files.
 */
#ifndef AIRLOCK_RESULT_H
#define AIRLOCK_RESULT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "archive_files.h"
#include "sandbox.h"
#include "utf8.h"

#define RESULT_MAX_FILES 1000


/* "SIGKILL" for 9; "SIG<n>" when the number has no name. */
const char *signal_name(int signal, char *buf, size_t buf_len);

/* A MIME type from a file name's extension ("application/octet-stream" when unknown). */
const char *mime_type_for(const char *path);

/* Collects the output files: those returned in the tar (at most cap bytes of content; files past
 * it are marked not returned), then those the guest listed as skipped. */
int result_output_files(const struct sandbox_result *r, uint64_t cap, struct file_list *files);

/* Builds the structured result (new reference, NULL when out of memory). */
json_t *result_structured(const struct sandbox_result *r, const struct file_list *files);

#endif
