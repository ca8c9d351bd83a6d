/* One VM's life (see sandbox.h). The phases:
 *
 *   BOOTING   VM process spawned (booting, or restoring a snapshot and asked PING); waiting for
 *             READY (deadline: boot_timeout_ms)
 *   IDLE      READY came before a request (the warm pool); no deadline, the guest sits in HLT
 *   RUNNING   RUN sent; collecting STDOUT/STDERR (deadline: timeout + RUN_GRACE_MS)
 *   ENDING    the result is known; the VM is killed and every handle closed
 *
 * The result is delivered only after the VM process has been reaped and every libuv handle has
 * been closed, so a finished sandbox never leaves a process or an fd behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "frame.h"
#include "qmp.h"
#include "sandbox.h"
#include "readonly_files.h"
#include "snapshot_cache.h"
#include "vm_process.h"

/* After the program's limit the agent kills it and reports; the host waits this much longer for
 * that report before killing the VM itself. */
#define RUN_GRACE_MS 2000
/* After the channel's end-of-file, how long the VM process has to end, so that the error can say
 * how it ended (a signal, its status, its last log line) rather than only that it went silent. */
#define VM_END_AFTER_EOF_MS 2000
#define CHANNEL_FD_IN_VM 3
#define CONTROL_FD_IN_VM 4 /* tcg restore: QEMU's QMP monitor */
#define STATE_FD_IN_VM 5   /* tcg restore: the migration stream */
/* tcg: the files QEMU uses, opened here, so that it opens no host path itself (launcher.h) */
#define KERNEL_FD_IN_VM 6
#define ROOTFS_FD_IN_VM 7
#define MEMORY_FD_IN_VM 8 /* restoring */
#define FDS_IN_VM 9
#define DEFAULT_BOOT_TIMEOUT_MS 60000 /* a cold boot under emulation on a loaded 2-core host */

enum phase { PHASE_BOOTING, PHASE_IDLE, PHASE_RUNNING, PHASE_ENDING };

struct sandbox {
	uv_loop_t *loop;
	uv_process_t process;
	uv_pipe_t channel;
	uv_timer_t timer;
	uv_write_t write_req;
	uv_write_t ping_req;
	struct {
		struct al_frame_header header;
		struct al_ping ping;
	} ping; /* kept until written */
	enum phase phase;
	bool has_request;
	bool delivered; /* done() has been called */
	sandbox_ready_fn ready;
	int control_fd; /* tcg restore: our end of QEMU's QMP socket, open while the VM lives */
	bool process_running;
	bool channel_eof; /* the VM closed the channel while its process still ran */
	int64_t exit_status; /* of the VM process, once it has exited */
	int exit_signal;
	int open_handles; /* closed ones call back into on_handle_closed */

	struct sandbox_vm vm;
	struct al_run run;
	uint8_t *request; /* the whole RUN frame, kept until the write completes */
	size_t request_len;
	struct frame_decoder decoder;
	uint8_t *exit_payload; /* owns the files tar and skipped list of the result */

	char tmpdir[64];
	char serial_log[128];
	uint64_t spawned_ns, run_sent_ns;
	struct vm_cgroup cgroup;
	struct vm_identity identity; /* airlock as root: the uid its processes run as */

