/* Hex, lower case: random ids (tasks, sessions) and SHA-256 digests (the audit log's code,
 * a token's kept-state owner), written the same way everywhere. */
#include <errno.h>
#include <stdio.h>
#include <sys/random.h>

#include <openssl/sha.h>

#include "protocol.h"

void hex_encode(const uint8_t *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 15];
	}
	out[2 * len] = '\0';
}

int random_hex(char *out, size_t bytes)
{
	uint8_t r[64];
	if (bytes > sizeof r || getrandom(r, bytes, 0) != (ssize_t)bytes)
		return -EIO;
	hex_encode(r, bytes, out);
	return 0;
}

void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_SIZE])
{
	uint8_t digest[SHA256_DIGEST_LENGTH];
	SHA256(data, len, digest);
	hex_encode(digest, sizeof digest, out);
}
