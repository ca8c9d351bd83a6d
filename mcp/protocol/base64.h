/* Base64 (RFC 4648, standard alphabet, padded): files into the guest and images out of it. */
#ifndef AIRLOCK_BASE64_H
#define AIRLOCK_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* Returns a malloc'd, NUL-terminated encoding of data, or NULL when out of memory. */
char *base64_encode(const uint8_t *data, size_t len);
/* Decodes text (whitespace ignored; padding optional) into a malloc'd buffer. Returns 0, -EINVAL for text that is
 * not base64, or -ENOMEM. */
int base64_decode(const char *text, size_t len, uint8_t **out, size_t *out_len);

#endif
