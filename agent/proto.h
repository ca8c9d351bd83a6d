/* The wire format between the host (airlock) and the guest agent (airlock-agent), version 3.
 *
 * It runs over one byte stream: a virtio-console port in the guest (/dev/hvc0 in raw mode with
 * airlock-vmm, /dev/vportNp1 with QEMU, whose console port drops bytes under load), one
 * socket on the host. The VMM in between only moves bytes. This header is the whole contract and
 * is shared by both ends; it depends on nothing but <stdint.h>.
 *
 * Framing. Every message is a frame:
 *
 *     u32 type      one of enum al_frame_type
 *     u32 length    payload bytes that follow (at most AL_FRAME_MAX_PAYLOAD)
 *     u32 stream    the stream the frame belongs to: 0 for the conversation itself
 *     u32 flags     reserved: 0 (a frame with any flag set is refused)
 *     u8  payload[length]
 *
 * All integers are little-endian (both ends are x86_64: the structs below are sent as they lie in
 * memory, they have no padding, and their sizes are checked at compile time).
 *
 * Streams. The one channel carries several byte streams, each named by an id in the header:
 *
 *     0        the conversation: READY, PING, RUN, EXIT, ERROR travel only here
 *     1, 2     the program's stdout and stderr (AL_STREAM_STDOUT, AL_STREAM_STDERR), opened by
 *              RUN: the guest sends DATA on them, the host grants CREDIT for them
 *     3..15    reserved for streams every run has, should one be added
 *     16..     opened on demand with OPEN: one egress connection each (below)
 *
 * DATA carries a stream's bytes (at most AL_FRAME_MAX_OUTPUT_CHUNK a frame); DATA on a stream
 * that is not open is a protocol error. The output streams end with the run: all their DATA
 * comes before EXIT.
 *
 * Egress streams (only in a run whose al_run.flags has AL_RUN_EGRESS). The agent serves an HTTP
 * proxy on guest loopback (AL_EGRESS_PROXY_PORT); each connection a program makes to it is one
 * stream. The agent OPENs it (an empty payload; ids from AL_STREAM_FIRST_OPENED up, each larger
 * than the last, never reused in a run) and sends the connection's bytes as DATA, the proxy
 * request first: it parses nothing. The host reads the request, decides, and sends back DATA:
 * the upstream's bytes after "200 Connection established" (CONNECT) or after forwarding the
 * request (plain HTTP), or an HTTP error page saying why it refused. OPEN gives each direction
 * AL_EGRESS_WINDOW bytes of credit; each receiver grants more with CREDIT as it passes the
 * bytes on. CLOSE (struct al_close) from either end says that end sends no more DATA on the
 * stream (AL_CLOSE_DONE: the receiver passes an end-of-file on after what it holds) or that the
 * connection is gone (AL_CLOSE_ABORT: the receiver drops what it holds and closes its side,
 * answering with its own CLOSE). A stream's id is free at an end once that end has both sent
 * and received a CLOSE; DATA or CREDIT arriving for a stream after its receiver sent CLOSE is
 * dropped. Every egress stream ends with the run.
 *
 * Credit. The receiver of a stream decides how much it takes in: its sender may have at most
 * that many bytes of DATA in flight. RUN grants the first window for each output stream
 * (al_run.output_window, at most AL_STREAM_MAX_WINDOW); the host then sends CREDIT (struct
 * al_credit, the header naming the stream) as it consumes the output, in batches (about once
 * per half window), and each CREDIT adds its bytes to what the guest may send. The agent never
 * sends beyond its credit: with a stream's credit spent it stops reading the program's pipe,
 * so the program blocks on a full pipe (backpressure) until CREDIT comes. The host refuses DATA
 * beyond the credit it granted; the agent refuses (ends the run with ERROR) a CREDIT that would
 * let more than AL_STREAM_MAX_WINDOW bytes be in flight, and a RUN whose window is 0 or past it.
 * Credit is not the cap: output past al_run's caps is read and dropped by the agent, needing no
 * credit. The conversation's frames are not under credit: their types' limits bound them.
 *
 * A conversation (one VM serves exactly one run, then is destroyed):
 *
 *     guest: READY                          the agent is up and waits for work (struct al_ready:
 *                                           its protocol version)
 *     host:  PING ...                       optional, any number: "are you there?", with fresh
 *                                           entropy and the clock (struct al_ping)
 *     guest: READY                          one per PING, once the guest took the entropy and the
 *                                           waiting interpreter re-seeded its PRNGs (how the host
 *                                           sees a VM restored from a snapshot answer, unique,
 *                                           before any request; its first READY is in the
 *                                           snapshot)
 *     host:  RUN                            struct al_run, then code, stdin, files (ustar) and
 *                                           setup records; opens streams 1 and 2 with
 *                                           output_window bytes of credit
 *     guest: STEP ...                       one per setup step (installing packages, the
 *                                           pre-scan), run before the program: struct al_step
 *                                           and the step's output; a step that fails ends the
 *                                           run with EXIT (AL_EXIT_NOT_RUN) before the program
 *     guest: DATA (stream 1 or 2) ...       program output as it comes, up to the caps, within
 *     host:  CREDIT (stream 1 or 2) ...     the credit; the order of DATA frames across both
 *                                           streams is the order the program's output was read
 *     guest: EXIT                           struct al_exit, then /work/out (ustar), then the list
 *                                           of output files not returned ("SIZE PATH\n" lines)
 *     or:    ERROR                          UTF-8 text: the agent could not run the program
 *
 * Setup records follow the files in RUN (al_run.setup_len bytes): each a struct al_setup_record
 * and its value. AL_SETUP_ENV: "NAME=VALUE" for the program's environment (and the steps');
 * AL_SETUP_CA: PEM certificates the guest trusts besides the system's (the agent writes the
 * bundle and the host names it in ENV records); AL_SETUP_STEP: a struct al_step_command and
 * its argv (NUL-terminated strings), run as the sandbox user in /work before the program, in
 * order, within the run's timeout (a scan step gets the program's path as a last argument).
 *
 * Kept state. A RUN with AL_RUN_CELL runs its program in the interpreter a previous run of this
 * VM left (else a new one), as a cell: its globals carry over. With AL_RUN_KEEP as well, the run
 * ends with every user process stopped (not killed) and EXIT says AL_EXIT_KEPT; the agent then
 * waits for frames again, as after its first READY. The host saves the VM there and later
 * restores it in a fresh VM: PING (the processes go on, the interpreter re-seeds) and the next
 * RUN. A run that timed out is never kept (its processes are killed; no AL_EXIT_KEPT).
 *
 * Versions. READY says the agent's version (al_ready.version) and RUN the host's
 * (al_run.version); each end refuses any other. A version 1 agent's READY (an 8-byte header, an
 * 8-byte payload) reads to a later host as a READY of length 8, which the host names as such;
 * a version 2 agent's READY carries its version: an image built by an older airlock is refused
 * with a message, not a hang.
 *
 * The guest is untrusted: the host decodes every frame defensively (known type, length within the
 * limit for that type, the stream and the credit, inner lengths adding up exactly) and ends the
 * VM on the first bad frame.
 */
