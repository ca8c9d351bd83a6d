/* UTF-8 as MCP's JSON needs it (RFC 3629, as jansson checks it): where user or guest bytes
 * become message text. */
#ifndef AIRLOCK_UTF8_H
#define AIRLOCK_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (1-4) of the valid UTF-8 sequence at p, at most avail bytes, or 0 when there is none:
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
size_t utf8_sequence(const uint8_t *p, size_t avail);

/* Returns a malloc'd copy of data with every invalid UTF-8 sequence replaced by U+FFFD; *out_len
 * gets its length (the copy is also NUL-terminated). NULL when out of memory. */
char *utf8_sanitize(const uint8_t *data, size_t len, size_t *out_len);

#endif
