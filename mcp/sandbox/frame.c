/* Incremental, defensive decoding of the guest's frames. See sandbox_internal.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_internal.h"

bool frame_type_known(uint32_t type)
{
	switch (type) {
	case AL_FRAME_READY:
	case AL_FRAME_DATA:
	case AL_FRAME_EXIT:
	case AL_FRAME_ERROR:
	case AL_FRAME_STEP:
	case AL_FRAME_OPEN:
	case AL_FRAME_CREDIT:
	case AL_FRAME_CLOSE:
		return true;
	default:
		return false;
	}
}

size_t frame_max_payload(uint32_t type)
{
	switch (type) {
	case AL_FRAME_READY:
		return sizeof(struct al_ready);
	case AL_FRAME_DATA:
		return AL_FRAME_MAX_OUTPUT_CHUNK;
	case AL_FRAME_STEP:
		return sizeof(struct al_step) + AL_STEP_MAX_OUTPUT;
	case AL_FRAME_OPEN:
		return 0;
	case AL_FRAME_CREDIT:
		return sizeof(struct al_credit);
	case AL_FRAME_CLOSE:
		return sizeof(struct al_close);
	case AL_FRAME_EXIT:
		return AL_FRAME_MAX_PAYLOAD;
	case AL_FRAME_ERROR:
		return AL_FRAME_MAX_ERROR_TEXT;
	default:
		return 0;
	}
}

void frame_decoder_init(struct frame_decoder *d)
{
	memset(d, 0, sizeof *d);
}

void frame_decoder_free(struct frame_decoder *d)
{
	free(d->payload);
	memset(d, 0, sizeof *d);
}

static int fail(struct frame_decoder *d, const char *why)
{
	d->error = why;
	return -EPROTO;
}

static struct frame_stream *find_stream(struct frame_decoder *d, uint32_t id)
{
	for (size_t i = 0; id != 0 && i < FRAME_MAX_STREAMS; i++)
		if (d->streams[i].id == id)
			return &d->streams[i];
	return NULL;
}

static int fail_version(struct frame_decoder *d, uint32_t version)
{
	snprintf(d->error_text, sizeof d->error_text,
		 "the guest agent speaks wire protocol %u, this airlock speaks %u: the image was "
		 "built by %s airlock; `airlock image build` makes it again",
		 version, AL_PROTO_VERSION, version < AL_PROTO_VERSION ? "an older" : "another");
	d->wrong_version = true;
	return fail(d, d->error_text);
}

/* The stream a frame of this type may travel on, and the credit DATA spends on an output
 * stream. An egress stream's frames (proto.h) are the egress part's to check (egress.c): only
 * their place is checked here. */
static int check_stream(struct frame_decoder *d)
{
	bool egress_type = d->type == AL_FRAME_OPEN || d->type == AL_FRAME_CREDIT ||
			   d->type == AL_FRAME_CLOSE;
	if (egress_type || (d->type == AL_FRAME_DATA && d->stream >= AL_STREAM_FIRST_OPENED)) {
		if (!d->egress)
			return fail(d, "an egress frame in a run without egress");
		if (d->stream < AL_STREAM_FIRST_OPENED)
			return fail(d, "an egress frame on a stream below the first opened one");
		if (d->type == AL_FRAME_CREDIT && d->length != sizeof(struct al_credit))
			return fail(d, "CREDIT of the wrong size");
		if (d->type == AL_FRAME_CLOSE && d->length != sizeof(struct al_close))
			return fail(d, "CLOSE of the wrong size");
		return 0;
	}
	if (d->type != AL_FRAME_DATA)
		return d->stream == AL_STREAM_CONVERSATION
			   ? 0
			   : fail(d, "a conversation frame on a stream other than 0");
	struct frame_stream *s = find_stream(d, d->stream);
	if (!s)
		return fail(d, "DATA on a stream that is not open");
	if (d->length > s->credit)
		return fail(d, "DATA sent beyond its credit");
	s->credit -= d->length; /* spent now: the payload is as good as taken in */
	return 0;
}

