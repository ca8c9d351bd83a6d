/* The host's decoder of guest frames: good streams in any chunking, every kind of bad frame
 * refused before its payload is buffered, the version, streams and credit of protocol 3. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"
#include "check.h"
#include "sandbox_internal.h"

struct seen {
	int frames;
	uint32_t types[16];
	uint32_t streams[16];
	size_t lens[16];
	uint8_t last[64];
	int stop_after; /* handler returns 1 after this many frames (0: never) */
};

static int record(void *ctx, uint32_t type, uint32_t stream, const uint8_t *payload, size_t len)
{
	struct seen *s = ctx;
	if (s->frames < 16) {
		s->types[s->frames] = type;
		s->streams[s->frames] = stream;
		s->lens[s->frames] = len;
	}
	if (len)
		memcpy(s->last, payload, len < sizeof s->last ? len : sizeof s->last);
	s->frames++;
	return s->stop_after && s->frames >= s->stop_after ? 1 : 0;
}

/* A frame of protocol 3 on stream (flags 0). */
static size_t put_frame_on(uint8_t *out, uint32_t type, uint32_t stream, const void *payload,
			   uint32_t len)
{
	struct al_frame_header h = {.type = type, .length = len, .stream = stream};
	memcpy(out, &h, sizeof h);
	if (len)
		memcpy(out + sizeof h, payload, len);
	return sizeof h + len;
}

/* A frame of the conversation (stream 0). */
static size_t put_frame(uint8_t *out, uint32_t type, const void *payload, uint32_t len)
{
	return put_frame_on(out, type, AL_STREAM_CONVERSATION, payload, len);
}

/* A decoder as a run has it: the output streams open with a window of window bytes. */
static void decoder_for_run(struct frame_decoder *d, uint32_t window)
{
	frame_decoder_init(d);
	struct al_run run = {.version = AL_PROTO_VERSION, .output_window = window};
	CHECK(frame_open_output_streams(d, &run) == 0);
}

static size_t sample_stream(uint8_t *buf)
{
	struct al_ready ready = {.version = AL_PROTO_VERSION};
	size_t n = put_frame(buf, AL_FRAME_READY, &ready, sizeof ready);
	n += put_frame_on(buf + n, AL_FRAME_DATA, AL_STREAM_STDOUT, "hello\n", 6);
	n += put_frame_on(buf + n, AL_FRAME_DATA, AL_STREAM_STDERR, "", 0);
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
	decoder_for_run(&d, FRAME_OUTPUT_WINDOW);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0);
	CHECK(s.frames == 4);
	CHECK(s.types[0] == AL_FRAME_READY && s.streams[0] == AL_STREAM_CONVERSATION);
	CHECK(s.types[1] == AL_FRAME_DATA && s.streams[1] == AL_STREAM_STDOUT);
	CHECK(s.types[2] == AL_FRAME_DATA && s.streams[2] == AL_STREAM_STDERR && s.lens[2] == 0);
	CHECK(s.types[3] == AL_FRAME_EXIT);
	frame_decoder_free(&d);
}

static void decodes_a_stream_byte_by_byte(void)
{
	uint8_t buf[512];
	size_t n = sample_stream(buf);
	struct frame_decoder d;
	struct seen s = {0};
	decoder_for_run(&d, FRAME_OUTPUT_WINDOW);
	for (size_t i = 0; i < n; i++)
		CHECK(frame_decoder_feed(&d, buf + i, 1, record, &s) == 0);
	CHECK(s.frames == 4);
	CHECK(s.lens[1] == 6);
	frame_decoder_free(&d);
}

/* Whether a header alone is refused by a run's decoder, with nothing buffered and an error
 * that holds want (when not NULL). */
