/* The sandbox's own header: one VM's life is spread over sandbox.c (its phases and handles),
 * vm_start.c (the VM process and its save), run_request.c (the request and the result) and
 * guest_log.c (the guest's log). Nothing outside sandbox/ includes it.
 */
#ifndef AIRLOCK_SANDBOX_INTERNAL_H
#define AIRLOCK_SANDBOX_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "backend.h"
#include "cgroup.h"
#include "frame.h"
#include "sandbox.h"
#include "vm_process.h"

/* After the program's limit the agent kills it and reports; the host waits this much longer for
 * that report before killing the VM itself. */
#define RUN_GRACE_MS 2000
/* After the channel's end-of-file, how long the VM process has to end, so that the error can say
 * how it ended (a signal, its status, its last log line) rather than only that it went silent. */
#define VM_END_AFTER_EOF_MS 2000
/* Saving a snapshot (the backend's save until the VM process has ended): QEMU writes a few MiB
 * of device state, airlock-vmm its dirty pages; minutes only on a host that is badly stuck. */
#define SAVE_TIMEOUT_MS 120000
#define DEFAULT_BOOT_TIMEOUT_MS 60000 /* a cold boot under emulation on a loaded 2-core host */

/* The phases (sandbox.c says what each waits for). */
enum phase { PHASE_BOOTING, PHASE_IDLE, PHASE_RUNNING, PHASE_SAVING, PHASE_ENDING };

struct sandbox {
	uv_loop_t *loop;
	uv_process_t process;
	uv_pipe_t channel;
	uv_timer_t timer;
	uv_poll_t control; /* saving: the VM program's control socket (backend.h), when it has one */
	bool control_watched;
	uv_write_t write_req;
	uv_write_t ping_req;
	struct {
		struct al_frame_header header;
		struct al_ping ping;
	} ping; /* kept until written */
	enum phase phase;
	enum vm_mode mode;
	bool has_request;
	bool delivered; /* done() has been called */
	sandbox_ready_fn ready;
	struct vm_launch launch; /* the backend's part: control socket, save file */
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
	char serial_log[4096];
	bool keep_log; /* the log is the caller's (sandbox_vm.log_path) */
	uint64_t spawned_ns, run_sent_ns;
	struct vm_cgroup cgroup;
	struct vm_identity identity; /* airlock as root: the uid its processes run as */

	struct sandbox_result res;
	sandbox_done_fn done;
	void *ctx;
};

uint64_t sandbox_now_ns(void);

/* sandbox.c: records a failure (the first one wins) and ends the VM; ends it with the result
 * as it stands. */
void sandbox_fail(struct sandbox *sb, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void sandbox_end(struct sandbox *sb);
/* sandbox.c: the VM's end of the channel is gone (read EOF, or a write met EPIPE). */
void sandbox_channel_closed(struct sandbox *sb);
void sandbox_on_process_exit(uv_process_t *process, int64_t status, int term_signal);
/* sandbox.c: the phase's deadline passed */
void sandbox_on_timeout(uv_timer_t *timer);

/* vm_start.c */
int sandbox_spawn_vm(struct sandbox *sb, int vm_fd, int log_fd, char *err, size_t err_len);
int sandbox_send_ping(struct sandbox *sb);
/* The agent is READY in the VM that makes a snapshot: the backend saves it (PHASE_SAVING). */
void sandbox_start_save(struct sandbox *sb);

/* run_request.c */
int sandbox_build_request(struct sandbox *sb, const struct sandbox_request *req);
int sandbox_send_request(struct sandbox *sb);
/* A restored VM runs no request once its snapshot's memory file was written: fails the sandbox
 * and returns true then. */
bool sandbox_snapshot_written_since(struct sandbox *sb);
int sandbox_append_output(struct byte_buffer *b, uint64_t cap, const uint8_t *data, size_t len);
int sandbox_take_exit(struct sandbox *sb, const uint8_t *payload, size_t len);
/* Grants the guest bytes more of stream's output (agent/proto.h: credit). Returns 0 or a libuv
 * error. */
int sandbox_send_credit(struct sandbox *sb, uint32_t stream, uint32_t bytes);

/* guest_log.c */
void sandbox_quote_guest_text(const char *text, size_t len, char *out, size_t out_len);
void sandbox_log_tail(const struct sandbox *sb, char *out, size_t out_len);
void sandbox_copy_log_to_stderr(const struct sandbox *sb);

#endif