#ifndef AIRLOCK_PROTO_H
#define AIRLOCK_PROTO_H

#include <stdint.h>

#define AL_PROTO_VERSION 3u

#define AL_FRAME_HEADER_SIZE 16u
/* Large enough for a RUN holding a 16 MiB request (code + stdin + files) and for an EXIT with
 * the returned output files; anything larger is a protocol error. */
#define AL_FRAME_MAX_PAYLOAD (40u << 20)
/* DATA frames are cut at this size so the host can stream and cap them. */
#define AL_FRAME_MAX_OUTPUT_CHUNK (64u << 10)
/* The most credit a stream's receiver may grant in all (bytes in flight); a larger window buys
 * no speed and would let a stream hold the other end's memory. */
#define AL_STREAM_MAX_WINDOW (64u << 20)
#define AL_FRAME_MAX_ERROR_TEXT 4096u
/* A step's output sent back in STEP: its last bytes (an installer's error is at its end). */
#define AL_STEP_MAX_OUTPUT (64u << 10)
/* Setup records in all. */
#define AL_SETUP_MAX_LEN (1u << 20)

/* The guest's proxy: 127.0.0.1 and this port, named by the program's environment. */
#define AL_EGRESS_PROXY_PORT 3128
/* The credit each direction of an egress stream starts with (OPEN), and its most. */
#define AL_EGRESS_WINDOW (512u << 10)
/* Egress streams the agent keeps open at once; it accepts no more connections until one ends,
 * so further ones wait in the listener's backlog. The host's own limit is lower (it refuses
 * with a page); a guest opening more than this is not the agent. */