	struct sandbox_result res;
	sandbox_done_fn done;
	void *ctx;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void end(struct sandbox *sb);

/* Records a sandbox failure (the first one wins) and ends the VM. */
static void fail(struct sandbox *sb, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Guest text (the agent's ERROR, the boot log) goes into host-worded messages only quoted and
 * labelled as the guest's, so that a hostile guest cannot pass its words off as airlock's:
 * printable ASCII, a double quote turned into a single one, at most out_len - 1 bytes. */
static void quote_guest_text(const char *text, size_t len, char *out, size_t out_len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < out_len; i++) {
		char c = text[i];
		out[o++] = c == '"' ? '\'' : (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	out[o] = '\0';
}

static void boot_log_tail(const struct sandbox *sb, char *out, size_t out_len)
{
	out[0] = '\0';
	FILE *f = fopen(sb->serial_log, "r");
	if (!f)
		return;
	/* the log's end: a panic's call trace, and airlock-vmm's own record of the VM's end
	 * after it (vmm/kvm_report.c), take several KiB */
	static char buf[64 << 10];
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* A panic says the most; otherwise the last non-empty line. */
	char *line = strstr(buf, "Kernel panic");
	if (!line) {
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		line = strrchr(buf, '\n');
		line = line ? line + 1 : buf;
	}
	quote_guest_text(line, strcspn(line, "\r\n"), out, out_len);
}

static void fail(struct sandbox *sb, int error, const char *fmt, ...)
{
	if (sb->phase == PHASE_ENDING)
		return;
	sb->res.error = error;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sb->res.message, sizeof sb->res.message, fmt, ap);
	va_end(ap);
	if (error != -ECANCELED) {
		char tail[256];
		boot_log_tail(sb, tail, sizeof tail);
		size_t len = strlen(sb->res.message);
		if (tail[0] && len + 20 < sizeof sb->res.message)
			snprintf(sb->res.message + len, sizeof sb->res.message - len,
				 " (the guest's log, its words: \"%s\")", tail);
	}
	end(sb);
}

/* --verbose: the end of the guest's log, at most VERBOSE_LOG_MAX bytes of it (a guest may write
 * up to the log's own limit, tens of MiB). */
#define VERBOSE_LOG_MAX (256u << 10)

static void copy_boot_log_to_stderr(const struct sandbox *sb)
{
	FILE *f = fopen(sb->serial_log, "r");
	if (!f)
		return;
	char buf[4096];
	size_t n;
	fprintf(stderr, "---- guest boot log ----\n");
	if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)VERBOSE_LOG_MAX) {
		fprintf(stderr, "[%ld bytes before these left out]\n",
			ftell(f) - (long)VERBOSE_LOG_MAX);
		fseek(f, -(long)VERBOSE_LOG_MAX, SEEK_END);
	} else {
		rewind(f);
	}
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of guest boot log ----\n");
	fclose(f);
}

static unsigned live_sandboxes; /* spawned and not yet released */

unsigned sandbox_live_count(void)
{
	return live_sandboxes;
}

static void release(struct sandbox *sb)
{
	live_sandboxes--;
	frame_decoder_free(&sb->decoder);
	free(sb->request);
	free(sb->exit_payload);
	free(sb->res.out.data);
	free(sb->res.err.data);
	if (sb->control_fd >= 0)
		close(sb->control_fd);
	unlink(sb->serial_log);
	rmdir(sb->tmpdir);
	vm_cgroup_remove(&sb->cgroup); /* its process is reaped by now */
	vm_identity_release(&sb->identity);
	free(sb);
}

/* Hands the result over, once. */
static void deliver(struct sandbox *sb)
{
	if (sb->delivered)
		return;
	sb->delivered = true;
	sb->done(sb, &sb->res, sb->ctx);
}

static void on_handle_closed(uv_handle_t *handle)
{
	struct sandbox *sb = handle->data;
	if (--sb->open_handles > 0)
		return;
	if (sb->vm.verbose)
		copy_boot_log_to_stderr(sb);
	deliver(sb);
	release(sb);
}

static void close_handles_when_reaped(struct sandbox *sb)
{
	if (sb->process_running || sb->phase != PHASE_ENDING)
		return;
	if (!uv_is_closing((uv_handle_t *)&sb->process))
		uv_close((uv_handle_t *)&sb->process, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&sb->channel))
		uv_close((uv_handle_t *)&sb->channel, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&sb->timer))
		uv_close((uv_handle_t *)&sb->timer, on_handle_closed);
}

/* The VM process leads a process group of its own (spawned detached): a wrapper's children
 * (QEMU under bubblewrap) are in it and go with it, even those that had no time yet to ask for
 * their parent-death signal. */
static void kill_vm(struct sandbox *sb)
{
	if (kill(-sb->process.pid, SIGKILL) != 0)
		uv_process_kill(&sb->process, SIGKILL);
}

/* The result first, then the kill: signalling a QEMU's threads took up to 4 ms here. The sandbox
 * lives on until the VM is reaped, so the caller's callback cannot free it under us. */
static void on_deliver_due(uv_timer_t *timer)
{
	struct sandbox *sb = timer->data;
	deliver(sb);
	if (sb->process_running)
		kill_vm(sb);
}