static int expect_refused_header(struct al_frame_header h, const char *want)
{
	uint8_t header[sizeof h];
	memcpy(header, &h, sizeof h);
	struct frame_decoder d;
	struct seen s = {0};
	decoder_for_run(&d, FRAME_OUTPUT_WINDOW);
	int rc = frame_decoder_feed(&d, header, sizeof header, record, &s);
	int refused = rc == -EPROTO && d.error != NULL && s.frames == 0 && d.payload == NULL;
	if (refused && want && !strstr(d.error, want)) {
		fprintf(stderr, "refused with \"%s\", not \"%s\"\n", d.error, want);
		refused = 0;
	}
	/* once refused, the stream stays refused */
	refused &= frame_decoder_feed(&d, header, sizeof header, record, &s) == -EPROTO;
	frame_decoder_free(&d);
	return refused;
}

static int expect_refused(uint32_t type, uint32_t len)
{
	uint32_t stream = type == AL_FRAME_DATA ? AL_STREAM_STDOUT : AL_STREAM_CONVERSATION;
	return expect_refused_header(
	    (struct al_frame_header){.type = type, .length = len, .stream = stream}, NULL);
}

static void refuses_bad_headers_before_buffering(void)
{
	CHECK(expect_refused(0, 0));                                    /* unknown type */
	CHECK(expect_refused(77, 4));                                   /* unknown type */
	CHECK(expect_refused(2, 6));                                    /* version 1's STDOUT */
	CHECK(expect_refused(AL_FRAME_RUN, 128));                       /* host-only type */
	CHECK(expect_refused(AL_FRAME_CREDIT, 4));                      /* host-only in v2 */
	CHECK(expect_refused(AL_FRAME_OPEN, 0));                        /* reserved */
	CHECK(expect_refused(AL_FRAME_DATA, AL_FRAME_MAX_OUTPUT_CHUNK + 1));
	CHECK(expect_refused(AL_FRAME_DATA, 0xFFFFFFFFu));
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
	decoder_for_run(&d, FRAME_OUTPUT_WINDOW);
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
	struct al_frame_header h;
	memcpy(&h, out, sizeof h);
	CHECK(h.type == AL_FRAME_RUN && h.length == sizeof run + 5);
	CHECK(h.stream == AL_STREAM_CONVERSATION && h.flags == 0);
	run.code_len = AL_FRAME_MAX_PAYLOAD;
	CHECK(frame_encode_run_header(&run, out, sizeof out) == -EMSGSIZE);
	CHECK(frame_encode_run_header(&run, out, sizeof out - 1) == -EMSGSIZE);
}


/* ---- EXIT frames carrying hostile tar archives ---- */

