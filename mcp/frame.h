/* The host's decoder for frames from the guest agent (agent/proto.h). The guest is untrusted:
 * every header is checked against the limit for its type before any payload is buffered, and the
 * inner lengths of READY and EXIT must add up exactly.
 */
#ifndef AIRLOCK_FRAME_H
#define AIRLOCK_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct frame_decoder {
	uint8_t header[AL_FRAME_HEADER_SIZE];
	size_t header_have;
	uint32_t type, length;
	uint8_t *payload; /* grows as bytes arrive, never past length */
	size_t payload_have, payload_cap;
	const char *error; /* set once the stream is bad; the decoder then refuses all input */
};

/* Called for each complete frame; the payload is only valid during the call. Returning non-zero
 * stops decoding and is passed back from frame_decoder_feed(). */
typedef int (*frame_handler)(void *ctx, uint32_t type, const uint8_t *payload, size_t len);

void frame_decoder_init(struct frame_decoder *d);
void frame_decoder_free(struct frame_decoder *d);
/* Feeds bytes from the guest. Returns 0, the handler's non-zero result, or -EPROTO with
 * d->error naming what was wrong. */
int frame_decoder_feed(struct frame_decoder *d, const uint8_t *data, size_t len,
		       frame_handler handler, void *ctx);
/* Largest payload the host accepts from the guest for a frame type; 0 for a type the guest may
 * not send. */
size_t frame_max_payload(uint32_t type);

/* Splits an EXIT payload into its header, the files tar and the skipped-files list.
 * Returns 0 or -EPROTO when the lengths do not add up. */
int frame_parse_exit(const uint8_t *payload, size_t len, struct al_exit *exit,
		     const uint8_t **files, const uint8_t **skipped);

/* Encodes a RUN frame header + struct al_run into out (AL_FRAME_HEADER_SIZE + sizeof al_run
 * bytes); the caller sends code, stdin and files right after it. Returns 0 or -EMSGSIZE. */
int frame_encode_run_header(const struct al_run *run, uint8_t *out, size_t out_len);

#endif
