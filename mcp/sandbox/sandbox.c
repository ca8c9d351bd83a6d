/* One VM's life (see sandbox.h). The phases:
 *
 *   BOOTING   VM process spawned (booting, or restoring a snapshot and asked PING); waiting for
 *             READY (deadline: boot_timeout_ms)
 *   IDLE      READY came before a request (the warm pool); no deadline, the guest sits in HLT
 *   RUNNING   RUN sent; collecting output, granting credit (deadline: timeout + RUN_GRACE_MS)
 *   SAVING    making a snapshot: READY came, the backend saves the VM, whose process then ends
 *             (deadline: SAVE_TIMEOUT_MS); or keeping a run's state: its EXIT came (the result
 *             is known), and a failure of the save is only the result's state_error
 *   ENDING    the result is known; the VM is killed and every handle closed
 *
 * The result is delivered only after the VM process has been reaped and every libuv handle has
 * been closed, so a finished sandbox never leaves a process or an fd behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sandbox_internal.h"

uint64_t sandbox_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether the run asked to keep its state (its RUN frame says so: sandbox_build_request). */
static bool keeps_state(const struct sandbox *sb)
{
	return (sb->run.flags & AL_RUN_KEEP) != 0;
}

void sandbox_fail(struct sandbox *sb, int error, const char *fmt, ...)
{
	if (sb->phase == PHASE_ENDING)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (sb->phase == PHASE_SAVING && keeps_state(sb) && error != -ECANCELED) {
		/* the program's result stands; only its state was not kept */
		vsnprintf(sb->res.state_error, sizeof sb->res.state_error, fmt, ap);
		va_end(ap);
		sandbox_end(sb);
		return;
	}
	sb->res.error = error;
	vsnprintf(sb->res.message, sizeof sb->res.message, fmt, ap);
	va_end(ap);
	if (error != -ECANCELED) {
		char tail[256];
		sandbox_log_tail(sb, tail, sizeof tail);
		size_t len = strlen(sb->res.message);
		if (tail[0] && len + 20 < sizeof sb->res.message)
			snprintf(sb->res.message + len, sizeof sb->res.message - len,
				 " (the guest's log, its words: \"%s\")", tail);
	}
	sandbox_end(sb);
}

/* spawned and not yet released: per thread, as the sandboxes of one loop are (a snapshot is
 * made on a loop of its own, on a worker thread) */
static _Thread_local unsigned live_sandboxes;

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
	free(sb->res.network);
	free(sb->res.install_log.data);
	free(sb->res.scan_output.data);
	vm_launch_free(&sb->launch);
	if (sb->log_fd >= 0)
		close(sb->log_fd);
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

static void on_closed(struct sandbox *sb)
{
	if (--sb->open_handles > 0)
		return;
	if (sb->vm.verbose)
		sandbox_copy_log_to_stderr(sb);
	deliver(sb);
	release(sb);
}

static void on_handle_closed(uv_handle_t *handle)
{
	on_closed(handle->data);
}

/* The run's egress connections are all closed. */
static void on_egress_closed(void *sb)
{
	on_closed(sb);
}