/* The result is known (or the run failed): kill the VM; handles close once it is reaped. */
static void end(struct sandbox *sb)
{
	if (sb->phase == PHASE_ENDING)
		return;
	sb->phase = PHASE_ENDING;
	uv_timer_stop(&sb->timer);
	uv_read_stop((uv_stream_t *)&sb->channel);
	/* The result is final: the caller gets it on the next turn of the loop, then the VM is
	 * killed, not after the kernel has torn down the VM process (milliseconds for a QEMU); the
	 * sandbox lives on until it is reaped. Never from inside end() itself: its callers (the
	 * caller's own cancel or start, say) must not see their state freed under them. Verbose:
	 * the result waits for the boot log, which is complete once the VM is gone. */
	if (!sb->vm.verbose)
		uv_timer_start(&sb->timer, on_deliver_due, 0, 0);
	else if (sb->process_running)
		kill_vm(sb);
	close_handles_when_reaped(sb);
}

/* The VM ended before the program's EXIT: says how. */
static void fail_vm_ended(struct sandbox *sb)
{
	if (sb->process_running)
		fail(sb, -EIO, "the VM closed its channel before the program finished");
	else if (sb->exit_signal)
		fail(sb, -EIO, "the VM process was killed by signal %d (%s) before the program finished",
		     sb->exit_signal, strsignal(sb->exit_signal));
	else if (sb->exit_status != 0)
		fail(sb, -EIO, "the VM stopped (exit status %lld) before the program finished",
		     (long long)sb->exit_status);
	else
		fail(sb, -EIO, "the guest shut down before the program finished");
}

static void on_vm_end_overdue(uv_timer_t *timer)
{
	fail_vm_ended(timer->data);
}

static void on_process_exit(uv_process_t *process, int64_t status, int term_signal)
{
	struct sandbox *sb = process->data;
	sb->process_running = false;
	sb->exit_status = status;
	sb->exit_signal = term_signal;
	/* Not a failure yet, unless the channel is already at its end: the agent may have sent EXIT
	 * just before the VM ended, and those bytes can still sit in the socket. The channel's
	 * end-of-file decides (on_read). */
	if (sb->channel_eof)
		fail_vm_ended(sb);
	close_handles_when_reaped(sb);
}

static void on_timeout(uv_timer_t *timer)
{
	struct sandbox *sb = timer->data;
	if (sb->phase == PHASE_BOOTING) {
		fail(sb, -ETIMEDOUT,
		     "the guest did not become ready within %u s; run `airlock doctor`",
		     sb->vm.boot_timeout_ms / 1000);
		return;
	}
	/* The agent should have killed the program and reported by now: the guest is stuck or
	 * hostile. What it sent so far is the result. */
	sb->res.timed_out = true;
	sb->res.duration_ms = (double)(now_ns() - sb->run_sent_ns) / 1e6;
	end(sb);
}

/* The VM's end of the channel is gone (read EOF, or a write met EPIPE): its process is ending,
 * or has; the result says how once it is reaped. */
static void channel_closed_by_vm(struct sandbox *sb)
{
	if (sb->phase == PHASE_ENDING || sb->channel_eof)
		return;
	if (!sb->process_running) {
		fail_vm_ended(sb);
		return;
	}
	sb->channel_eof = true;
	uv_read_stop((uv_stream_t *)&sb->channel);
	uv_timer_start(&sb->timer, on_vm_end_overdue, VM_END_AFTER_EOF_MS, 0);
}

static void on_request_written(uv_write_t *req, int status)
{
	struct sandbox *sb = req->data;
	free(sb->request);
	sb->request = NULL;
	if (status == UV_EPIPE || status == UV_ECONNRESET)
		channel_closed_by_vm(sb);
	else if (status < 0 && status != UV_ECANCELED)
		fail(sb, -EIO, "cannot send the request to the guest: %s", uv_strerror(status));
}

/* A restored VM runs no request once its snapshot's memory file was written (snapshot_cache.h): it
 * may have been restored from the change. Fails the sandbox and returns true then. */
