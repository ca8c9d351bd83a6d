/* A hostile or broken guest init for the host's failure tests. It stands in for the agent as
 * /sbin/init of a tiny root file system and misbehaves as its name (argv[0]) or the first word
 * of /misbehave says:
 *   hang         never answers
 *   exit-ready   says READY, then exits (the kernel panics: PID 1 died)
 *   garbage      says READY, then sends a frame of an unknown type
 *   oversize     says READY, then announces a DATA frame on stdout far over the limit
 *   exit-tar     says READY, takes the RUN, then answers EXIT with /exit.tar as the files
 *                archive (a hostile archive the test made)
 *   flood        says READY, takes the RUN, then sends stdout DATA without end, far past
 *                the run's cap (the agent drops what is past it itself), ignoring credit
 *   silent-run   says READY (again for each PING), reads the RUN frame whole, then never sends
 *                another byte: only the host's own deadline can end the call
 *   v1-ready     says READY as an agent of wire protocol 1 did (an 8-byte header, an 8-byte
 *                payload), then waits
 *   v2-ready     says READY as an agent of wire protocol 2 did (this header, version 2), then
 *                waits
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

static void mode_of(char *mode, size_t len)
{
	FILE *f = fopen("/misbehave", "r");
	if (!f || !fgets(mode, (int)len, f))
		snprintf(mode, len, "hang");
	mode[strcspn(mode, "\n ")] = '\0';
	if (f)
		fclose(f);
}

/* Answers PINGs as the agent does until the RUN comes, and takes all of it. The console line
 * lets a test see that the RUN arrived (`airlock run --verbose` prints the log). Returns 0, or
 * -1 when the channel ended first. */
static int take_run(int fd)
{
	uint32_t type, stream;
	uint8_t *payload;
	size_t len;
	struct al_ready ready = {.version = AL_PROTO_VERSION};
	while (channel_recv(fd, &type, &stream, &payload, &len) == 0) {
		free(payload);
		if (type == AL_FRAME_RUN) {
			fprintf(stderr, "misbehave: took RUN (%zu bytes)\n", len);
			return 0;
		}
		if (type == AL_FRAME_PING && channel_send(fd, AL_FRAME_READY, &ready, sizeof ready))
			return -1;
	}
	return -1;
}

static void flood(int fd)
{
	static uint8_t chunk[AL_FRAME_MAX_OUTPUT_CHUNK];
	memset(chunk, 'x', sizeof chunk);
	if (take_run(fd) != 0)
		return;
	while (channel_send_on(fd, AL_FRAME_DATA, AL_STREAM_STDOUT, chunk, sizeof chunk) == 0)
		;
}

/* Takes one RUN frame, whatever it holds, then sends EXIT with /exit.tar as its files. */
static void exit_with_tar(int fd)
{
	if (take_run(fd) != 0)
		return;
	FILE *f = fopen("/exit.tar", "r");
	if (!f)
		return;
	struct al_exit e = {0};
	uint8_t *payload = malloc(sizeof e + AL_FRAME_MAX_PAYLOAD);
	size_t len = payload ? fread(payload + sizeof e, 1, AL_FRAME_MAX_PAYLOAD - sizeof e, f) : 0;
	fclose(f);
	if (!payload)
		return;
	e.files_len = (uint32_t)len;
	memcpy(payload, &e, sizeof e);
	channel_send(fd, AL_FRAME_EXIT, payload, sizeof e + len);
	free(payload);
}

/* The channel, once its driver registered it (up to 10 s). Returns the fd or -errno. */
static int wait_for_channel(void)
{
	int fd = -ENOENT;
	for (int i = 0; i < 5000 && fd < 0; i++) {
		fd = channel_find();
		if (fd < 0)
			usleep(2000);
	}
	return fd;
}

int main(void)
{
	char mode[32];
	mode_of(mode, sizeof mode);
	if (strcmp(mode, "v1-ready") == 0) {
		int fd = wait_for_channel();
		/* the header (type, length), then the payload (version, reserved) */
		const uint32_t v1_ready[4] = {AL_FRAME_READY, 8, 1, 0};
		if (fd >= 0)
			(void)!write(fd, v1_ready, sizeof v1_ready);
	} else if (strcmp(mode, "v2-ready") == 0) {
		int fd = wait_for_channel();
		struct al_ready ready = {.version = 2};
		if (fd >= 0)
			(void)channel_send(fd, AL_FRAME_READY, &ready, sizeof ready);
	} else if (strcmp(mode, "hang") != 0) {
		int fd = wait_for_channel();
		struct al_ready ready = {.version = AL_PROTO_VERSION};
		if (fd >= 0 && channel_send(fd, AL_FRAME_READY, &ready, sizeof ready) == 0) {
			if (strcmp(mode, "exit-ready") == 0)
				return 1;
			if (strcmp(mode, "garbage") == 0)
				channel_send(fd, 0x99, "junk", 4);
			if (strcmp(mode, "exit-tar") == 0)
				exit_with_tar(fd);
			if (strcmp(mode, "flood") == 0)
				flood(fd);
			if (strcmp(mode, "oversize") == 0) {
				struct al_frame_header h = {AL_FRAME_DATA, 0x7FFFFFFF,
							    AL_STREAM_STDOUT, 0};
				(void)!write(fd, &h, sizeof h);
			}
			if (strcmp(mode, "silent-run") == 0)
				take_run(fd); /* and falls silent */
		}
	}
	for (;;)
		pause();
}