static int check_header(struct frame_decoder *d)
{
	struct al_frame_header h;
	memcpy(&h, d->header, sizeof h);
	d->type = h.type;
	d->length = h.length;
	d->stream = h.stream;
	/* A version 1 agent's READY: an 8-byte header and 8 bytes of payload, all of which this
	 * header has read; its payload's version lies where the stream is. */
	if (h.type == AL_FRAME_READY && h.length == 8)
		return fail_version(d, h.stream);
	if (h.flags != 0)
		return fail(d, "frame with reserved flags set");
	if (!frame_type_known(d->type))
		return fail(d, "unknown frame type");
	size_t max = frame_max_payload(d->type);
	if (d->length > max)
		return fail(d, "frame longer than its type allows");
	if (d->type == AL_FRAME_READY && d->length != sizeof(struct al_ready))
		return fail(d, "READY frame of the wrong size");
	if (d->type == AL_FRAME_EXIT && d->length < sizeof(struct al_exit))
		return fail(d, "EXIT frame shorter than its header");
	if (d->type == AL_FRAME_EXIT && d->exit_limit && d->length > d->exit_limit)
		return fail(d, "EXIT frame longer than the run's file cap allows");
	if (d->type == AL_FRAME_STEP && d->length < sizeof(struct al_step))
		return fail(d, "STEP frame shorter than its header");
	return check_stream(d);
}

/* What a whole frame must hold beyond its header's promises. */
static int check_payload(struct frame_decoder *d)
{
	if (d->type == AL_FRAME_STEP) {
		struct al_step step;
		memcpy(&step, d->payload, sizeof step);
		if (step.output_len != d->length - sizeof step || step.stops_run > 1 ||
		    (step.kind != AL_STEP_INSTALL && step.kind != AL_STEP_SCAN))
			return fail(d, "malformed STEP frame");
		return 0;
	}
	if (d->type != AL_FRAME_READY)
		return 0;
	struct al_ready ready;
	memcpy(&ready, d->payload, sizeof ready);
	if (ready.version != AL_PROTO_VERSION)
		return fail_version(d, ready.version);
	return 0;
}

static int reserve(struct frame_decoder *d, size_t need)
{
	if (need <= d->payload_cap)
		return 0;
	size_t cap = d->payload_cap ? d->payload_cap : 4096;
	while (cap < need)
		cap *= 2;
	if (cap > d->length)
		cap = d->length;
	uint8_t *p = realloc(d->payload, cap);
	if (!p)
		return -ENOMEM;
	d->payload = p;
	d->payload_cap = cap;
	return 0;
}

int frame_decoder_feed(struct frame_decoder *d, const uint8_t *data, size_t len,
		       frame_handler handler, void *ctx)
{
	if (d->error)
		return -EPROTO;
	while (len > 0) {
		if (d->header_have < AL_FRAME_HEADER_SIZE) {
			size_t take = AL_FRAME_HEADER_SIZE - d->header_have;
			if (take > len)
				take = len;
			memcpy(d->header + d->header_have, data, take);
			d->header_have += take;
			data += take;
			len -= take;
			if (d->header_have < AL_FRAME_HEADER_SIZE)
				return 0;
			int rc = check_header(d);
			if (rc)
				return rc;
			d->payload_have = 0;
		}
		size_t take = d->length - d->payload_have;
		if (take > len)
			take = len;
		if (take) {
			int rc = reserve(d, d->payload_have + take);
			if (rc)
				return fail(d, "out of memory");
			memcpy(d->payload + d->payload_have, data, take);
			d->payload_have += take;
			data += take;
			len -= take;
		}
		if (d->payload_have < d->length)
			return 0;
		d->header_have = 0; /* the next byte starts a new frame */
		int rc = check_payload(d);
		if (rc)
			return rc;
		rc = handler(ctx, d->type, d->stream, d->payload, d->length);
		if (rc)
			return rc;
	}
	return 0;
}

