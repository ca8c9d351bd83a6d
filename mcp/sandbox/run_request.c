/* The request going in and the result coming out: RUN built and sent, output collected within
 * the caps and its credit granted back, EXIT taken apart; and the language names of
 * agent/proto.h's table.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "sandbox_internal.h"
#include "sandbox.h"

static void on_request_written(uv_write_t *req, int status)
{
	struct sandbox *sb = req->data;
	free(sb->request);
	sb->request = NULL;
	if (status == UV_EPIPE || status == UV_ECONNRESET)
		sandbox_channel_closed(sb);
	else if (status < 0 && status != UV_ECANCELED)
		sandbox_fail(sb, -EIO, "cannot send the request to the guest: %s", uv_strerror(status));
}

/* A restored VM runs no request once its snapshot's memory file was written (sandbox.h): it
 * may have been restored from the change. Fails the sandbox and returns true then. */
bool sandbox_snapshot_written_since(struct sandbox *sb)
{
	char why[PATH_MAX + 128];
	if (!sb->vm.snapshot_dir ||
	    snapshot_memory_unchanged(sb->vm.snapshot_dir, sb->vm.snapshot_memory_ctime_ns, why,
				      sizeof why) == 0)
		return false;
	sandbox_fail(sb, -EINVAL, "%s; `airlock image build` makes it again", why);
	return true;
}

int sandbox_send_request(struct sandbox *sb)
{
	if (getrandom(sb->run.entropy, sizeof sb->run.entropy, 0) != sizeof sb->run.entropy)
		return -errno;
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	sb->run.wall_clock_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec;
	int rc = frame_encode_run_header(&sb->run, sb->request, sb->request_len);
	if (rc)
		return rc;
	if (sb->egress_policy && (rc = sandbox_start_egress(sb)) != 0)
		return rc;
	uv_buf_t buf = uv_buf_init((char *)sb->request, (unsigned)sb->request_len);
	sb->write_req.data = sb;
	rc = uv_write(&sb->write_req, (uv_stream_t *)&sb->channel, &buf, 1, on_request_written);
	if (rc)
		return rc;
	sb->run_sent_ns = sandbox_now_ns();
	sb->phase = PHASE_RUNNING;
	uv_timer_start(&sb->timer, sandbox_on_timeout, (uint64_t)sb->run.timeout_ms + RUN_GRACE_MS, 0);
	return 0;
}

/* Appends output. The agent forwards at most the cap and drops the rest itself, so a guest
 * that sends more is not the agent: it is refused, and its VM ended, rather than left to keep
 * the loop decoding what would be thrown away until the deadline. */