static bool snapshot_written_since(struct sandbox *sb)
{
	char why[PATH_MAX + 128];
	if (!sb->vm.snapshot_dir ||
	    snapshot_memory_unchanged(sb->vm.snapshot_dir, sb->vm.snapshot_memory_ctime_ns, why,
				      sizeof why) == 0)
		return false;
	fail(sb, -EINVAL, "%s; `airlock image build` makes it again", why);
	return true;
}

static int send_request(struct sandbox *sb)
{
	if (getrandom(sb->run.entropy, sizeof sb->run.entropy, 0) != sizeof sb->run.entropy)
		return -errno;
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	sb->run.wall_clock_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec;
	int rc = frame_encode_run_header(&sb->run, sb->request, sb->request_len);
	if (rc)
		return rc;
	uv_buf_t buf = uv_buf_init((char *)sb->request, (unsigned)sb->request_len);
	sb->write_req.data = sb;
	rc = uv_write(&sb->write_req, (uv_stream_t *)&sb->channel, &buf, 1, on_request_written);
	if (rc)
		return rc;
	sb->run_sent_ns = now_ns();
	sb->phase = PHASE_RUNNING;
	uv_timer_start(&sb->timer, on_timeout, (uint64_t)sb->run.timeout_ms + RUN_GRACE_MS, 0);
	return 0;
}

/* Appends output. The agent forwards at most the cap and drops the rest itself, so a guest
 * that sends more is not the agent: it is refused, and its VM ended, rather than left to keep
 * the loop decoding what would be thrown away until the deadline. */
static int append_output(struct byte_buffer *b, uint64_t cap, const uint8_t *data, size_t len)
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

static int take_exit(struct sandbox *sb, const uint8_t *payload, size_t len)
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
	r->stdout_total = e.stdout_bytes;
	r->stderr_total = e.stderr_bytes;
	r->files_tar = e.files_len ? sb->exit_payload + (files - payload) : NULL;
	r->files_len = e.files_len;
	r->skipped = e.skipped_len ? (const char *)sb->exit_payload + (skipped - payload) : NULL;
	r->skipped_len = e.skipped_len;
	r->duration_ms = (double)(now_ns() - sb->run_sent_ns) / 1e6;
	return 0;
}

/* A CREDIT frame in flight: freed when written (or cancelled as the channel closes). */
struct credit_write {
	uv_write_t req; /* first: the callback gets it back */
	struct frame_credit frame;
};

static void on_credit_written(uv_write_t *req, int status)
{
	struct sandbox *sb = req->data;
	free(req);
	if (status == UV_EPIPE || status == UV_ECONNRESET)
		channel_closed_by_vm(sb);
	else if (status < 0 && status != UV_ECANCELED)
		fail(sb, -EIO, "cannot send credit to the guest: %s", uv_strerror(status));
}

/* Grants the guest bytes more of stream's output (agent/proto.h: credit). */
static int send_credit(struct sandbox *sb, uint32_t stream, uint32_t bytes)
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

