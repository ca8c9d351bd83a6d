/* airlock-agent: the guest's PID 1. One header for the agent's parts: the channel to the host,
 * the credit of its output streams, the program runner, stopping the user's processes,
 * collecting /work/out and the tar reader/writer. Depends on libc and proto.h only.
 */
#ifndef AIRLOCK_AGENT_H
#define AIRLOCK_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "proto.h"
#include "../images/pending-output.h"

#define AGENT_USER_UID 1000
#define AGENT_USER_GID 1000
#define AGENT_WORK_DIR "/work"
#define AGENT_OUT_DIR "/work/out"
#define AGENT_RUN_DIR "/run/airlock" /* the program text and its stdin, root-owned */
#define AGENT_CELL_STDIN AGENT_RUN_DIR "/stdin" /* a cell's stdin (AL_RUN_CELL), bound by its starter */
#define AGENT_PENDING_OUTPUT AGENT_RUN_DIR "/output" /* pending.c; the sandbox user's to write */
/* SCHED_FIFO priorities during a run: the agent, and below it the collector of /work/out, both
 * ahead of every user process (and of a dying interpreter's teardown). */
#define AGENT_RUN_PRIORITY 2
#define AGENT_COLLECT_PRIORITY 1

/* ---- channel.c: frames over the host channel ---- */

/* Opens the host channel (a virtio-console port; raw mode when it is a tty). Returns the fd or
 * -errno. */
int channel_open(const char *path);
/* Opens the host channel wherever the VMM put it: a virtio serial port (QEMU: /dev/vportNp1, N
 * being the virtio device's probe order) or virtio-console port 0 (airlock-vmm: /dev/hvc0).
 * Returns the fd or -errno (-ENOENT while the driver has not registered the port yet). */
