/* libFuzzer target: everything the host does with bytes from the guest agent, the way mcp/sandbox/
 * does it: the frame decoder (fed in chunks whose size the input picks, as reads would split
 * the stream) with the run's output streams open (a window the input picks), DATA appended
 * under the caps and credit granted as it is consumed, and an EXIT frame split, its files tar
 * unpacked and its skipped-files list read into the structured result. No content past the
 * files cap may be taken in, and no stream may deliver more than its window and the credit
 * granted since; run with -malloc_limit_mb (run.sh) so that no input makes the host allocate
 * more than the largest frame.
 *
 * Input: a byte for the read size (1-64), a byte for the window (1-256 KiB), then the
 * guest's byte stream (protocol 2 frames). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_internal.h"
#include "protocol.h"

#define OUTPUT_CAP 4096 /* small, so the truncation path runs */

struct run {
	struct sandbox_result res;
	struct frame_decoder *decoder;
	uint32_t window;
	uint64_t delivered[3], granted[3]; /* by stream: DATA bytes, credit granted */
};

static void append(struct byte_buffer *b, bool *truncated, const uint8_t *data, size_t len)
{
	size_t room = b->len < OUTPUT_CAP ? OUTPUT_CAP - b->len : 0;
	if (len > room) {
		*truncated = true;
		len = room;
	}
	if (len == 0)
		return; /* as sandbox_append_output: data may be NULL then (memcpy's is nonnull) */
	if (!b->data && !(b->data = malloc(OUTPUT_CAP)))
		abort();
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

#define FILES_CAP (1u << 20)

static void build_result(struct sandbox_result *r)
{
	struct file_list files = {0};
	int rc = result_output_files(r, FILES_CAP, &files);
	uint64_t returned = 0;
	for (size_t i = 0; i < files.len; i++)
		returned += files.items[i].returned ? files.items[i].size : 0;
	if (returned > FILES_CAP)
		abort(); /* content past the cap was taken in */
	if (rc == 0) {
		json_t *structured = result_structured(r, &files);
		if (!structured)
			abort();
		json_decref(structured);
	}
	file_list_free(&files);
}

static int on_frame(void *ctx, uint32_t type, uint32_t stream, const uint8_t *payload,
		    size_t len)
{
	struct run *run = ctx;
	struct sandbox_result *r = &run->res;
	if (len > frame_max_payload(type))
		abort(); /* the decoder let through more than the type allows */
	if (type != AL_FRAME_DATA && stream != AL_STREAM_CONVERSATION)
		abort(); /* a conversation frame on another stream */
	switch (type) {
	case AL_FRAME_READY: {
		struct al_ready ready;
		memcpy(&ready, payload, sizeof ready);
		if (ready.version != AL_PROTO_VERSION)
			abort(); /* the decoder let another version through */
		return 0;
	}
	case AL_FRAME_DATA:
		if (stream != AL_STREAM_STDOUT && stream != AL_STREAM_STDERR)
			abort(); /* DATA on a stream that is not open */
		run->delivered[stream] += len;
		if (run->delivered[stream] > run->window + run->granted[stream])
			abort(); /* DATA beyond the credit granted */
		if (stream == AL_STREAM_STDOUT)
			append(&r->out, &r->stdout_truncated, payload, len);
		else
			append(&r->err, &r->stderr_truncated, payload, len);
		run->granted[stream] += frame_stream_consumed(run->decoder, stream, len);
		return 0;
	case AL_FRAME_EXIT: {
		struct al_exit e;
		const uint8_t *files, *skipped;
		if (frame_parse_exit(payload, len, &e, &files, &skipped) != 0)
			return -EPROTO;
		r->exited = e.signal == 0 && e.exit_code >= 0;
		r->exit_code = e.exit_code;
		r->signal = e.signal;
		r->files_tar = e.files_len ? files : NULL;
		r->files_len = e.files_len;
		r->skipped = e.skipped_len ? (const char *)skipped : NULL;
		r->skipped_len = e.skipped_len;
		build_result(r); /* while the payload is valid, as the server does with its copy */
		return 1;
	}
	default:
		return 0;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t chunk = (size_t)data[0] % 64 + 1;
	uint32_t window = ((uint32_t)data[1] + 1) << 10;
	data += 2;
	size -= 2;
	struct frame_decoder d;
	struct run run = {.decoder = &d, .window = window};
	frame_decoder_init(&d);
	d.exit_limit = frame_exit_limit(FILES_CAP); /* as the run's cap sets it (mcp/sandbox/run_request.c) */
	struct al_run head = {.version = AL_PROTO_VERSION, .output_window = window};
	if (frame_open_output_streams(&d, &head) != 0)
		abort();
	for (size_t at = 0; at < size; at += chunk) {
		size_t n = size - at < chunk ? size - at : chunk;
		if (frame_decoder_feed(&d, data + at, n, on_frame, &run) != 0)
			break;
	}
	frame_decoder_free(&d);
	free(run.res.out.data);
	free(run.res.err.data);
	return 0;
}