static int on_frame(void *ctx, uint32_t type, uint32_t stream, const uint8_t *payload, size_t len)
{
	struct sandbox *sb = ctx;
	struct sandbox_result *r = &sb->res;
	if ((sb->phase == PHASE_BOOTING && type != AL_FRAME_READY && type != AL_FRAME_ERROR) ||
	    (sb->phase == PHASE_IDLE)) {
		fail(sb, -EPROTO, "the guest sent frame type %u before it had a request", type);
		return -EPROTO;
	}
	switch (type) {
	case AL_FRAME_READY: {
		struct al_ready ready;
		memcpy(&ready, payload, sizeof ready);
		if (sb->phase != PHASE_BOOTING || ready.version != AL_PROTO_VERSION) {
			fail(sb, -EPROTO, "unexpected READY from the guest (protocol version %u)",
			     ready.version);
			return -EPROTO;
		}
		r->boot_ms = (double)(now_ns() - sb->spawned_ns) / 1e6;
		/* the VM behind a wrapper (QEMU under bubblewrap) is there by now: into the group */
		if (vm_cgroup_gather(&sb->cgroup, sb->process.pid) != 0)
			fprintf(stderr, "airlock: a VM runs partly outside its cgroup\n");
		if (!sb->has_request) {
			sb->phase = PHASE_IDLE;
			uv_timer_stop(&sb->timer);
			if (sb->ready)
				sb->ready(sb, sb->ctx);
			return 0;
		}
		if (snapshot_written_since(sb))
			return 1; /* the sandbox has ended: nothing more */
		int rc = send_request(sb);
		if (rc) {
			fail(sb, -EIO, "cannot send the request: %s", strerror(rc < 0 ? -rc : rc));
			return rc;
		}
		return 0;
	}
	case AL_FRAME_DATA: { /* the decoder admits DATA only on the open output streams */
		bool is_out = stream == AL_STREAM_STDOUT;
		int rc = append_output(is_out ? &r->out : &r->err,
				       is_out ? sb->run.stdout_cap : sb->run.stderr_cap, payload,
				       len);
		if (rc == -EPROTO)
			fail(sb, rc, "the guest sent more %s than the run's cap (a misbehaving guest)",
			     is_out ? "stdout" : "stderr");
		else if (rc)
			fail(sb, rc, "out of memory collecting output");
		uint32_t grant = rc ? 0 : frame_stream_consumed(&sb->decoder, stream, len);
		if (grant && (rc = send_credit(sb, stream, grant)) != 0)
			fail(sb, -EIO, "cannot send credit to the guest: %s", uv_strerror(rc));
		return rc;
	}
	case AL_FRAME_EXIT: {
		int rc = take_exit(sb, payload, len);
		if (rc) {
			fail(sb, rc, "the guest sent a malformed EXIT frame");
			return rc;
		}
		end(sb);
		return 1; /* nothing may follow EXIT */
	}
	case AL_FRAME_ERROR: {
		char text[512];
		quote_guest_text((const char *)payload, len, text, sizeof text);
		fail(sb, -EIO, "the guest agent says it could not run the program (its words: \"%s\")",
		     text);
		return 1;
	}
	}
	return -EPROTO; /* unreachable: the decoder admits only the types above */
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	(void)handle;
	(void)suggested;
	static char slab[256 * 1024]; /* decoded synchronously before the next read */
	*buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct sandbox *sb = stream->data;
	if (nread == 0 || sb->phase == PHASE_ENDING)
		return;
	if (nread < 0) {
		channel_closed_by_vm(sb);
		return;
	}
	int rc = frame_decoder_feed(&sb->decoder, (const uint8_t *)buf->base, (size_t)nread,
				    on_frame, sb);
	if (rc == -EPROTO && sb->decoder.error)
		fail(sb, -EPROTO, "%s%s",
		     sb->decoder.wrong_version ? "" : "the guest sent a malformed frame: ",
		     sb->decoder.error);
}

static int build_request(struct sandbox *sb, const struct sandbox_request *req)
{
	uint64_t body = (uint64_t)req->code_len + req->stdin_len + req->files_len;
	if (body + sizeof(struct al_run) > AL_FRAME_MAX_PAYLOAD)
		return -EMSGSIZE;
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
	};
	sb->decoder.exit_limit = frame_exit_limit(req->out_files_cap);
	int rc = frame_open_output_streams(&sb->decoder, &sb->run);
	if (rc)
		return rc;
	sb->request_len = AL_FRAME_HEADER_SIZE + sizeof(struct al_run) + body;
	sb->request = malloc(sb->request_len);
	if (!sb->request)
		return -ENOMEM;
	uint8_t *p = sb->request + AL_FRAME_HEADER_SIZE + sizeof(struct al_run);
	if (req->code_len)
		memcpy(p, req->code, req->code_len);
	p += req->code_len;
	if (req->stdin_len)
		memcpy(p, req->stdin_data, req->stdin_len);
	p += req->stdin_len;
	if (req->files_len)
		memcpy(p, req->files_tar, req->files_len);
	return 0;
}

/* A tcg restore: QEMU waits (-incoming defer) for the commands that load the stream from
 * STATE_FD_IN_VM. They are queued on the QMP socket at once; QEMU's answers are not read (a
 * failed load ends QEMU, and its message reaches the boot log). */