int channel_find(void);
/* Writes all of buf, EINTR retried (the agent's parts share it). Returns 0 or -errno. */
int fd_write_all(int fd, const void *buf, size_t len);
/* CLOCK_MONOTONIC in milliseconds, for the agent's deadlines. */
int64_t monotonic_ms(void);
/* Writes one frame (header + payload) on stream. Returns 0 or -errno. */
int channel_send_on(int fd, uint32_t type, uint32_t stream, const void *payload, size_t len);
/* Writes one frame of the conversation (stream 0). Returns 0 or -errno. */
int channel_send(int fd, uint32_t type, const void *payload, size_t len);
/* Sends an ERROR frame with printf-style text (truncated to AL_FRAME_MAX_ERROR_TEXT). */
void channel_send_error(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads one frame: *type, *stream, and a malloc'd payload (*payload, *len) the caller frees.
 * Returns 0, -EPROTO for a frame over AL_FRAME_MAX_PAYLOAD or with flags set, or -errno. */
int channel_recv(int fd, uint32_t *type, uint32_t *stream, uint8_t **payload, size_t *len);

/* ---- credit.c: what the host lets the agent send on an output stream ---- */

/* Adds a CREDIT's bytes to a stream's credit. Returns 0, or -EPROTO for a grant of 0 or one
 * that would let more than AL_STREAM_MAX_WINDOW bytes be in flight (credit is left as it was). */
int credit_grant(uint64_t *credit, uint32_t bytes);
/* How many bytes to read from a program's output pipe now, into a buffer of buf_size: output
 * past the cap is dropped and needs no credit; below it, at most the credit. 0: wait for
 * CREDIT (the pipe is not read, so the program blocks on it when it is full). */
size_t output_read_size(uint64_t credit, uint64_t total, uint64_t cap, size_t buf_size);

/* ---- program.c: the user's program as a process, started before it is needed ---- */

#define PROGRAM_START_TIMEOUT_MS 60000     /* an interpreter's start, under emulation */
#define PROGRAM_PRELOAD_TIMEOUT_MS 600000  /* plus importing numpy, pandas, matplotlib */

/* No program: every fd closed (-1). */
#define PROGRAM_NONE                                                                               \
	((struct program){.pid = 0, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .go_fd = -1,   \
			  .ready_fd = -1})

struct program {
	pid_t pid;         /* 0 when there is none */
	uint32_t language; /* enum al_language */
	int stdin_fd;      /* write end of its stdin */
	int stdout_fd;     /* read ends of its output */
	int stderr_fd;
	int go_fd;         /* "P" (prepare: re-seed) any number of times, then "G" (go) once */
	int ready_fd;      /* the program's "R": started, or prepared */
};

/* Starts the interpreter for language as the sandbox user and waits until it is ready to run the
 * program (python and node with preload also load the common modules first). Returns 0, or
 * -errno with *why saying what went wrong. */
int program_start(struct program *p, uint32_t language, int preload, const char **why);
/* For a run with an environment of its own: where the language's interpreter reads some of it
 * only at its start (node), replaces the waiting one with a fresh process that execs it at go.
 * Returns 0 (also when the waiting one serves), or -errno with *why set. */
int program_freshen_for_environment(struct program *p, const char **why);
/* Where the program text must be written for language. */
const char *program_script_path(uint32_t language);
/* Has the waiting interpreter re-seed its PRNGs from the kernel (just fed fresh entropy) and
 * warm up, and waits until it has. Returns 0 or -errno. */
int program_prepare(struct program *p);
/* Lets the waiting program run, with_environment: after taking SETUP_ENV_FILE (written for this
 * run). Returns 0 or -errno. */
int program_go(struct program *p, int with_environment);
/* Runs the program text as the next cell of the waiting interpreter (AL_RUN_CELL), stdin from
 * AGENT_CELL_STDIN, with_environment as program_go; the interpreter reports the cell's end with
 * "X<status>" on its ready pipe and waits for the next line ("P" or a cell). */
int program_go_cell(struct program *p, int with_environment);
/* Kills a program that will not run and closes its pipes. */
void program_discard(struct program *p);

/* In a child of the agent: runs argv (argv[0] a full path) as the sandbox user in its own
 * session in /work, stdin from /dev/null, stdout and stderr into one pipe (*out_fd, its read
 * end), with the user's environment and extra_env (NULL-terminated). Returns 0 or -errno. */
int program_spawn_step(char *const argv[], char *const extra_env[], pid_t *pid, int *out_fd);

/* ---- egress.c: the proxy on guest loopback, its connections carried as egress streams ---- */

struct egress;
struct pollfd;

/* Listens on 127.0.0.1:AL_EGRESS_PROXY_PORT. Returns 0 or -errno. */
int egress_start(struct egress **out);
/* Closes the listener and every connection (the run is over: the host ends its streams). */
void egress_stop(struct egress *e);
/* Fills fds with what the proxy waits for (at most max; 1 + AL_EGRESS_MAX_STREAMS is enough);
 * returns how many. A NULL egress has none. */
int egress_poll_fds(struct egress *e, struct pollfd *fds, int max);
/* Acts on poll's answer for the fds egress_poll_fds() filled. Returns 0 or -errno (the
 * channel failed). */
int egress_on_poll(struct egress *e, int channel_fd, const struct pollfd *fds, int n);
/* DATA, CREDIT or CLOSE from the host on an egress stream. Returns 0, or -EPROTO when the host
 * broke the protocol (or -errno when the channel failed). */
int egress_host_frame(struct egress *e, int channel_fd, uint32_t type, uint32_t stream,
		      const uint8_t *payload, size_t len);

/* ---- setup.c and steps.c: what a RUN sets up before the program (proto.h, setup records) ---- */

#define SETUP_ENV_FILE AGENT_RUN_DIR "/env"             /* NAME='VALUE' lines */
#define SETUP_CA_BUNDLE AGENT_RUN_DIR "/ca-bundle.pem"  /* the system's and the extra ones */
#define SETUP_CA_EXTRA AGENT_RUN_DIR "/ca-extra.pem"    /* the extra ones only */
#define SETUP_MAX_ENV 64
#define SETUP_MAX_STEPS 4
#define SETUP_MAX_ARGS 256

struct setup_step {
	uint32_t kind;        /* enum al_step_kind */
	uint32_t fail_status; /* al_step_command's */
	char *argv[SETUP_MAX_ARGS];
};

struct setup {
	char *env[SETUP_MAX_ENV + 1]; /* NAME=VALUE, NULL-terminated */
	size_t n_env;
	const char *ca; /* PEM, or NULL */
	size_t ca_len;
	struct setup_step steps[SETUP_MAX_STEPS];
	size_t n_steps;
	char *storage; /* what the pointers point into */
};

/* Parses a RUN's setup records. Returns 0 or -EPROTO (-ENOMEM); free with setup_free() either
 * way. */
int setup_parse(const uint8_t *data, size_t len, struct setup *s);
void setup_free(struct setup *s);
/* Writes the environment file and the CA bundle into the run directory. Returns 0 or -errno. */
int setup_write_files(const struct setup *s);
/* Runs the steps in order until deadline, each reported in a STEP frame, with the proxy
 * serving meanwhile (egress may be NULL). *stopped: a step failed and the program must not run.
 * Returns 0, or -errno when the channel or the agent failed. */
int setup_run_steps(int channel_fd, const struct setup *s, struct egress *egress,
		    int64_t deadline, int *stopped);

/* ---- exec.c: one program run ---- */

struct run_request {
	struct al_run header;
	const uint8_t *code;
	const uint8_t *stdin_data;
	const uint8_t *files;
	const uint8_t *setup;
};

struct output_stream;
/* Reads one frame from the host during a run: CREDIT for an output stream (streams may be NULL
 * before the program runs: then none may come), or an egress stream's frame. Returns 0, or
 * -EPROTO (or -errno when the channel fails). */
int host_frame_take(int channel_fd, struct output_stream *streams, struct egress *egress);

/* Feeds the host's entropy to the kernel's CRNG and sets the wall clock (every VM restored from
 * a snapshot starts with the same CRNG state and a stale clock). */
void refresh_entropy_and_clock(const uint8_t entropy[64], int64_t wall_clock_ns);
/* Runs the paths of a request once, on nothing (an emulated CPU then has them translated). */
void warm_up_run_path(void);
/* Parses a RUN payload; the pointers in *req point into payload. Returns 0 or -EPROTO. */
int run_request_parse(const uint8_t *payload, size_t len, struct run_request *req);
/* Runs the program as the sandbox user, streams its output to the channel and sends the EXIT
 * frame. prog is the interpreter started ahead (or pid 0: one is started now); vm_is_unique says
 * a PING already fed host entropy to the kernel (else the request's is). Returns 0 when EXIT was
 * sent, -errno otherwise (the caller reports an ERROR). */
int run_program(int channel_fd, const struct run_request *req, struct program *prog,
		int vm_is_unique);

/* ---- stop.c: the end of the user's processes ---- */

struct stop_mark {
	long switches; /* the agent's context switches at the kill; -1: no proof from them */
};

/* Sends SIGKILL to every process of the sandbox user (double-forked daemons included; none can
 * start another after it) and marks the moment. */
void stop_kill_all(struct stop_mark *mark);
/* 1 when no other task can have run since mark: the guest has one CPU and the agent, which
 * runs ahead of every user task, has not been switched out since. */
int stop_nothing_ran_since(const struct stop_mark *mark);
/* Kills every process of the sandbox user (again) and waits until none can act any more: each
 * is gone, dead, or inside the kernel's exit path, from which it never runs user code or starts
 * a system call again. Not until their memory is freed: for a large interpreter under emulation
 * that takes milliseconds and changes nothing a result holds. Returns 0, or -ETIMEDOUT (or
 * -errno) when that could not be confirmed within timeout_ms. */
int stop_user_processes(int timeout_ms);
/* Notes the user's processes (the interpreter started ahead), so that stop_user_processes need
 * not walk all of /proc when no task was created since. Call it before the first READY: a VM
 * restored from a snapshot then has the note without the walk's cost. */
void stop_note_processes(void);
/* Tells the note that the agent created a task of its own that is gone again (a helper it has
 * reaped). */
void stop_count_own_task(void);
/* Tells the note that a user process was started after it: it no longer says them all. */
void stop_forget_processes(void);
/* Runs what the usual end of a run takes once, for an emulated CPU to translate it. */
void stop_warm_up(void);

/* ---- cell.c: kept state, the user's processes stopped and set going again ---- */

/* Stops every process of the user (SIGSTOP) and waits until each of their tasks is stopped or
 * gone. Only as PID 1. Returns 0, -ETIMEDOUT, or -errno. */
int cell_freeze(int timeout_ms);
/* Lets them go on (SIGCONT), when cell_freeze() stopped them; else nothing. */
void cell_thaw(void);
/* Whether cell_freeze() stopped them and cell_thaw() has not run since. */
int cell_frozen(void);

/* ---- collect.c: the files under /work/out, read as the sandbox user ---- */

struct out_files {
	uint8_t *payload;     /* NULL, or room for struct al_exit, then the tar, then the list */
	uint32_t tar_len;     /* ustar of the returned files */
	uint32_t skipped_len; /* "SIZE PATH\n" lines of files not returned */
	int truncated;        /* some of dir was not returned */
};

/* Collects the regular files under dir, up to cap bytes of content, as the sandbox user and
 * without following any link; call it only once the user's processes are stopped. since, when
 * not NULL, leaves out the files whose status last changed before it (a cell's start: the files
 * it created or changed, by ctime, which no user can set back). A collection that fails or does
 * not finish within timeout_ms returns no file and sets truncated. Returns 0, or -errno when the
 * agent itself failed (no memory, no process). */
int out_files_collect(const char *dir, uint64_t cap, int timeout_ms, const struct timespec *since,
		      struct out_files *f);
void out_files_free(struct out_files *f);
/* Whether dir, reached without links, holds anything at all. */
int out_files_any(const char *dir);
/* Looks into a directory as the usual end of a run does, for an emulated CPU to translate it. */
void out_files_warm_up(void);

/* ---- tar.c: ustar in and out ---- */

/* Unpacks regular files and directories from a ustar archive under dir, owned by uid/gid.
 * Rejects absolute paths, "..", links and special files. Returns 0 or -errno; *bad_path names the
 * offending member (static storage) when the archive is refused. */
int tar_extract(const uint8_t *data, size_t len, const char *dir, uid_t uid, gid_t gid,
		const char **bad_path);

struct tar_writer {
	uint8_t *data;
	size_t len, cap;
};

/* Appends one regular file (header + content padded to 512). Returns 0 or -errno
 * (-ENAMETOOLONG when the path does not fit ustar's 100+155 bytes). */
int tar_add_file(struct tar_writer *w, const char *path, const void *content, size_t size);
/* Checks an archive as tar_add_file and tar_finish make it: regular files with safe relative
 * paths, lengths adding up exactly, the two zero blocks at the end. Returns 0 with the content
 * bytes and the number of files, or -EPROTO. */
int tar_check(const uint8_t *data, size_t len, uint64_t *content, unsigned *files);
/* Appends the two zero blocks that end an archive. */
int tar_finish(struct tar_writer *w);
void tar_writer_free(struct tar_writer *w);

/* ---- pending.c: the Python starter's buffered output (images/pending-output.h) ---- */

/* Creates AGENT_PENDING_OUTPUT for the sandbox user and maps it. Returns 0 or -errno. */
int pending_output_create(void);
/* After the user's processes are stopped: moves what the program left pending into buf (room
 * for AL_PENDING_OUTPUT_SIZE) and returns its length, *stream the stream it belongs to; 0 when
 * there is nothing, or nothing well-formed. */
size_t pending_output_take(uint32_t *stream, uint8_t *buf);
/* Whether nothing is pending (one load from memory). */
int pending_output_empty(void);

#endif
