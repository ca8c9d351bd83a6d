/* A hostile or broken guest init for the host's failure tests. It stands in for the agent as
 * /sbin/init of a tiny root file system and misbehaves as its name (argv[0]) or the first word
 * of /misbehave says:
 *   hang         never answers
 *   exit-ready   says READY, then exits (the kernel panics: PID 1 died)
 *   garbage      says READY, then sends a frame of an unknown type
 *   oversize     says READY, then announces a STDOUT frame far over the limit
 *   silent-run   says READY (again for each PING), reads the RUN frame whole, then never sends
 *                another byte: only the host's own deadline can end the call
 */
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

/* Answers PINGs as the agent does until the RUN comes, takes all of it, and falls silent. The
 * console line lets a test see that the RUN arrived (`airlock run --verbose` prints the log). */
static void silent_run(int fd)
{
	uint32_t type;
	uint8_t *payload;
	size_t len;
	struct al_ready ready = {.version = AL_PROTO_VERSION};
	while (channel_recv(fd, &type, &payload, &len) == 0) {
		free(payload);
		if (type == AL_FRAME_RUN) {
			fprintf(stderr, "misbehave: silent-run took RUN (%zu bytes)\n", len);
			return;
		}
		if (type == AL_FRAME_PING && channel_send(fd, AL_FRAME_READY, &ready, sizeof ready))
			return;
	}
}

int main(void)
{
	char mode[32];
	mode_of(mode, sizeof mode);
	if (strcmp(mode, "hang") != 0) {
		int fd = -1;
		for (int i = 0; i < 5000 && fd < 0; i++) {
			fd = channel_find();
			if (fd < 0)
				usleep(2000);
		}
		struct al_ready ready = {.version = AL_PROTO_VERSION};
		if (fd >= 0 && channel_send(fd, AL_FRAME_READY, &ready, sizeof ready) == 0) {
			if (strcmp(mode, "exit-ready") == 0)
				return 1;
			if (strcmp(mode, "garbage") == 0)
				channel_send(fd, 0x99, "junk", 4);
			if (strcmp(mode, "oversize") == 0) {
				struct al_frame_header h = {AL_FRAME_STDOUT, 0x7FFFFFFF};
				(void)!write(fd, &h, sizeof h);
			}
			if (strcmp(mode, "silent-run") == 0)
				silent_run(fd);
		}
	}
	for (;;)
		pause();
}