#define AL_EGRESS_MAX_STREAMS 48u

enum al_frame_type {
	/* guest -> host, stream 0 (2 and 3 were version 1's STDOUT and STDERR: never reused) */
	AL_FRAME_READY = 1, /* struct al_ready */
	AL_FRAME_EXIT = 4,  /* struct al_exit + files tar + skipped list */
	AL_FRAME_ERROR = 5, /* UTF-8 text, at most AL_FRAME_MAX_ERROR_TEXT */
	AL_FRAME_STEP = 6,  /* struct al_step + the step's output (its last AL_STEP_MAX_OUTPUT) */
	/* host -> guest, stream 0 */
	AL_FRAME_RUN = 0x81,  /* struct al_run + code + stdin + files tar */
	AL_FRAME_PING = 0x82, /* struct al_ping; answered with READY */
	/* on a stream other than 0; the sender of DATA is the receiver of CREDIT */
	AL_FRAME_DATA = 0x41,   /* a stream's bytes, at most AL_FRAME_MAX_OUTPUT_CHUNK: guest ->
				 * host on the output streams, both ways on egress streams */
	AL_FRAME_CREDIT = 0x42, /* struct al_credit */
	AL_FRAME_OPEN = 0x43,   /* guest -> host: opens an egress stream; no payload */
	AL_FRAME_CLOSE = 0x44,  /* either way: struct al_close, on an egress stream */
};

enum al_stream {
	AL_STREAM_CONVERSATION = 0, /* READY, PING, RUN, EXIT, ERROR */
	AL_STREAM_STDOUT = 1,       /* opened by RUN */
	AL_STREAM_STDERR = 2,       /* opened by RUN */
	AL_STREAM_FIRST_OPENED = 16, /* ids from here on: opened by OPEN (egress connections) */
};

/* The languages, once. A row's place is its number on the wire (al_run.language: 1, 2, ...), so
 * rows are only ever appended. Each row: its enum name, the name users, the tool and the
 * snapshots use, whether its starter runs cells (kept state: 1), and what the tool's description
 * tells a model about it. A new language is a row
 * here, its interpreter in agent/program.c and its packages in images/packages.txt: the agent,
 * the host's tool schema and description, the pool and the snapshots all read this list. */
#define AL_LANGUAGES(X)                                                                            \
	X(PYTHON, "python", 1,                                                                     \
	  "python (Python 3.11 with numpy, pandas, scipy, matplotlib, requests and the standard "  \
	  "library; plt.show() returns each figure as a PNG)")                                     \
	X(JAVASCRIPT, "javascript", 1, "javascript (Node.js 18 and its standard library)")         \
	X(BASH, "bash", 1, "bash (coreutils, sed, grep, procps, curl, git)")                       \
	X(GO, "go", 0,                                                                             \
	  "go (Go 1.19 and its standard library: the code is package main, built and run; .go "    \
	  "files given in `files` are built with it; no other modules)")

