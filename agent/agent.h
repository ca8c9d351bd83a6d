/* airlock-agent: the guest's PID 1. One header for the agent's parts: the channel to the host,
 * the program runner and the tar reader/writer. Depends on libc and proto.h only.
 */
#ifndef AIRLOCK_AGENT_H
#define AIRLOCK_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

#define AGENT_USER_UID 1000
#define AGENT_USER_GID 1000
#define AGENT_WORK_DIR "/work"
#define AGENT_OUT_DIR "/work/out"
#define AGENT_RUN_DIR "/run/airlock" /* the program text and its stdin, root-owned */

/* ---- channel.c: frames over the host channel ---- */

/* Opens the host channel (/dev/hvc0) in raw mode. Returns the fd or -errno. */
int channel_open(const char *path);
/* Writes one frame (header + payload). Returns 0 or -errno. */
int channel_send(int fd, uint32_t type, const void *payload, size_t len);
/* Sends an ERROR frame with printf-style text (truncated to AL_FRAME_MAX_ERROR_TEXT). */
void channel_send_error(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads one frame: *type, and a malloc'd payload (*payload, *len) the caller frees.
 * Returns 0, -EPROTO for a frame over AL_FRAME_MAX_PAYLOAD, or -errno. */
int channel_recv(int fd, uint32_t *type, uint8_t **payload, size_t *len);

/* ---- exec.c: one program run ---- */

struct run_request {
	struct al_run header;
	const uint8_t *code;
	const uint8_t *stdin_data;
	const uint8_t *files;
};

/* Parses a RUN payload; the pointers in *req point into payload. Returns 0 or -EPROTO. */
int run_request_parse(const uint8_t *payload, size_t len, struct run_request *req);
/* Runs the program as the sandbox user, streams its output to the channel and sends the EXIT
 * frame. Returns 0 when EXIT was sent, -errno otherwise (the caller reports an ERROR). */
int run_program(int channel_fd, const struct run_request *req);

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
/* Appends the two zero blocks that end an archive. */
int tar_finish(struct tar_writer *w);
void tar_writer_free(struct tar_writer *w);

#endif
