/* The wire format between the host (airlock) and the guest agent (airlock-agent).
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
 *     u8  payload[length]
 *
 * All integers are little-endian (both ends are x86_64: the structs below are sent as they lie in
 * memory, they have no padding, and their sizes are checked at compile time).
 *
 * A conversation (one VM serves exactly one run, then is destroyed):
 *
 *     guest: READY                          the agent is up and waits for work
 *     host:  PING ...                       optional, any number: "are you there?", with fresh
 *                                           entropy and the clock (struct al_ping)
 *     guest: READY                          one per PING, once the guest took the entropy and the
 *                                           waiting interpreter re-seeded its PRNGs (how the host
 *                                           sees a VM restored from a snapshot answer, unique,
 *                                           before any request; its first READY is in the
 *                                           snapshot)
 *     host:  RUN                            struct al_run, then code, stdin, files (ustar)
 *     guest: STDOUT / STDERR ...            program output as it comes, up to the caps
 *     guest: EXIT                           struct al_exit, then /work/out (ustar), then the list
 *                                           of output files not returned ("SIZE PATH\n" lines)
 *     or:    ERROR                          UTF-8 text: the agent could not run the program
 *
 * The guest is untrusted: the host decodes every frame defensively (known type, length within the
 * limit for that type, inner lengths adding up exactly) and ends the VM on the first bad frame.
 */
#ifndef AIRLOCK_PROTO_H
#define AIRLOCK_PROTO_H

#include <stdint.h>

#define AL_PROTO_VERSION 1u

#define AL_FRAME_HEADER_SIZE 8u
/* Large enough for a RUN holding a 16 MiB request (code + stdin + files) and for an EXIT with
 * the returned output files; anything larger is a protocol error. */
#define AL_FRAME_MAX_PAYLOAD (40u << 20)
/* Output frames are cut at this size so the host can stream and cap them. */
#define AL_FRAME_MAX_OUTPUT_CHUNK (64u << 10)
#define AL_FRAME_MAX_ERROR_TEXT 4096u

enum al_frame_type {
	/* guest -> host */
	AL_FRAME_READY = 1,  /* struct al_ready */
	AL_FRAME_STDOUT = 2, /* raw bytes, at most AL_FRAME_MAX_OUTPUT_CHUNK */
	AL_FRAME_STDERR = 3, /* raw bytes, at most AL_FRAME_MAX_OUTPUT_CHUNK */
	AL_FRAME_EXIT = 4,   /* struct al_exit + files tar + skipped list */
	AL_FRAME_ERROR = 5,  /* UTF-8 text, at most AL_FRAME_MAX_ERROR_TEXT */
	/* host -> guest */
	AL_FRAME_RUN = 0x81,  /* struct al_run + code + stdin + files tar */
	AL_FRAME_PING = 0x82, /* struct al_ping; answered with READY */
};

/* The languages, once. A row's place is its number on the wire (al_run.language: 1, 2, ...), so
 * rows are only ever appended. Each row: its enum name, the name users, the tool and the
 * snapshots use, and what the tool's description tells a model about it. A new language is a row
 * here, its interpreter in agent/program.c and its packages in images/packages.txt: the agent,
 * the host's tool schema and description, the pool and the snapshots all read this list. */
#define AL_LANGUAGES(X)                                                                            \
	X(PYTHON, "python",                                                                        \
	  "python (Python 3.11 with numpy, pandas, scipy, matplotlib and the standard library; "   \
	  "plt.show() returns each figure as a PNG)")                                              \
	X(JAVASCRIPT, "javascript", "javascript (Node.js 18, no npm packages)")                    \
	X(BASH, "bash", "bash (coreutils, sed, grep, procps)")

enum al_language {
	AL_LANG_NONE = 0, /* no language: never valid on the wire */
#define AL_LANGUAGE_ENUM(id, name, about) AL_LANG_##id,
	AL_LANGUAGES(AL_LANGUAGE_ENUM)
#undef AL_LANGUAGE_ENUM
	AL_LANG_END, /* one past the last: arrays indexed by language have AL_LANG_END entries */
};
#define AL_LANG_FIRST 1

/* A language's row of AL_LANGUAGES, or NULL for a number that is none. */
struct al_language_row {
	const char *name;  /* "python": what users, the tool and the snapshots call it */
	const char *about; /* what the tool's description says of it */
};
static inline const struct al_language_row *al_language(uint32_t language)
{
	static const struct al_language_row rows[AL_LANG_END] = {
#define AL_LANGUAGE_ROW(id, name, about) [AL_LANG_##id] = {name, about},
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
	uint32_t type;
	uint32_t length;
};

struct al_ready {
	uint32_t version; /* AL_PROTO_VERSION */
	uint32_t reserved;
};

struct al_run {
	uint32_t version;       /* AL_PROTO_VERSION */
	uint32_t language;      /* enum al_language */
	uint32_t timeout_ms;    /* wall-clock limit for the program */
	uint32_t reserved;
	uint64_t stdout_cap;    /* bytes of stdout sent back; the rest is drained and dropped */
	uint64_t stderr_cap;    /* likewise for stderr */
	uint64_t out_files_cap; /* bytes of /work/out file content sent back */
	int64_t wall_clock_ns;  /* host CLOCK_REALTIME when the request was made */
	uint8_t entropy[64];    /* fresh host randomness for the guest kernel's CRNG */
	uint32_t code_len;      /* program text */
	uint32_t stdin_len;     /* fed to the program's standard input */
	uint32_t files_len;     /* ustar archive unpacked under /work before the run */
	uint32_t reserved2;
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

_Static_assert(sizeof(struct al_frame_header) == 8, "frame header has no padding");
_Static_assert(sizeof(struct al_ready) == 8, "al_ready has no padding");
_Static_assert(sizeof(struct al_run) == 128, "al_run has no padding");
_Static_assert(sizeof(struct al_exit) == 40, "al_exit has no padding");
_Static_assert(sizeof(struct al_ping) == 72, "al_ping has no padding");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire format is little-endian");

#endif