/* One ustar header block: name, octal size, type, checksum. */
static void tar_header(uint8_t *block, const char *name, size_t size, char type)
{
	memset(block, 0, 512);
	snprintf((char *)block, 100, "%s", name);
	memcpy(block + 100, "0000644", 8);
	memcpy(block + 108, "0000000", 8);
	memcpy(block + 116, "0000000", 8);
	snprintf((char *)block + 124, 12, "%011zo", size);
	memcpy(block + 136, "00000000000", 12);
	block[156] = (uint8_t)type;
	memcpy(block + 257, "ustar", 6);
	memcpy(block + 263, "00", 2);
	memset(block + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += block[i];
	snprintf((char *)block + 148, 8, "%06o", sum);
}

/* A pax record "LEN key=value\n", LEN counting itself. */
static size_t pax_record(char *out, const char *kv)
{
	size_t body = strlen(kv) + 2, len = body + 1;
	while (len != body + (size_t)snprintf(NULL, 0, "%zu", len))
		len++;
	return (size_t)sprintf(out, "%zu %s\n", len, kv);
}

/* Appends a member that holds one byte but that libarchive (pax, GNU sparse 0.1) expands to
 * logical bytes. Returns the bytes written. */
static size_t sparse_member(uint8_t *out, int i, size_t logical)
{
	char pax[512], kv[128];
	size_t n = 0;
	snprintf(kv, sizeof kv, "GNU.sparse.size=%zu", logical);
	n += pax_record(pax + n, kv);
	n += pax_record(pax + n, "GNU.sparse.numblocks=1");
	snprintf(kv, sizeof kv, "GNU.sparse.map=%zu,1", logical - 1);
	n += pax_record(pax + n, kv);
	char name[32];
	snprintf(name, sizeof name, "big%d", i);
	tar_header(out, "PaxHeader", n, 'x');
	memset(out + 512, 0, 512);
	memcpy(out + 512, pax, n);
	tar_header(out + 1024, name, 1, '0');
	memset(out + 1536, 0, 512);
	out[1536] = 'x';
	return 2048;
}

/* Runs an EXIT frame through the decoder as mcp/sandbox/ does: the run's limit set, the payload
 * split, the files unpacked within the cap. Returns archive_unpack's result (1 when the decoder
 * or the split refused it). */
static int exit_through_decoder(const uint8_t *tar, size_t tar_len, uint64_t cap,
				struct file_list *files)
{
	struct al_exit e = {.files_len = (uint32_t)tar_len};
	size_t len = sizeof e + tar_len;
	uint8_t *frame = malloc(AL_FRAME_HEADER_SIZE + len);
	uint8_t *payload = malloc(len);
	memcpy(payload, &e, sizeof e);
	memcpy(payload + sizeof e, tar, tar_len);
	put_frame(frame, AL_FRAME_EXIT, payload, (uint32_t)len);
	struct frame_decoder d;
	struct seen s = {.stop_after = 1};
	frame_decoder_init(&d);
	d.exit_limit = frame_exit_limit(cap);
	int rc = 1;
	if (frame_decoder_feed(&d, frame, AL_FRAME_HEADER_SIZE + len, record, &s) == 1 &&
	    s.frames == 1) {
		struct al_exit got;
		const uint8_t *ftar, *skipped;
		if (frame_parse_exit(d.payload, len, &got, &ftar, &skipped) == 0)
			rc = archive_unpack(ftar, got.files_len, 1000, cap, files);
	}
	frame_decoder_free(&d);
	free(frame);
	free(payload);
	return rc;
}

static void exit_with_sparse_members_is_refused(void)
{
	enum { MEMBERS = 100 };
	uint8_t *tar = calloc(MEMBERS * 2048 + 1024, 1);
	size_t n = 0;
	for (int i = 0; i < MEMBERS; i++)
		/* each within the archive's own length, as a check of single sizes allows */
		n += sparse_member(tar + n, i, 190 * 1024);
	n += 1024; /* end of archive */
	struct file_list files = {0};
	CHECK(exit_through_decoder(tar, n, 1 << 20, &files) == -EPROTO);
	CHECK(files.len == 0);
	file_list_free(&files);
	free(tar);
}

static void exit_files_past_the_cap_are_listed_not_read(void)
{
	enum { MEMBERS = 5, SIZE = 300 * 1024 };
	uint8_t *tar = calloc(MEMBERS * (SIZE + 512) + 1024, 1);
	size_t n = 0;
	for (int i = 0; i < MEMBERS; i++) {
		char name[16];
		snprintf(name, sizeof name, "f%d", i);
		tar_header(tar + n, name, SIZE, '0');
		memset(tar + n + 512, 'a' + i, SIZE);
		n += 512 + SIZE;
	}
	n += 1024;
	struct file_list files = {0};
	CHECK(exit_through_decoder(tar, n, 1 << 20, &files) == 0);
	CHECK(files.len == MEMBERS);
	uint64_t returned = 0;
	for (size_t i = 0; i < files.len; i++) {
		CHECK(files.items[i].size == SIZE);
		CHECK(files.items[i].returned == (i < 3)); /* 3 x 300 KiB fit in 1 MiB */
		if (files.items[i].returned) {
			returned += files.items[i].size;
			CHECK(files.items[i].data[SIZE - 1] == 'a' + i);
		}
	}
	CHECK(returned <= 1 << 20);
	file_list_free(&files);
	free(tar);
}

static void exit_longer_than_the_cap_allows_is_refused_before_buffering(void)
{
	struct frame_decoder d;
	struct seen s = {0};
	frame_decoder_init(&d);
	d.exit_limit = frame_exit_limit(1 << 20);
	CHECK(d.exit_limit < 8u << 20); /* the cap, headers and the skipped list: not 40 MiB */
	uint8_t header[AL_FRAME_HEADER_SIZE];
	put_frame(header, AL_FRAME_EXIT, NULL, 0);
	uint32_t len = (uint32_t)d.exit_limit + 1;
	memcpy(header + 4, &len, 4);
	CHECK(frame_decoder_feed(&d, header, sizeof header, record, &s) == -EPROTO);
	CHECK(d.payload == NULL && s.frames == 0);
	frame_decoder_free(&d);
}


/* ---- protocol 3: the version, streams and credit ---- */

static void a_version_1_ready_is_refused_with_a_clear_message(void)
{
	/* what a version 1 agent sends first: an 8-byte header and its 8-byte READY */
	const uint32_t v1_ready[4] = {AL_FRAME_READY, 8, 1, 0};
	struct frame_decoder d;
	struct seen s = {0};
	frame_decoder_init(&d);
	CHECK(frame_decoder_feed(&d, (const uint8_t *)v1_ready, sizeof v1_ready, record, &s) ==
	      -EPROTO);
	CHECK(s.frames == 0 && d.wrong_version && d.error != NULL);
	CHECK(d.error && strstr(d.error, "the guest agent speaks wire protocol 1, this airlock "
					 "speaks 3") != NULL);
	CHECK(d.error && strstr(d.error, "`airlock image build` makes it again") != NULL);
	frame_decoder_free(&d);
}

static void a_ready_of_another_version_is_refused(void)
{
	uint8_t buf[64];
	struct al_ready ready = {.version = 4};
	size_t n = put_frame(buf, AL_FRAME_READY, &ready, sizeof ready);
	struct frame_decoder d;
	struct seen s = {0};
	frame_decoder_init(&d);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == -EPROTO);
	CHECK(s.frames == 0 && d.wrong_version);
	CHECK(d.error && strstr(d.error, "speaks wire protocol 4") != NULL);
	frame_decoder_free(&d);
}