static void close_handles_when_reaped(struct sandbox *sb)
{
	if (sb->process_running || sb->phase != PHASE_ENDING)
		return;
	if (sb->process_handle && !uv_is_closing((uv_handle_t *)&sb->process))
		uv_close((uv_handle_t *)&sb->process, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&sb->channel))
		uv_close((uv_handle_t *)&sb->channel, on_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&sb->timer))
		uv_close((uv_handle_t *)&sb->timer, on_handle_closed);
	if (sb->control_watched && !uv_is_closing((uv_handle_t *)&sb->control))
		uv_close((uv_handle_t *)&sb->control, on_handle_closed);
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
void sandbox_end(struct sandbox *sb)
{
	if (sb->phase == PHASE_ENDING)
		return;
	sb->phase = PHASE_ENDING;
	sandbox_end_egress(sb, on_egress_closed); /* its attempts into the result first */
	uv_timer_stop(&sb->timer);
	uv_read_stop((uv_stream_t *)&sb->channel);
	if (sb->control_watched)
		uv_poll_stop(&sb->control);
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

/* A run that keeps its state has ended: save the VM when its agent said it may be kept (every
 * user process stopped), else say why there is no state. The result is final either way. */
static void sandbox_keep(struct sandbox *sb)
{
	const char *why = NULL;
	if (sb->res.timed_out)
		why = "the program timed out: a state is kept only of a program that ended";
	else if (sb->res.not_run)
		why = "the program did not run (a setup step stopped it)";
	else if (!sb->exit_kept)
		why = "the guest could not stop the program's processes for the save";
	else if (!sb->vm.keep_to_dir)
		why = "internal error: no directory to keep the state in";
	if (why) {
		snprintf(sb->res.state_error, sizeof sb->res.state_error, "%s", why);
		sandbox_end(sb);
		return;
	}
	sb->phase = PHASE_SAVING;
	sb->save_started_ns = sandbox_now_ns();
	uv_timer_start(&sb->timer, sandbox_on_timeout, SAVE_TIMEOUT_MS, 0);
	sandbox_start_save(sb);
}

/* The VM ended before the program's EXIT: says how. */
static void fail_vm_ended(struct sandbox *sb)
{
	if (sb->process_running)
		sandbox_fail(sb, -EIO, "the VM closed its channel before the program finished");
	else if (sb->exit_signal)
		sandbox_fail(sb, -EIO, "the VM process was killed by signal %d (%s) before the program finished",
		     sb->exit_signal, strsignal(sb->exit_signal));
	else if (sb->exit_status != 0)
		sandbox_fail(sb, -EIO, "the VM stopped (exit status %lld) before the program finished",
		     (long long)sb->exit_status);
	else
		sandbox_fail(sb, -EIO, "the guest shut down before the program finished");
}

static void on_vm_end_overdue(uv_timer_t *timer)
{
	fail_vm_ended(timer->data);
}

void sandbox_on_process_exit(uv_process_t *process, int64_t status, int term_signal)
{
	struct sandbox *sb = process->data;
	sb->process_running = false;
	sb->exit_status = status;
	sb->exit_signal = term_signal;
	if (sb->phase == PHASE_SAVING) { /* the backend's save ends the VM program: how? */
		if (status == 0 && term_signal == 0) {
			sb->res.kept = keeps_state(sb);
			sb->res.save_ms = (double)(sandbox_now_ns() - sb->save_started_ns) / 1e6;
			sandbox_end(sb); /* saved: the result is a success */
		}
		else
			sandbox_fail(sb, -EIO, "the VM program ended %s %d while saving (log: %s)",
				     term_signal ? "by signal" : "with status",
				     term_signal ? term_signal : (int)status, sb->serial_log);
		close_handles_when_reaped(sb);
		return;
	}
	/* Not a failure yet, unless the channel is already at its end: the agent may have sent EXIT
	 * just before the VM ended, and those bytes can still sit in the socket. The channel's
	 * end-of-file decides (on_read). */
	if (sb->channel_eof)
		fail_vm_ended(sb);
	close_handles_when_reaped(sb);
}

void sandbox_on_timeout(uv_timer_t *timer)
{
	struct sandbox *sb = timer->data;
	if (sb->phase == PHASE_SAVING) {
		sandbox_fail(sb, -ETIMEDOUT, "the VM was not saved within %d s",
			     SAVE_TIMEOUT_MS / 1000);
		return;
	}
	if (sb->phase == PHASE_BOOTING) {
		sandbox_fail(sb, -ETIMEDOUT,
		     "the guest did not become ready within %u s; run `airlock doctor`",
		     sb->vm.boot_timeout_ms / 1000);
		return;
	}
	/* The agent should have killed the program and reported by now: the guest is stuck or
	 * hostile. What it sent so far is the result. */
	sb->res.timed_out = true;
	sb->res.duration_ms = (double)(sandbox_now_ns() - sb->run_sent_ns) / 1e6;
	sandbox_end(sb);
}

/* The VM's end of the channel is gone (read EOF, or a write met EPIPE): its process is ending,
 * or has; the result says how once it is reaped. */
void sandbox_channel_closed(struct sandbox *sb)
{
	if (sb->phase == PHASE_ENDING || sb->channel_eof)
		return;
	if (sb->phase == PHASE_SAVING) { /* the VM program is ending, as a save ends it */
		sb->channel_eof = true;
		uv_read_stop((uv_stream_t *)&sb->channel);
		return;
	}
	if (!sb->process_running) {
		fail_vm_ended(sb);
		return;
	}
	sb->channel_eof = true;
	uv_read_stop((uv_stream_t *)&sb->channel);
	uv_timer_start(&sb->timer, on_vm_end_overdue, VM_END_AFTER_EOF_MS, 0);
}

static int on_frame(void *ctx, uint32_t type, uint32_t stream, const uint8_t *payload, size_t len)
{
	struct sandbox *sb = ctx;
	struct sandbox_result *r = &sb->res;
	if ((sb->phase == PHASE_BOOTING && type != AL_FRAME_READY && type != AL_FRAME_ERROR) ||
	    sb->phase == PHASE_IDLE || sb->phase == PHASE_SAVING) {
		sandbox_fail(sb, -EPROTO, "the guest sent frame type %u before it had a request", type);
		return -EPROTO;
	}
	switch (type) {
	case AL_FRAME_READY: {
		struct al_ready ready;
		memcpy(&ready, payload, sizeof ready);
		if (sb->phase != PHASE_BOOTING || ready.version != AL_PROTO_VERSION) {
			sandbox_fail(sb, -EPROTO, "unexpected READY from the guest (protocol version %u)",
			     ready.version);
			return -EPROTO;
		}
		r->boot_ms = (double)(sandbox_now_ns() - sb->spawned_ns) / 1e6;
		/* the VM behind a wrapper (QEMU under bubblewrap) is there by now: into the group */
		if (vm_cgroup_gather(&sb->cgroup, sb->process.pid) != 0)
			fprintf(stderr, "airlock: a VM runs partly outside its cgroup\n");
		if (sb->mode == VM_MAKE_SNAPSHOT) {
			sb->phase = PHASE_SAVING;
			uv_timer_start(&sb->timer, sandbox_on_timeout, SAVE_TIMEOUT_MS, 0);
			sandbox_start_save(sb);
			return 0;
		}
		if (!sb->has_request) {
			sb->phase = PHASE_IDLE;
			uv_timer_stop(&sb->timer);
			if (sb->ready)
				sb->ready(sb, sb->ctx);
			return 0;
		}
		if (sandbox_snapshot_written_since(sb))
			return 1; /* the sandbox has ended: nothing more */
		int rc = sandbox_send_request(sb);
		if (rc) {
			sandbox_fail(sb, -EIO, "cannot send the request: %s", strerror(rc < 0 ? -rc : rc));
			return rc;
		}
		return 0;
	}
	case AL_FRAME_OPEN:
	case AL_FRAME_CREDIT:
	case AL_FRAME_CLOSE:
	egress_frame: { /* the decoder admits these only in a run with egress, on its streams */
		const char *why = "no egress in this run";
		int rc = sb->egress ? egress_guest_frame(sb->egress, type, stream, payload, len, &why)
				    : -EPROTO;
		if (rc) {
			sandbox_fail(sb, -EPROTO, "the guest broke the egress protocol: %s", why);
			return rc;
		}
		return 0;
	}
	case AL_FRAME_STEP: {
		int rc = sandbox_take_step(sb, payload, len);
		if (rc)
			sandbox_fail(sb, rc, "out of memory taking a setup step's result");
		return rc;
	}
	case AL_FRAME_DATA: { /* the decoder admits DATA only on the open output streams */
		if (stream >= AL_STREAM_FIRST_OPENED)
			goto egress_frame;
		bool is_out = stream == AL_STREAM_STDOUT;
		struct byte_buffer *to = is_out ? &r->out : &r->err;
		uint64_t cap = is_out ? sb->run.stdout_cap : sb->run.stderr_cap;
		if (sb->on_output && to->len < cap)
			sb->on_output(sb->output_ctx, stream, payload,
				      len < cap - to->len ? len : (size_t)(cap - to->len));
		int rc = sandbox_append_output(is_out ? &r->out : &r->err,
				       is_out ? sb->run.stdout_cap : sb->run.stderr_cap, payload,
				       len);
		if (rc == -EPROTO)
			sandbox_fail(sb, rc, "the guest sent more %s than the run's cap (a misbehaving guest)",
			     is_out ? "stdout" : "stderr");
		else if (rc)
			sandbox_fail(sb, rc, "out of memory collecting output");
		uint32_t grant = rc ? 0 : frame_stream_consumed(&sb->decoder, stream, len);
		if (grant && (rc = sandbox_send_credit(sb, stream, grant)) != 0)
			sandbox_fail(sb, -EIO, "cannot send credit to the guest: %s", uv_strerror(rc));
		return rc;
	}
	case AL_FRAME_EXIT: {
		int rc = sandbox_take_exit(sb, payload, len);
		if (rc) {
			sandbox_fail(sb, rc, "the guest sent a malformed EXIT frame");
			return rc;
		}
		if (keeps_state(sb))
			sandbox_keep(sb);
		else
			sandbox_end(sb);
		return 1; /* nothing may follow EXIT */
	}
	case AL_FRAME_ERROR: {
		char text[512];
		sandbox_quote_guest_text((const char *)payload, len, text, sizeof text);
		sandbox_fail(sb, -EIO, "the guest agent says it could not run the program (its words: \"%s\")",
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
	/* decoded synchronously before the next read; one per thread (a snapshot is made on a
	 * loop of its own) */
	static _Thread_local char slab[256 * 1024];
	*buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct sandbox *sb = stream->data;
	if (nread == 0 || sb->phase == PHASE_ENDING)
		return;
	if (nread < 0) {
		sandbox_channel_closed(sb);
		return;
	}
	int rc = frame_decoder_feed(&sb->decoder, (const uint8_t *)buf->base, (size_t)nread,
				    on_frame, sb);
	if (rc == -EPROTO && sb->decoder.error)
		sandbox_fail(sb, -EPROTO, "%s%s",
			     sb->decoder.wrong_version ? "" : "the guest sent a malformed frame: ",
			     sb->decoder.error);
}

/* The VM's log: the caller's file (kept), or a file in $TMPDIR unlinked at once (nothing to
 * remove later, nothing left when airlock is killed). Sets sb->log_fd; returns 0 or -errno with
 * err set. */
static int open_log(struct sandbox *sb, char *err, size_t err_len)
{
	sb->keep_log = sb->vm.log_path != NULL;
	int fd;
	if (sb->keep_log) {
		snprintf(sb->serial_log, sizeof sb->serial_log, "%s", sb->vm.log_path);
		fd = open(sb->serial_log, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	} else {
		const char *tmp = getenv("TMPDIR");
		char path[128];
		snprintf(path, sizeof path, "%s/airlock-vm-log-XXXXXX",
			 tmp && *tmp && strlen(tmp) < 80 ? tmp : "/tmp");
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
		snprintf(sb->serial_log, sizeof sb->serial_log,
			 "not kept: --verbose shows it");
		if (fd < 0)
			snprintf(sb->serial_log, sizeof sb->serial_log, "%s", path);
	}
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, err_len, "cannot create the VM's log %s: %s", sb->serial_log,
			 strerror(-rc));
		return rc;
	}
	sb->log_fd = fd;
	return 0;
}

static int spawn(uv_loop_t *loop, const struct sandbox_vm *vm, enum vm_mode mode,
		 sandbox_ready_fn ready, sandbox_done_fn done, void *ctx, struct sandbox **out,
		 char *err, size_t err_len)
{
	struct sandbox *sb = calloc(1, sizeof *sb);
	if (!sb) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	sb->loop = loop;
	sb->vm = *vm;
	sb->mode = mode;
	sb->ready = ready;
	sb->done = done;
	sb->ctx = ctx;
	vm_launch_init(&sb->launch);
	sb->identity = (struct vm_identity){0, -1}; /* none yet: the VM that makes a snapshot takes none */
	frame_decoder_init(&sb->decoder);

	int fds[2] = {-1, -1};
	sb->log_fd = -1;
	int rc = open_log(sb, err, err_len);
	if (rc == 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
		rc = -errno;
		snprintf(err, err_len, "cannot set up the VM channel: %s", strerror(errno));
	}
	if (rc) {
		if (sb->log_fd >= 0)
			close(sb->log_fd);
		free(sb);
		return rc;
	}

	/* From here on every failure is reported through done(). */
	live_sandboxes++;
	uv_timer_init(loop, &sb->timer);
	sb->timer.data = sb;
	uv_pipe_init(loop, &sb->channel, 0);
	sb->channel.data = sb;
	/* timer, channel, process: uv_spawn initialises the process handle even when it fails;
	 * a VM whose backend could not prepare it never gets that far (process_handle false) */
	sb->open_handles = 3;
	sb->spawned_ns = sandbox_now_ns();
	char spawn_err[512];
	rc = sandbox_spawn_vm(sb, fds[1], sb->log_fd, spawn_err, sizeof spawn_err);
	close(fds[1]);
	if (rc == 0) {
		sb->process_running = true;
		rc = uv_pipe_open(&sb->channel, fds[0]);
		if (rc == 0)
			rc = uv_read_start((uv_stream_t *)&sb->channel, on_alloc, on_read);
		if (rc == 0 && mode == VM_RESTORE)
			rc = sandbox_send_ping(sb);
		if (rc)
			snprintf(spawn_err, sizeof spawn_err, "cannot watch the VM channel: %s",
				 uv_strerror(rc));
	} else {
		close(fds[0]);
		if (!sb->process_handle)
			sb->open_handles--; /* the backend failed before any process: no handle */
	}
	if (out)
		*out = sb;
	if (rc)
		sandbox_fail(sb, -EIO, "%s", spawn_err);
	else
		uv_timer_start(&sb->timer, sandbox_on_timeout, vm->boot_timeout_ms, 0);
	return 0;
}

int sandbox_spawn(uv_loop_t *loop, const struct sandbox_vm *vm, sandbox_ready_fn ready,
		  sandbox_done_fn done, void *ctx, struct sandbox **out, char *err, size_t err_len)
{
	return spawn(loop, vm, vm->snapshot_dir ? VM_RESTORE : VM_BOOT, ready, done, ctx, out, err,
		     err_len);
}

int sandbox_make_snapshot(uv_loop_t *loop, const struct sandbox_vm *vm, sandbox_done_fn done,
			  void *ctx, char *err, size_t err_len)
{
	return spawn(loop, vm, VM_MAKE_SNAPSHOT, NULL, done, ctx, NULL, err, err_len);
}

void sandbox_submit(struct sandbox *sb, const struct sandbox_request *req, sandbox_done_fn done,
		    void *ctx)
{
	sb->done = done;
	sb->ctx = ctx;
	if (sb->has_request || sb->phase == PHASE_ENDING) {
		sandbox_fail(sb, -EBUSY, "internal error: this VM cannot take a request any more");
		return;
	}
	int rc = sandbox_build_request(sb, req);
	if (rc) {
		free(sb->request);
		sb->request = NULL;
		sandbox_fail(sb, rc, "%s", rc == -EMSGSIZE ? "request too large (code + stdin + files over "
						     "the frame limit)"
						   : "out of memory");
		return;
	}
	sb->has_request = true;
	if (sb->phase == PHASE_IDLE && !sandbox_snapshot_written_since(sb) &&
	    (rc = sandbox_send_request(sb)) != 0)
		sandbox_fail(sb, -EIO, "cannot send the request: %s", strerror(rc < 0 ? -rc : rc));
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
	sandbox_fail(sb, -ECANCELED, "cancelled");
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
