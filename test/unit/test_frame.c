/* The host's decoder of guest frames: good streams in any chunking, and every kind of bad frame
 * refused before its payload is buffered. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "frame.h"

struct seen {
	int frames;
	uint32_t types[16];
	size_t lens[16];
	uint8_t last[64];
	int stop_after; /* handler returns 1 after this many frames (0: never) */
};

static int record(void *ctx, uint32_t type, const uint8_t *payload, size_t len)
{
	struct seen *s = ctx;
	if (s->frames < 16) {
		s->types[s->frames] = type;
		s->lens[s->frames] = len;
	}
	memcpy(s->last, payload, len < sizeof s->last ? len : sizeof s->last);
	s->frames++;
	return s->stop_after && s->frames >= s->stop_after ? 1 : 0;
}

static size_t put_frame(uint8_t *out, uint32_t type, const void *payload, uint32_t len)
{
	memcpy(out, &type, 4);
	memcpy(out + 4, &len, 4);
	if (len)
		memcpy(out + 8, payload, len);
	return 8 + len;
}

static size_t sample_stream(uint8_t *buf)
{
	struct al_ready ready = {.version = AL_PROTO_VERSION};
	size_t n = put_frame(buf, AL_FRAME_READY, &ready, sizeof ready);
	n += put_frame(buf + n, AL_FRAME_STDOUT, "hello\n", 6);
	n += put_frame(buf + n, AL_FRAME_STDERR, "", 0);
	struct al_exit e = {.exit_code = 3, .skipped_len = 6};
	uint8_t exit_payload[sizeof e + 6];
	memcpy(exit_payload, &e, sizeof e);
	memcpy(exit_payload + sizeof e, "12 a.b\n", 6);
	n += put_frame(buf + n, AL_FRAME_EXIT, exit_payload, sizeof exit_payload);
	return n;
}

static void decodes_a_stream_in_one_piece(void)
{
	uint8_t buf[512];
	size_t n = sample_stream(buf);
	struct frame_decoder d;
	struct seen s = {0};
	frame_decoder_init(&d);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0);
	CHECK(s.frames == 4);
	CHECK(s.types[0] == AL_FRAME_READY && s.types[1] == AL_FRAME_STDOUT);
	CHECK(s.types[2] == AL_FRAME_STDERR && s.lens[2] == 0);
	CHECK(s.types[3] == AL_FRAME_EXIT);
	frame_decoder_free(&d);
}

static void decodes_a_stream_byte_by_byte(void)
{
	uint8_t buf[512];
	size_t n = sample_stream(buf);
	struct frame_decoder d;
	struct seen s = {0};
	frame_decoder_init(&d);
	for (size_t i = 0; i < n; i++)
		CHECK(frame_decoder_feed(&d, buf + i, 1, record, &s) == 0);
	CHECK(s.frames == 4);
	CHECK(s.lens[1] == 6);
	frame_decoder_free(&d);
}

static int expect_refused(uint32_t type, uint32_t len)
{
	uint8_t header[8];
	memcpy(header, &type, 4);
	memcpy(header + 4, &len, 4);
	struct frame_decoder d;
	struct seen s = {0};
	frame_decoder_init(&d);
	int rc = frame_decoder_feed(&d, header, sizeof header, record, &s);
	int refused = rc == -EPROTO && d.error != NULL && s.frames == 0 && d.payload == NULL;
	/* once refused, the stream stays refused */
	refused &= frame_decoder_feed(&d, header, sizeof header, record, &s) == -EPROTO;
	frame_decoder_free(&d);
	return refused;
}

static void refuses_bad_headers_before_buffering(void)
{
	CHECK(expect_refused(0, 0));                                    /* unknown type */
	CHECK(expect_refused(77, 4));                                   /* unknown type */
	CHECK(expect_refused(AL_FRAME_RUN, 128));                       /* host-only type */
	CHECK(expect_refused(AL_FRAME_STDOUT, AL_FRAME_MAX_OUTPUT_CHUNK + 1));
	CHECK(expect_refused(AL_FRAME_STDERR, 0xFFFFFFFFu));
	CHECK(expect_refused(AL_FRAME_READY, 4));                       /* wrong size */
	CHECK(expect_refused(AL_FRAME_READY, 0));
	CHECK(expect_refused(AL_FRAME_EXIT, sizeof(struct al_exit) - 1));
	CHECK(expect_refused(AL_FRAME_EXIT, AL_FRAME_MAX_PAYLOAD + 1));
	CHECK(expect_refused(AL_FRAME_ERROR, AL_FRAME_MAX_ERROR_TEXT + 1));
}

static void handler_can_stop_decoding(void)
{
	uint8_t buf[512];
	size_t n = sample_stream(buf);
	struct frame_decoder d;
	struct seen s = {.stop_after = 2};
	frame_decoder_init(&d);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 1);
	CHECK(s.frames == 2);
	frame_decoder_free(&d);
}

static void exit_lengths_must_add_up(void)
{
	uint8_t payload[sizeof(struct al_exit) + 10] = {0};
	struct al_exit e = {.files_len = 4, .skipped_len = 6};
	const uint8_t *files, *skipped;
	struct al_exit out;
	memcpy(payload, &e, sizeof e);
	CHECK(frame_parse_exit(payload, sizeof payload, &out, &files, &skipped) == 0);
	CHECK(files == payload + sizeof e && skipped == files + 4);

	e.skipped_len = 7; /* one more than is there */
	memcpy(payload, &e, sizeof e);
	CHECK(frame_parse_exit(payload, sizeof payload, &out, &files, &skipped) == -EPROTO);

	e = (struct al_exit){.files_len = 0xFFFFFFFFu, .skipped_len = 11}; /* wraps in 32 bits */
	memcpy(payload, &e, sizeof e);
	CHECK(frame_parse_exit(payload, sizeof payload, &out, &files, &skipped) == -EPROTO);

	e = (struct al_exit){.exit_code = 256};
	memcpy(payload, &e, sizeof e);
	CHECK(frame_parse_exit(payload, sizeof e, &out, &files, &skipped) == -EPROTO);
	e = (struct al_exit){.exit_code = -1, .signal = 65};
	memcpy(payload, &e, sizeof e);
	CHECK(frame_parse_exit(payload, sizeof e, &out, &files, &skipped) == -EPROTO);
	CHECK(frame_parse_exit(payload, sizeof e - 1, &out, &files, &skipped) == -EPROTO);
}

static void run_header_is_bounded(void)
{
	uint8_t out[AL_FRAME_HEADER_SIZE + sizeof(struct al_run)];
	struct al_run run = {.version = AL_PROTO_VERSION, .code_len = 5};
	CHECK(frame_encode_run_header(&run, out, sizeof out) == 0);
	uint32_t len;
	memcpy(&len, out + 4, 4);
	CHECK(len == sizeof run + 5);
	run.code_len = AL_FRAME_MAX_PAYLOAD;
	CHECK(frame_encode_run_header(&run, out, sizeof out) == -EMSGSIZE);
	CHECK(frame_encode_run_header(&run, out, sizeof out - 1) == -EMSGSIZE);
}

int main(void)
{
	TEST(decodes_a_stream_in_one_piece);
	TEST(decodes_a_stream_byte_by_byte);
	TEST(refuses_bad_headers_before_buffering);
	TEST(handler_can_stop_decoding);
	TEST(exit_lengths_must_add_up);
	TEST(run_header_is_bounded);
	return TEST_EXIT_STATUS();
}