static void control_frames_on_a_stream_other_than_0_are_refused(void)
{
	struct al_frame_header ready = {AL_FRAME_READY, sizeof(struct al_ready), 1, 0};
	struct al_frame_header exit = {AL_FRAME_EXIT, sizeof(struct al_exit), AL_STREAM_STDOUT, 0};
	struct al_frame_header error = {AL_FRAME_ERROR, 4, 16, 0};
	CHECK(expect_refused_header(ready, "stream other than 0"));
	CHECK(expect_refused_header(exit, "stream other than 0"));
	CHECK(expect_refused_header(error, "stream other than 0"));
}

static void frames_with_flags_set_are_refused(void)
{
	struct al_frame_header ready = {AL_FRAME_READY, sizeof(struct al_ready), 0, 1};
	struct al_frame_header data = {AL_FRAME_DATA, 4, AL_STREAM_STDOUT, 0x80000000u};
	CHECK(expect_refused_header(ready, "flags"));
	CHECK(expect_refused_header(data, "flags"));
}

static void data_on_a_stream_not_open_is_refused(void)
{
	struct al_frame_header on_0 = {AL_FRAME_DATA, 4, AL_STREAM_CONVERSATION, 0};
	struct al_frame_header on_3 = {AL_FRAME_DATA, 4, 3, 0};
	struct al_frame_header on_16 = {AL_FRAME_DATA, 4, AL_STREAM_FIRST_OPENED, 0};
	CHECK(expect_refused_header(on_0, "not open"));
	CHECK(expect_refused_header(on_3, "not open"));
	/* an egress stream's DATA, in a run without egress */
	CHECK(expect_refused_header(on_16, "without egress"));
	/* before RUN opened them, stdout and stderr are not open either */
	uint8_t buf[64];
	size_t n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDOUT, "x", 1);
	struct frame_decoder d;
	struct seen s = {0};
	frame_decoder_init(&d);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == -EPROTO && s.frames == 0);
	frame_decoder_free(&d);
}