int sandbox_append_output(struct byte_buffer *b, uint64_t cap, const uint8_t *data, size_t len)
{
	size_t room = b->len < cap ? (size_t)(cap - b->len) : 0;
	if (len > room)
		return -EPROTO;
	if (len == 0)
		return 0;
	if (b->len + len > b->cap) {
		size_t new_cap = b->cap ? b->cap : 4096;
		while (new_cap < b->len + len)
			new_cap *= 2;
		uint8_t *p = realloc(b->data, new_cap);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->cap = new_cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int sandbox_take_exit(struct sandbox *sb, const uint8_t *payload, size_t len)
{
	struct al_exit e;
	const uint8_t *files, *skipped;
	if (frame_parse_exit(payload, len, &e, &files, &skipped) != 0 ||
	    e.files_len > frame_exit_max_files(sb->run.out_files_cap) ||
	    e.skipped_len > (uint64_t)FRAME_EXIT_MAX_FILES * FRAME_SKIPPED_LINE_MAX)
		return -EPROTO;
	sb->exit_payload = frame_decoder_take_payload(&sb->decoder); /* payload, not a copy */
	struct sandbox_result *r = &sb->res;
	r->exited = e.signal == 0 && e.exit_code >= 0;
	r->exit_code = e.exit_code;
	r->signal = e.signal;
	r->timed_out = (e.flags & AL_EXIT_TIMED_OUT) != 0;
	r->stdout_truncated |= (e.flags & AL_EXIT_STDOUT_TRUNCATED) != 0;
	r->stderr_truncated |= (e.flags & AL_EXIT_STDERR_TRUNCATED) != 0;
	r->files_truncated = (e.flags & AL_EXIT_FILES_TRUNCATED) != 0;
	r->not_run = (e.flags & AL_EXIT_NOT_RUN) != 0;
	sb->exit_kept = (e.flags & AL_EXIT_KEPT) != 0;
	r->stdout_total = e.stdout_bytes;
	r->stderr_total = e.stderr_bytes;
	r->files_tar = e.files_len ? sb->exit_payload + (files - payload) : NULL;
	r->files_len = e.files_len;
	r->skipped = e.skipped_len ? (const char *)sb->exit_payload + (skipped - payload) : NULL;
	r->skipped_len = e.skipped_len;
	r->duration_ms = (double)(sandbox_now_ns() - sb->run_sent_ns) / 1e6;
	return 0;
}

int sandbox_build_request(struct sandbox *sb, const struct sandbox_request *req)
{
	uint8_t *setup;
	size_t setup_len;
	int rc = sandbox_build_setup(req, &setup, &setup_len);
	if (rc)
		return rc;
	uint64_t body = (uint64_t)req->code_len + req->stdin_len + req->files_len + setup_len;
	if (body + sizeof(struct al_run) > AL_FRAME_MAX_PAYLOAD) {
		free(setup);
		return -EMSGSIZE;
	}
	bool egress = sandbox_request_has_egress(req);
	sb->run = (struct al_run){
		.version = AL_PROTO_VERSION,
		.language = req->language,
		.timeout_ms = req->timeout_ms,
		.output_window = FRAME_OUTPUT_WINDOW,
		.stdout_cap = req->stdout_cap,
		.stderr_cap = req->stderr_cap,
		.out_files_cap = req->out_files_cap,
		.code_len = (uint32_t)req->code_len,
		.stdin_len = (uint32_t)req->stdin_len,
		.files_len = (uint32_t)req->files_len,
		.setup_len = (uint32_t)setup_len,
		.flags = (egress ? AL_RUN_EGRESS : 0) | (req->cell || req->keep ? AL_RUN_CELL : 0) |
			 (req->keep ? AL_RUN_KEEP : 0),
	};
	sb->decoder.exit_limit = frame_exit_limit(req->out_files_cap);
	sb->decoder.egress = egress;
	sb->egress_policy = egress ? &req->policy->egress : NULL;
	sb->on_output = req->on_output;
	sb->output_ctx = req->output_ctx;
	sb->installing = req->n_packages > 0;
	rc = frame_open_output_streams(&sb->decoder, &sb->run);
	if (rc) {
		free(setup);
		return rc;
	}
	sb->request_len = AL_FRAME_HEADER_SIZE + sizeof(struct al_run) + body;
	sb->request = malloc(sb->request_len);
	if (!sb->request) {
		free(setup);
		return -ENOMEM;
	}
	uint8_t *p = sb->request + AL_FRAME_HEADER_SIZE + sizeof(struct al_run);
	if (req->code_len)
		memcpy(p, req->code, req->code_len);
	p += req->code_len;
	if (req->stdin_len)
		memcpy(p, req->stdin_data, req->stdin_len);
	p += req->stdin_len;
	if (req->files_len)
		memcpy(p, req->files_tar, req->files_len);
	p += req->files_len;
	if (setup_len)
		memcpy(p, setup, setup_len);
	free(setup);
	return 0;
}

int sandbox_language(const char *name, enum al_language *out)
{
	for (int l = AL_LANG_FIRST; l < AL_LANG_END; l++)
		if (strcmp(name, al_language_name((uint32_t)l)) == 0) {
			*out = (enum al_language)l;
			return 0;
		}
	return -EINVAL;
}

void sandbox_language_list(char *out, size_t out_len)
{
	size_t used = 0;
	if (out_len)
		out[0] = '\0';
	for (uint32_t l = AL_LANG_FIRST; l < AL_LANG_END && used < out_len; l++) {
		const char *sep = l == AL_LANG_FIRST ? "" : l + 1 == AL_LANG_END ? " or " : ", ";
		int n = snprintf(out + used, out_len - used, "%s%s", sep, al_language_name(l));
		used += n > 0 ? (size_t)n : 0;
	}
}

const char *sandbox_language_name(enum al_language language)
{
	const char *name = al_language_name(language);
	return name ? name : "unknown";
}

/* A CREDIT frame in flight: freed when written (or cancelled as the channel closes). */
static void on_credit_written(uv_write_t *req, int status);
struct credit_write {
	uv_write_t req; /* first: the callback gets it back */
	struct frame_credit frame;
};

static void on_credit_written(uv_write_t *req, int status)
{
	struct sandbox *sb = req->data;
	free(req);
	if (status == UV_EPIPE || status == UV_ECONNRESET)
		sandbox_channel_closed(sb);
	else if (status < 0 && status != UV_ECANCELED)
		sandbox_fail(sb, -EIO, "cannot send credit to the guest: %s", uv_strerror(status));
}

int sandbox_send_credit(struct sandbox *sb, uint32_t stream, uint32_t bytes)
{
	struct credit_write *w = malloc(sizeof *w);
	if (!w)
		return -ENOMEM;
	w->frame = frame_encode_credit(stream, bytes);
	w->req.data = sb;
	uv_buf_t buf = uv_buf_init((char *)&w->frame, sizeof w->frame);
	int rc = uv_write(&w->req, (uv_stream_t *)&sb->channel, &buf, 1, on_credit_written);
	if (rc)
		free(w);
	return rc;
}

/* Any frame in flight: freed when written (or cancelled as the channel closes). */
struct frame_write {
	uv_write_t req; /* first: the callback gets it back */
	struct al_frame_header header;
	uint8_t payload[];
};

int sandbox_send_frame(void *ctx, uint32_t type, uint32_t stream, const void *payload, size_t len)
{
	struct sandbox *sb = ctx;
	if (sb->phase == PHASE_ENDING || sb->channel_eof)
		return -EPIPE;
	struct frame_write *w = malloc(sizeof *w + len);
	if (!w)
		return -ENOMEM;
	w->header = frame_header(type, stream, (uint32_t)len);
	if (len)
		memcpy(w->payload, payload, len);
	w->req.data = sb;
	uv_buf_t bufs[2] = {uv_buf_init((char *)&w->header, sizeof w->header),
			    uv_buf_init((char *)w->payload, (unsigned)len)};
	int rc = uv_write(&w->req, (uv_stream_t *)&sb->channel, bufs, len ? 2 : 1,
			  on_credit_written);
	if (rc) {
		free(w);
		return rc;
	}
	return 0;
}

int sandbox_start_egress(struct sandbox *sb)
{
	return egress_new(sb->loop, sb->egress_policy, sb->installing, sandbox_send_frame, sb,
			  &sb->egress);
}

void sandbox_end_egress(struct sandbox *sb, void (*closed)(void *sb))
{
	struct sandbox_result *r = &sb->res;
	if (!sb->egress)
		return;
	size_t n, unlisted;
	const struct egress_attempt *a = egress_attempts(sb->egress, &n, &unlisted);
	r->egress = true;
	r->network = n ? malloc(n * sizeof *r->network) : NULL;
	if (r->network)
		memcpy(r->network, a, n * sizeof *r->network);
	r->network_len = r->network ? n : 0;
	r->network_unlisted = unlisted + (n && !r->network ? n : 0);
	struct egress *e = sb->egress;
	sb->egress = NULL;
	sb->open_handles++;
	egress_close(e, closed, sb);
}

static int copy_bytes(struct byte_buffer *b, const uint8_t *data, size_t len)
{
	free(b->data);
	*b = (struct byte_buffer){0};
	if (len == 0)
		return 0;
	b->data = malloc(len);
	if (!b->data)
		return -ENOMEM;
	memcpy(b->data, data, len);
	b->len = b->cap = len;
	return 0;
}

int sandbox_take_step(struct sandbox *sb, const uint8_t *payload, size_t len)
{
	struct al_step step;
	memcpy(&step, payload, sizeof step); /* the decoder checked the lengths */
	const uint8_t *output = payload + sizeof step;
	size_t output_len = len - sizeof step;
	struct sandbox_result *r = &sb->res;
	if (step.kind == AL_STEP_INSTALL) {
		r->installed = true;
		r->install_ok = step.exit_code == 0 && !step.stops_run;
		r->install_ms = step.duration_ms;
		sb->installing = false;
		egress_install_done(sb->egress);
		return copy_bytes(&r->install_log, output, output_len);
	}
	r->scanned = true;
	r->scan_refused = step.stops_run != 0;
	return copy_bytes(&r->scan_output, output, output_len);
}
