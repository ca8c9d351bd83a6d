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
	size_t exit_limit; /* the largest EXIT payload this run may send (frame_exit_limit) */
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

/* What an honest agent's EXIT can hold when it returns at most files_cap bytes of file content:
 * a ustar archive of at most FRAME_EXIT_MAX_FILES members (each a header and the padding of its
 * data beside its content) and one "SIZE PATH\n" line per file not returned. The agent walks at
 * most that many entries of /work/out (agent/exec.c). */
#define FRAME_EXIT_MAX_FILES 1000u
#define FRAME_TAR_MEMBER_OVERHEAD 1023u   /* a 512-byte header, data padded to 512 */
#define FRAME_TAR_END 10240u              /* end-of-archive blocks, padded to a record */
#define FRAME_SKIPPED_LINE_MAX (4096u + 32u) /* a size, a space, a path of up to PATH_MAX */
/* The largest files tar an EXIT may carry for files_cap. */
uint64_t frame_exit_max_files(uint64_t files_cap);
/* The largest EXIT payload for files_cap: every byte past it is refused before it is buffered. */
size_t frame_exit_limit(uint64_t files_cap);

/* Hands the current frame's payload over to the caller, who frees it; only from inside the
 * handler, for the frame being handled. Saves a copy of the largest frame, EXIT. */
uint8_t *frame_decoder_take_payload(struct frame_decoder *d);

/* Splits an EXIT payload into its header, the files tar and the skipped-files list.
 * Returns 0 or -EPROTO when the lengths do not add up. */
int frame_parse_exit(const uint8_t *payload, size_t len, struct al_exit *exit,
		     const uint8_t **files, const uint8_t **skipped);

/* Encodes a RUN frame header + struct al_run into out (AL_FRAME_HEADER_SIZE + sizeof al_run
 * bytes); the caller sends code, stdin and files right after it. Returns 0 or -EMSGSIZE. */
int frame_encode_run_header(const struct al_run *run, uint8_t *out, size_t out_len);

#endif