enum al_language {
	AL_LANG_NONE = 0, /* no language: never valid on the wire */
#define AL_LANGUAGE_ENUM(id, name, cells, about) AL_LANG_##id,
	AL_LANGUAGES(AL_LANGUAGE_ENUM)
#undef AL_LANGUAGE_ENUM
	AL_LANG_END, /* one past the last: arrays indexed by language have AL_LANG_END entries */
};
#define AL_LANG_FIRST 1

/* A language's row of AL_LANGUAGES, or NULL for a number that is none. */
struct al_language_row {
	const char *name;  /* "python": what users, the tool and the snapshots call it */
	int keeps_state;   /* runs cells in an interpreter whose state can be kept (AL_RUN_CELL) */
	const char *about; /* what the tool's description says of it */
};
static inline const struct al_language_row *al_language(uint32_t language)
{
	static const struct al_language_row rows[AL_LANG_END] = {
#define AL_LANGUAGE_ROW(id, name, cells, about) [AL_LANG_##id] = {name, cells, about},
		AL_LANGUAGES(AL_LANGUAGE_ROW)
#undef AL_LANGUAGE_ROW
	};
	return language >= AL_LANG_FIRST && language < AL_LANG_END ? &rows[language] : NULL;
}

static inline const char *al_language_name(uint32_t language)
{
	return al_language(language) ? al_language(language)->name : NULL;
}

/* The guest's two tmpfs file systems, /work and /tmp, are this size each (agent/main.c mounts
 * them; the tool's description states it). */
#define AL_GUEST_TMPFS_MB 256

struct al_frame_header {
	uint32_t type;   /* enum al_frame_type */
	uint32_t length; /* of the payload */
	uint32_t stream; /* enum al_stream, or an id opened by OPEN */
	uint32_t flags;  /* reserved: 0 */
};

struct al_ready {
	uint32_t version;     /* AL_PROTO_VERSION */
	uint32_t reserved[3]; /* 0: room for what a later agent advertises */
};

struct al_credit {
	uint32_t bytes; /* more bytes the sender may send on the header's stream; not 0 */
};

struct al_run {
	uint32_t version;       /* AL_PROTO_VERSION */
	uint32_t language;      /* enum al_language */
	uint32_t timeout_ms;    /* wall-clock limit for the program */
	uint32_t output_window; /* credit each output stream starts with, 1..AL_STREAM_MAX_WINDOW */
	uint64_t stdout_cap;    /* bytes of stdout sent back; the rest is drained and dropped */
	uint64_t stderr_cap;    /* likewise for stderr */
	uint64_t out_files_cap; /* bytes of /work/out file content sent back */
	int64_t wall_clock_ns;  /* host CLOCK_REALTIME when the request was made */
	uint8_t entropy[64];    /* fresh host randomness for the guest kernel's CRNG */
	uint32_t code_len;      /* program text */
	uint32_t stdin_len;     /* fed to the program's standard input */
	uint32_t files_len;     /* ustar archive unpacked under /work before the run */
	uint32_t setup_len;     /* setup records (struct al_setup_record each) after the files */
	uint32_t flags;         /* enum al_run_flags */
	uint32_t reserved2;     /* 0 */
};

enum al_run_flags {
	AL_RUN_EGRESS = 1u << 0, /* serve the proxy and carry its connections as egress streams */
	/* Run the program as a cell of the interpreter already running (kept state, below): in its
	 * persistent namespace, stdin from a file, the interpreter left running at the end. */
	AL_RUN_CELL = 1u << 1,
	/* With AL_RUN_CELL: at the end, stop (SIGSTOP) the user's processes rather than kill them,
	 * and answer EXIT with AL_EXIT_KEPT: the host may then save the VM. */
	AL_RUN_KEEP = 1u << 2,
};