uint64_t frame_exit_max_files(uint64_t files_cap)
{
	return files_cap + (uint64_t)FRAME_EXIT_MAX_FILES * FRAME_TAR_MEMBER_OVERHEAD + FRAME_TAR_END;
}

size_t frame_exit_limit(uint64_t files_cap)
{
	uint64_t limit = sizeof(struct al_exit) + frame_exit_max_files(files_cap) +
			 (uint64_t)FRAME_EXIT_MAX_FILES * FRAME_SKIPPED_LINE_MAX;
	return limit < AL_FRAME_MAX_PAYLOAD ? (size_t)limit : AL_FRAME_MAX_PAYLOAD;
}

uint8_t *frame_decoder_take_payload(struct frame_decoder *d)
{
	uint8_t *p = d->payload;
	d->payload = NULL;
	d->payload_cap = 0;
	return p;
}

int frame_parse_exit(const uint8_t *payload, size_t len, struct al_exit *exit,
		     const uint8_t **files, const uint8_t **skipped)
{
	if (len < sizeof *exit)
		return -EPROTO;
	memcpy(exit, payload, sizeof *exit);
	uint64_t body = (uint64_t)exit->files_len + exit->skipped_len;
	if (body != len - sizeof *exit)
		return -EPROTO;
	if (exit->exit_code < -1 || exit->exit_code > 255 || exit->signal < 0 || exit->signal > 64)
		return -EPROTO;
	*files = payload + sizeof *exit;
	*skipped = *files + exit->files_len;
	return 0;
}

int frame_stream_open(struct frame_decoder *d, uint32_t id, uint32_t window)
{
	if (id == AL_STREAM_CONVERSATION || window == 0 || window > AL_STREAM_MAX_WINDOW)
		return -EINVAL;
	if (find_stream(d, id))
		return -EEXIST;
	for (size_t i = 0; i < FRAME_MAX_STREAMS; i++) {
		if (d->streams[i].id == 0) {
			d->streams[i] =
			    (struct frame_stream){.id = id, .window = window, .credit = window};
			return 0;
		}
	}
	return -ENOSPC;
}

int frame_open_output_streams(struct frame_decoder *d, const struct al_run *run)
{
	int rc = frame_stream_open(d, AL_STREAM_STDOUT, run->output_window);
	return rc ? rc : frame_stream_open(d, AL_STREAM_STDERR, run->output_window);
}

uint32_t frame_stream_consumed(struct frame_decoder *d, uint32_t id, size_t len)
{
	struct frame_stream *s = find_stream(d, id);
	if (!s)
		return 0;
	s->consumed += len;
	if (s->consumed * 2 < s->window)
		return 0;
	/* consumed never passes the window: the guest had at most that much credit */
	uint32_t grant = (uint32_t)s->consumed;
	s->credit += grant;
	s->consumed = 0;
	return grant;
}

struct al_frame_header frame_header(uint32_t type, uint32_t stream, uint32_t length)
{
	return (struct al_frame_header){.type = type, .length = length, .stream = stream};
}

struct frame_credit frame_encode_credit(uint32_t stream, uint32_t bytes)
{
	return (struct frame_credit){
	    .header = frame_header(AL_FRAME_CREDIT, stream, sizeof(struct al_credit)),
	    .credit = {.bytes = bytes}};
}

int frame_encode_run_header(const struct al_run *run, uint8_t *out, size_t out_len)
{
	uint64_t payload = sizeof *run + (uint64_t)run->code_len + run->stdin_len + run->files_len +
			   run->setup_len;
	if (out_len < AL_FRAME_HEADER_SIZE + sizeof *run || payload > AL_FRAME_MAX_PAYLOAD)
		return -EMSGSIZE;
	struct al_frame_header h =
	    frame_header(AL_FRAME_RUN, AL_STREAM_CONVERSATION, (uint32_t)payload);
	memcpy(out, &h, sizeof h);
	memcpy(out + sizeof h, run, sizeof *run);
	return 0;
}