static void data_beyond_the_credit_is_refused(void)
{
	enum { WINDOW = 100 };
	static uint8_t buf[4 * (AL_FRAME_HEADER_SIZE + WINDOW)], bytes[WINDOW];
	struct frame_decoder d;
	struct seen s = {0};
	decoder_for_run(&d, WINDOW);
	/* the whole window in two frames, with nothing consumed: no credit comes back */
	size_t n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDOUT, bytes, 60);
	n += put_frame_on(buf + n, AL_FRAME_DATA, AL_STREAM_STDOUT, bytes, 40);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0 && s.frames == 2);
	/* stderr has its own credit */
	n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDERR, bytes, WINDOW);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0 && s.frames == 3);
	/* one byte more on stdout is refused at its header */
	n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDOUT, bytes, 1);
	CHECK(frame_decoder_feed(&d, buf, AL_FRAME_HEADER_SIZE, record, &s) == -EPROTO);
	CHECK(s.frames == 3 && d.error && strstr(d.error, "beyond its credit") != NULL);
	frame_decoder_free(&d);

	/* a window's worth in one frame past a window is refused too */
	decoder_for_run(&d, WINDOW);
	n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDERR, bytes, WINDOW);
	n += put_frame_on(buf + n, AL_FRAME_DATA, AL_STREAM_STDERR, bytes, 0);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0);
	n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDERR, bytes, WINDOW);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == -EPROTO);
	frame_decoder_free(&d);
}

static void credit_is_due_once_half_a_window_is_consumed(void)
{
	enum { WINDOW = 1000 };
	static uint8_t buf[AL_FRAME_HEADER_SIZE + WINDOW], bytes[WINDOW];
	struct frame_decoder d;
	struct seen s = {0};
	decoder_for_run(&d, WINDOW);
	size_t n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDOUT, bytes, 300);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0);
	CHECK(frame_stream_consumed(&d, AL_STREAM_STDOUT, 300) == 0); /* not half yet */
	n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDOUT, bytes, 200);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0);
	CHECK(frame_stream_consumed(&d, AL_STREAM_STDOUT, 200) == 500); /* half: all of it */
	CHECK(frame_stream_consumed(&d, AL_STREAM_STDOUT, 0) == 0);      /* granted once */
	CHECK(frame_stream_consumed(&d, AL_STREAM_STDERR, 0) == 0);
	/* the grant counts: 500 left + 500 granted = a whole window may come now */
	n = put_frame_on(buf, AL_FRAME_DATA, AL_STREAM_STDOUT, bytes, WINDOW);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0 && s.frames == 3);
	CHECK(frame_stream_consumed(&d, AL_STREAM_STDOUT, WINDOW) == WINDOW);
	CHECK(frame_stream_consumed(&d, 5, 10) == 0); /* no such stream */
	frame_decoder_free(&d);

	/* the frame the host sends for it */
	struct frame_credit c = frame_encode_credit(AL_STREAM_STDERR, 500);
	CHECK(c.header.type == AL_FRAME_CREDIT && c.header.length == sizeof(struct al_credit));
	CHECK(c.header.stream == AL_STREAM_STDERR && c.header.flags == 0 && c.credit.bytes == 500);
}

static void streams_open_within_their_limits(void)
{
	struct frame_decoder d;
	frame_decoder_init(&d);
	CHECK(frame_stream_open(&d, AL_STREAM_CONVERSATION, 10) == -EINVAL);
	CHECK(frame_stream_open(&d, AL_STREAM_STDOUT, 0) == -EINVAL);
	CHECK(frame_stream_open(&d, AL_STREAM_STDOUT, AL_STREAM_MAX_WINDOW + 1) == -EINVAL);
	CHECK(frame_stream_open(&d, AL_STREAM_STDOUT, AL_STREAM_MAX_WINDOW) == 0);
	CHECK(frame_stream_open(&d, AL_STREAM_STDOUT, 10) == -EEXIST);
	for (uint32_t id = 2; id <= FRAME_MAX_STREAMS; id++)
		CHECK(frame_stream_open(&d, id, 10) == 0);
	CHECK(frame_stream_open(&d, 99, 10) == -ENOSPC);
	frame_decoder_free(&d);
}