static int open_restore_fds(struct sandbox *sb, int control[2], int *state_fd)
{
	char path[PATH_MAX + 8], commands[512];
	snprintf(path, sizeof path, "%s/state", sb->vm.snapshot_dir);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control) != 0)
		return -errno;
	*state_fd = readonly_open(path);
	int rc = *state_fd < 0 ? *state_fd : qmp_restore_commands(STATE_FD_IN_VM, commands,
							      sizeof commands);
	if (rc == 0 && write(control[0], commands, strlen(commands)) != (ssize_t)strlen(commands))
		rc = -errno;
	return rc;
}

/* tcg: the kernel, the root disk and, restoring, the snapshot's RAM file, all read-only such
 * that nothing holding them can write them (readonly_files.h). Returns 0 or -errno; files[] is
 * -1 where nothing was opened. */
static int open_tcg_files(const struct sandbox *sb, int files[3])
{
	char memory[PATH_MAX + 8] = "";
	if (sb->vm.snapshot_dir)
		snprintf(memory, sizeof memory, "%s/memory", sb->vm.snapshot_dir);
	const char *paths[3] = {sb->vm.kernel, sb->vm.rootfs, memory};
	for (int i = 0; i < 3; i++) {
		files[i] = paths[i][0] ? readonly_open(paths[i]) : -1;
		if (paths[i][0] && files[i] < 0)
			return files[i];
	}
	return 0;
}

/* The VM's own cgroup (cgroup.h), right after the spawn. A VM that cannot have one still runs;
 * that is said once. */
static void enter_cgroup(struct sandbox *sb)
{
	static bool warned;
	int rc = vm_cgroup_enter(&sb->cgroup, sb->process.pid, (uint64_t)sb->vm.memory_mb << 20,
				 sb->vm.vcpus);
	if (rc && !warned) {
		warned = true;
		fprintf(stderr, "airlock: a VM runs without its cgroup limits: %s\n", strerror(-rc));
	}
}

static int spawn_vm(struct sandbox *sb, int vm_fd, int log_fd, char *err, size_t err_len)
{
	bool restore = sb->vm.snapshot_dir != NULL;
	bool tcg = strcmp(sb->vm.launcher->name, "tcg") == 0;
	bool tcg_restore = restore && tcg;
	struct vm_spec spec = {
		.kernel = sb->vm.kernel,
		.rootfs = sb->vm.rootfs,
		.serial_log = sb->serial_log,
		.memory_mb = sb->vm.memory_mb,
		.vcpus = sb->vm.vcpus,
		.channel_fd = CHANNEL_FD_IN_VM,
		.warm_language = restore ? sb->vm.snapshot_language : NULL,
		.snapshot_dir = sb->vm.snapshot_dir,
		.restore = restore,
		.control_fd = tcg_restore ? CONTROL_FD_IN_VM : -1,
		.state_fd = tcg_restore ? STATE_FD_IN_VM : -1,
		.guest_tsc_khz = sb->vm.guest_tsc_khz,
		.kernel_fd = tcg ? KERNEL_FD_IN_VM : -1,
		.rootfs_fd = tcg ? ROOTFS_FD_IN_VM : -1,
		.memory_fd = tcg_restore ? MEMORY_FD_IN_VM : -1,
		/* the log airlock opened: the VM's own uid could not open it by name */
		.serial_on_stdout = true,
	};
	int control[2] = {-1, -1}, state_fd = -1, files[3] = {-1, -1, -1};
	int rc = vm_identity_take(&sb->identity);
	if (rc) {
		snprintf(err, err_len, "cannot reserve a uid of its own for the VM: %s",
			 strerror(-rc));
		goto out;
	}
	spec.run_as_uid = spec.run_as_gid = sb->identity.uid;
	rc = tcg ? open_tcg_files(sb, files) : 0;
	if (rc) {
		snprintf(err, err_len, "cannot open the VM's files: %s", strerror(-rc));
		goto out;
	}
	rc = tcg_restore ? open_restore_fds(sb, control, &state_fd) : 0;
	if (rc) {
		snprintf(err, err_len, "cannot open the snapshot %s: %s", sb->vm.snapshot_dir,
			 strerror(-rc));
		goto out;
	}
	struct argv_list argv = {0};
	if ((rc = sb->vm.launcher->command(&spec, &argv)) != 0) {
		argv_free(&argv);
		snprintf(err, err_len, "cannot build the %s command line", sb->vm.launcher->name);
		goto out;
	}
	/* fds the VM does not use are left closed */
	const int in_vm[FDS_IN_VM] = {-1, log_fd, log_fd, vm_fd, control[1], state_fd,
				      files[0], files[1], files[2]};
	uv_stdio_container_t stdio[FDS_IN_VM];
	for (int i = 0; i < FDS_IN_VM; i++)
		stdio[i] = in_vm[i] < 0 ? (uv_stdio_container_t){.flags = UV_IGNORE}
					: (uv_stdio_container_t){.flags = UV_INHERIT_FD,
								 .data.fd = in_vm[i]};
	uv_process_options_t options = {
		.exit_cb = on_process_exit,
		.file = argv.items[0],
		.args = argv.items,
		.stdio_count = tcg ? FDS_IN_VM : CHANNEL_FD_IN_VM + 1,
		.stdio = stdio,
		.env = (char **)vm_environment(), /* not airlock's: it may hold the host's secrets */
		.flags = UV_PROCESS_DETACHED, /* its own session and process group: see kill_vm */
	};
	sb->process.data = sb;
	rc = uv_spawn(sb->loop, &sb->process, &options);
	if (rc)
		snprintf(err, err_len, "cannot start %s: %s", argv.items[0], uv_strerror(rc));
	else
		enter_cgroup(sb);
	argv_free(&argv);
out:
	for (int i = 0; i < 3; i++)
		if (files[i] >= 0)
			close(files[i]);
	if (control[1] >= 0)
		close(control[1]);
	if (state_fd >= 0)
		close(state_fd);
	if (rc == 0)
		sb->control_fd = control[0];
	else if (control[0] >= 0)
		close(control[0]);
	return rc;
}

