/* What a run produced, in the shape SPEC.md gives `execute_code`'s structuredContent (and
 * `airlock run --json`): exit status, output as UTF-8, truncation flags, duration, output files.
 */
#ifndef AIRLOCK_RESULT_H
#define AIRLOCK_RESULT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "archive_files.h"
#include "sandbox.h"

#define RESULT_MAX_FILES 1000

/* Returns a malloc'd copy of data with every invalid UTF-8 sequence replaced by U+FFFD; *out_len
 * gets its length (the copy is also NUL-terminated). NULL when out of memory. */
char *utf8_sanitize(const uint8_t *data, size_t len, size_t *out_len);

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