/* Protocol 3's egress frames pass the decoder only in a run with egress, on streams from 16 up,
 * at their sizes; the egress part checks the rest. A STEP's lengths must add up. */
static void egress_and_step_frames_are_checked(void)
{
	uint8_t buf[256];
	struct al_close close_frame = {AL_CLOSE_DONE};
	struct frame_decoder d;
	struct seen s = {0};
	frame_decoder_init(&d);
	d.egress = true;
	size_t n = put_frame_on(buf, AL_FRAME_OPEN, AL_STREAM_FIRST_OPENED, NULL, 0);
	n += put_frame_on(buf + n, AL_FRAME_DATA, AL_STREAM_FIRST_OPENED, "GET", 3);
	n += put_frame_on(buf + n, AL_FRAME_CLOSE, AL_STREAM_FIRST_OPENED, &close_frame,
			  sizeof close_frame);
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0 && s.frames == 3);
	frame_decoder_free(&d);

	struct { /* refused even with egress: below 16, or the wrong size */
		uint32_t type, stream, len;
	} bad[] = {{AL_FRAME_OPEN, AL_STREAM_STDOUT, 0}, {AL_FRAME_OPEN, 16, 4},
		   {AL_FRAME_CLOSE, 16, 8}, {AL_FRAME_CREDIT, 16, 2}, {AL_FRAME_CLOSE, 0, 4}};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		frame_decoder_init(&d);
		d.egress = true;
		uint8_t zeros[8] = {0};
		n = put_frame_on(buf, bad[i].type, bad[i].stream, zeros, bad[i].len);
		s = (struct seen){0};
		CHECK(frame_decoder_feed(&d, buf, n, record, &s) == -EPROTO && s.frames == 0);
		frame_decoder_free(&d);
	}
	/* a run without egress refuses them all */
	frame_decoder_init(&d);
	n = put_frame_on(buf, AL_FRAME_OPEN, AL_STREAM_FIRST_OPENED, NULL, 0);
	s = (struct seen){0};
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == -EPROTO && s.frames == 0);
	CHECK(d.error && strstr(d.error, "without egress"));
	frame_decoder_free(&d);

	/* STEP: output_len must be what follows the header */
	struct al_step step = {.kind = AL_STEP_INSTALL, .output_len = 5};
	uint8_t payload[sizeof step + 5];
	memcpy(payload, &step, sizeof step);
	memcpy(payload + sizeof step, "hello", 5);
	frame_decoder_init(&d);
	n = put_frame(buf, AL_FRAME_STEP, payload, sizeof payload);
	s = (struct seen){0};
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == 0 && s.frames == 1);
	frame_decoder_free(&d);
	step.output_len = 6;
	memcpy(payload, &step, sizeof step);
	frame_decoder_init(&d);
	n = put_frame(buf, AL_FRAME_STEP, payload, sizeof payload);
	s = (struct seen){0};
	CHECK(frame_decoder_feed(&d, buf, n, record, &s) == -EPROTO && s.frames == 0);
	frame_decoder_free(&d);
}

int main(void)
{
	TEST(egress_and_step_frames_are_checked);
	TEST(decodes_a_stream_in_one_piece);
	TEST(decodes_a_stream_byte_by_byte);
	TEST(refuses_bad_headers_before_buffering);
	TEST(handler_can_stop_decoding);
	TEST(exit_lengths_must_add_up);
	TEST(run_header_is_bounded);
	TEST(exit_with_sparse_members_is_refused);
	TEST(exit_files_past_the_cap_are_listed_not_read);
	TEST(exit_longer_than_the_cap_allows_is_refused_before_buffering);
	TEST(a_version_1_ready_is_refused_with_a_clear_message);
	TEST(a_ready_of_another_version_is_refused);
	TEST(control_frames_on_a_stream_other_than_0_are_refused);
	TEST(frames_with_flags_set_are_refused);
	TEST(data_on_a_stream_not_open_is_refused);
	TEST(data_beyond_the_credit_is_refused);
	TEST(credit_is_due_once_half_a_window_is_consumed);
	TEST(streams_open_within_their_limits);
	return TEST_EXIT_STATUS();
}
