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
#include "confine.h"
#include "sandbox.h"

/* The host's decoder for frames from the guest agent (agent/proto.h), and the encoding of the
 * host's frames. The guest is untrusted: every header is checked against the limit for its type,
 * its stream and that stream's credit before any payload is buffered, and the inner lengths of
 * READY and EXIT must add up exactly.
 */

/* Streams open at once: the run's two output streams, and room for what later features open. */
#define FRAME_MAX_STREAMS 8
/* The credit the host grants each output stream in RUN: enough that the agent does not wait
 * for CREDIT while the host keeps up (one comes per half window), and a quarter of the output
 * cap (protocol.h), so that every run reaching its cap spends and regains credit. */
#define FRAME_OUTPUT_WINDOW (256u << 10)

/* A stream the guest sends DATA on, and what the host granted for it. */
struct frame_stream {
	uint32_t id;       /* 0: the slot is free */
	uint32_t window;   /* the credit it started with; a CREDIT is due at half of it */
	uint64_t credit;   /* DATA bytes the guest may still send */
	uint64_t consumed; /* bytes the host took in since it last granted credit */
};

struct frame_decoder {
	uint8_t header[AL_FRAME_HEADER_SIZE];
	size_t header_have;
	uint32_t type, length, stream;
	uint8_t *payload; /* grows as bytes arrive, never past length */
	size_t payload_have, payload_cap;
	const char *error;    /* set once the stream is bad; the decoder then refuses all input */
	bool wrong_version;   /* the error is the agent's protocol version, not a malformed frame */
	char error_text[256]; /* where error points when it holds numbers */
	size_t exit_limit;    /* the largest EXIT payload this run may send (frame_exit_limit) */
	bool egress;          /* the run has egress: its streams' frames are let through */
	struct frame_stream streams[FRAME_MAX_STREAMS];
};

/* Called for each complete frame with its stream (0 for the conversation's frames); the payload
 * is only valid during the call. Returning non-zero stops decoding and is passed back from
 * frame_decoder_feed(). */
typedef int (*frame_handler)(void *ctx, uint32_t type, uint32_t stream, const uint8_t *payload,
			     size_t len);

void frame_decoder_init(struct frame_decoder *d);
void frame_decoder_free(struct frame_decoder *d);
/* Feeds bytes from the guest. Returns 0, the handler's non-zero result, or -EPROTO with
 * d->error naming what was wrong (and d->wrong_version set when the agent speaks another
 * version of the protocol: d->error is then a whole sentence for the user). */
int frame_decoder_feed(struct frame_decoder *d, const uint8_t *data, size_t len,
		       frame_handler handler, void *ctx);
/* Whether the guest may send a frame of this type at all, and the largest payload the host
 * accepts for it. */
bool frame_type_known(uint32_t type);
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

/* Opens stream id (not 0) for DATA from the guest with window bytes of credit (1 to
 * AL_STREAM_MAX_WINDOW). Returns 0, -EINVAL, -EEXIST, or -ENOSPC when FRAME_MAX_STREAMS are
 * open. */
int frame_stream_open(struct frame_decoder *d, uint32_t id, uint32_t window);
/* Opens the output streams a RUN opens (stdout, stderr) with run->output_window each; call it
 * when the RUN is built, before any of the guest's output can arrive. Returns 0 or -errno. */
int frame_open_output_streams(struct frame_decoder *d, const struct al_run *run);
/* Notes that the host consumed len bytes of stream id's DATA. Returns the credit to grant now
 * in a CREDIT frame (counted as granted already), or 0 while none is due: one is due each time
 * half the window has been consumed, so that there is not a CREDIT per DATA. */
uint32_t frame_stream_consumed(struct frame_decoder *d, uint32_t id, size_t len);

/* The header of a host frame. */
struct al_frame_header frame_header(uint32_t type, uint32_t stream, uint32_t length);

/* A whole CREDIT frame as the host sends it. */
struct frame_credit {
	struct al_frame_header header;
	struct al_credit credit;
};
_Static_assert(sizeof(struct frame_credit) == AL_FRAME_HEADER_SIZE + sizeof(struct al_credit),
	       "a CREDIT frame is sent as it lies in memory");
/* The CREDIT frame granting bytes (not 0) on stream. */
struct frame_credit frame_encode_credit(uint32_t stream, uint32_t bytes);

/* Encodes a RUN frame header + struct al_run into out (AL_FRAME_HEADER_SIZE + sizeof al_run
 * bytes); the caller sends code, stdin and files right after it. Returns 0 or -EMSGSIZE. */
int frame_encode_run_header(const struct al_run *run, uint8_t *out, size_t out_len);

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
	bool exit_kept; /* the EXIT said the VM may be kept (AL_EXIT_KEPT) */
	bool delivered; /* done() has been called */
	sandbox_ready_fn ready;
	struct vm_launch launch; /* the backend's part: control socket, save file */
	bool process_handle;  /* uv_spawn ran: the process handle is to be closed */
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
	struct egress *egress; /* the run's egress streams, while it has them */
	const struct egress_policy *egress_policy; /* the request's, for egress_new */
	bool installing;       /* the run has an install step that has not reported yet */
	void (*on_output)(void *ctx, uint32_t stream, const uint8_t *data, size_t len);
	void *output_ctx;      /* the request's (sandbox_request.on_output) */

	/* The VM's serial log: the caller's file when it names one (sandbox_vm.log_path, kept), else
	 * a file unlinked as soon as it is made, so that nothing is left behind even when airlock is
	 * killed. log_fd reads it (pread: the VM program writes through a copy of it). */
	int log_fd;
	char serial_log[4096]; /* the kept log's path, or a note that it is not kept */
	bool keep_log;
	uint64_t spawned_ns, run_sent_ns, save_started_ns;
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

/* run_setup.c: the setup records of a RUN (malloc'd into *out; none when the request has no
 * policy). Returns 0 or -errno. */
int sandbox_build_setup(const struct sandbox_request *req, uint8_t **out, size_t *out_len);
/* Whether the run serves a proxy: hosts are allowed, or packages install. */
bool sandbox_request_has_egress(const struct sandbox_request *req);

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
/* Sends any frame to the guest (a copy of payload); nothing once the sandbox is ending. Returns
 * 0 or -errno. The egress part's egress_send_fn. */
int sandbox_send_frame(void *sb, uint32_t type, uint32_t stream, const void *payload, size_t len);
/* A STEP frame: its result into the sandbox's result. Returns 0 or -ENOMEM. */
int sandbox_take_step(struct sandbox *sb, const uint8_t *payload, size_t len);
/* Starts the run's egress (sandbox_send_request, when the run has it). Returns 0 or -errno. */
int sandbox_start_egress(struct sandbox *sb);
/* Ends the run's egress: its attempts into the result, its connections closed (the sandbox
 * counts it as an open handle until they are). */
void sandbox_end_egress(struct sandbox *sb, void (*closed)(void *sb));

/* guest_log.c */
void sandbox_quote_guest_text(const char *text, size_t len, char *out, size_t out_len);
void sandbox_log_tail(const struct sandbox *sb, char *out, size_t out_len);
void sandbox_copy_log_to_stderr(const struct sandbox *sb);

#endif