enum al_setup_kind {
	AL_SETUP_ENV = 1,  /* "NAME=VALUE": no newline, no quote, NAME of [A-Za-z0-9_] */
	AL_SETUP_CA = 2,   /* PEM certificates to trust besides the system's */
	AL_SETUP_STEP = 3, /* struct al_step_command + argv, NUL-terminated strings */
};

struct al_setup_record {
	uint32_t kind;   /* enum al_setup_kind */
	uint32_t length; /* of the value that follows */
};

enum al_step_kind {
	AL_STEP_INSTALL = 1, /* installs the call's packages; its end closes the install hosts */
	AL_STEP_SCAN = 2,    /* the advisory pre-scan: JSON on stdout */
};

struct al_step_command {
	uint32_t kind;         /* enum al_step_kind */
	uint32_t fail_status;  /* the exit status that stops the run (0: any but 0 does) */
};

struct al_step {
	uint32_t kind;        /* enum al_step_kind */
	int32_t exit_code;    /* -1 when a signal or the timeout ended it */
	uint32_t duration_ms;
	uint32_t stops_run;   /* 1: the program will not run (EXIT has AL_EXIT_NOT_RUN) */
	uint32_t output_len;  /* bytes of output that follow (stdout and stderr together) */
	uint32_t output_total_hi, output_total_lo; /* all the step wrote, kept or not */
	uint32_t reserved;
};

enum al_close_how {
	AL_CLOSE_DONE = 0,  /* no more DATA from this end */
	AL_CLOSE_ABORT = 1, /* the connection is gone: drop what is held */
};

struct al_close {
	uint32_t how; /* enum al_close_how */
};

struct al_ping {
	int64_t wall_clock_ns; /* host CLOCK_REALTIME */
	uint8_t entropy[64];   /* fresh host randomness for the guest kernel's CRNG */
};

enum al_exit_flags {
	AL_EXIT_TIMED_OUT = 1u << 0,
	AL_EXIT_STDOUT_TRUNCATED = 1u << 1,
	AL_EXIT_STDERR_TRUNCATED = 1u << 2,
	AL_EXIT_FILES_TRUNCATED = 1u << 3, /* some of /work/out was not returned */
	AL_EXIT_NOT_RUN = 1u << 4,         /* a setup step stopped the run: no program ran */
	AL_EXIT_KEPT = 1u << 5, /* AL_RUN_KEEP: every user process is stopped, the VM may be saved */
};

struct al_exit {
	int32_t exit_code;     /* -1 when the program was killed by a signal */
	int32_t signal;        /* signal number that ended it, 0 when it exited */
	uint32_t flags;        /* enum al_exit_flags */
	uint32_t reserved;
	uint64_t stdout_bytes; /* everything the program wrote, dropped bytes included */
	uint64_t stderr_bytes;
	uint32_t files_len;    /* ustar archive of returned files under /work/out */
	uint32_t skipped_len;  /* "SIZE PATH\n" lines for files under /work/out not returned */
};

_Static_assert(sizeof(struct al_frame_header) == AL_FRAME_HEADER_SIZE, "no padding in the header");
_Static_assert(sizeof(struct al_ready) == 16, "al_ready has no padding");
_Static_assert(sizeof(struct al_ready) != 8, "a version 1 READY (8 bytes) must be told apart");
_Static_assert(sizeof(struct al_credit) == 4, "al_credit has no padding");
_Static_assert(sizeof(struct al_run) == 136, "al_run has no padding");
_Static_assert(sizeof(struct al_setup_record) == 8, "al_setup_record has no padding");
_Static_assert(sizeof(struct al_step_command) == 8, "al_step_command has no padding");
_Static_assert(sizeof(struct al_step) == 32, "al_step has no padding");
_Static_assert(sizeof(struct al_close) == 4, "al_close has no padding");
_Static_assert(sizeof(struct al_exit) == 40, "al_exit has no padding");
_Static_assert(sizeof(struct al_ping) == 72, "al_ping has no padding");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is little-endian");

#endif