static void on_ping_written(uv_write_t *req, int status)
{
	struct sandbox *sb = req->data;
	if (status < 0 && status != UV_ECANCELED)
		fail(sb, -EIO, "cannot reach the restored guest: %s", uv_strerror(status));
}

/* A restored guest's READY is in its snapshot; PING asks for a fresh one, and makes the guest
 * unique (fresh entropy, the clock) while it waits in the pool. */
static int send_ping(struct sandbox *sb)
{
	_Static_assert(sizeof sb->ping == AL_FRAME_HEADER_SIZE + sizeof(struct al_ping),
		       "the PING frame is sent as it lies in memory");
	sb->ping.header =
	    frame_header(AL_FRAME_PING, AL_STREAM_CONVERSATION, sizeof(struct al_ping));
	if (getrandom(sb->ping.ping.entropy, sizeof sb->ping.ping.entropy, 0) !=
	    sizeof sb->ping.ping.entropy)
		return -errno;
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	sb->ping.ping.wall_clock_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec;
	uv_buf_t buf = uv_buf_init((char *)&sb->ping, sizeof sb->ping);
	sb->ping_req.data = sb;
	return uv_write(&sb->ping_req, (uv_stream_t *)&sb->channel, &buf, 1, on_ping_written);
}

int sandbox_spawn(uv_loop_t *loop, const struct sandbox_vm *vm, sandbox_ready_fn ready,
		  sandbox_done_fn done, void *ctx, struct sandbox **out, char *err, size_t err_len)
{
	struct sandbox *sb = calloc(1, sizeof *sb);
	if (!sb) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	sb->loop = loop;
	sb->vm = *vm;
	sb->ready = ready;
	sb->done = done;
	sb->ctx = ctx;
	sb->control_fd = -1;
	frame_decoder_init(&sb->decoder);

	const char *tmp = getenv("TMPDIR");
	snprintf(sb->tmpdir, sizeof sb->tmpdir, "%s/airlock-vm-XXXXXX",
		 tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
	int fds[2] = {-1, -1};
	int log_fd = -1, rc;
	if (!mkdtemp(sb->tmpdir)) {
		rc = -errno;
		snprintf(err, err_len, "cannot create a directory under %s: %s", sb->tmpdir,
			 strerror(errno));
		free(sb);
		return rc;
	}
	snprintf(sb->serial_log, sizeof sb->serial_log, "%s/serial.log", sb->tmpdir);
	log_fd = open(sb->serial_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (log_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot set up the VM channel: %s", strerror(errno));
		if (log_fd >= 0)
			close(log_fd);
		unlink(sb->serial_log);
		rmdir(sb->tmpdir);
		free(sb);
		return rc;
	}

	/* From here on every failure is reported through done(). */
	live_sandboxes++;
	uv_timer_init(loop, &sb->timer);
	sb->timer.data = sb;
	uv_pipe_init(loop, &sb->channel, 0);
	sb->channel.data = sb;
	sb->open_handles = 3; /* timer, channel, process (uv_spawn initialises it even on failure) */
	sb->spawned_ns = now_ns();
	char spawn_err[256];
	rc = spawn_vm(sb, fds[1], log_fd, spawn_err, sizeof spawn_err);
	close(fds[1]);
	close(log_fd);
	if (rc == 0) {
		sb->process_running = true;
		rc = uv_pipe_open(&sb->channel, fds[0]);
		if (rc == 0)
			rc = uv_read_start((uv_stream_t *)&sb->channel, on_alloc, on_read);
		if (rc == 0 && vm->snapshot_dir)
			rc = send_ping(sb);
		if (rc)
			snprintf(spawn_err, sizeof spawn_err, "cannot watch the VM channel: %s",
				 uv_strerror(rc));
	} else {
		close(fds[0]);
	}
	if (out)
		*out = sb;
	if (rc)
		fail(sb, -EIO, "%s", spawn_err);
	else
		uv_timer_start(&sb->timer, on_timeout, vm->boot_timeout_ms, 0);
	return 0;
}

void sandbox_submit(struct sandbox *sb, const struct sandbox_request *req, sandbox_done_fn done,
		    void *ctx)
{
	sb->done = done;
	sb->ctx = ctx;
	if (sb->has_request || sb->phase == PHASE_ENDING) {
		fail(sb, -EBUSY, "internal error: this VM cannot take a request any more");
		return;
	}
	int rc = build_request(sb, req);
	if (rc) {
		free(sb->request);
		sb->request = NULL;
		fail(sb, rc, "%s", rc == -EMSGSIZE ? "request too large (code + stdin + files over "
						     "the frame limit)"
						   : "out of memory");
		return;
	}
	sb->has_request = true;
	if (sb->phase == PHASE_IDLE && !snapshot_written_since(sb) && (rc = send_request(sb)) != 0)
		fail(sb, -EIO, "cannot send the request: %s", strerror(rc < 0 ? -rc : rc));
}

int sandbox_start(uv_loop_t *loop, const struct sandbox_vm *vm, const struct sandbox_request *req,
		  sandbox_done_fn done, void *ctx, struct sandbox **out, char *err, size_t err_len)
{
	if ((uint64_t)req->code_len + req->stdin_len + req->files_len + sizeof(struct al_run) >
	    AL_FRAME_MAX_PAYLOAD) {
		snprintf(err, err_len, "request too large (code + stdin + files over %u MiB)",
			 (AL_FRAME_MAX_PAYLOAD >> 20) - 1);
		return -EMSGSIZE;
	}
	struct sandbox *sb;
	int rc = sandbox_spawn(loop, vm, NULL, done, ctx, &sb, err, err_len);
	if (rc)
		return rc;
	if (out)
		*out = sb;
	/* an early spawn failure is already on its way to done(); the request then never goes */
	if (sb->phase != PHASE_ENDING)
		sandbox_submit(sb, req, done, ctx);
	return 0;
}

void sandbox_cancel(struct sandbox *sb)
{
	fail(sb, -ECANCELED, "cancelled");
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

uint32_t sandbox_boot_timeout_ms(void)
{
	const char *env = getenv("AIRLOCK_BOOT_TIMEOUT");
	char *end;
	double s = env ? strtod(env, &end) : 0;
	if (!env || *end || !(s > 0) || s > 3600)
		return DEFAULT_BOOT_TIMEOUT_MS;
	return (uint32_t)(s * 1000);
}

bool sandbox_idle(const struct sandbox *sb)
{
	return sb->phase == PHASE_IDLE;
}

uint64_t sandbox_output_bytes(const struct sandbox *sb)
{
	return sb->res.out.len + sb->res.err.len;
}
