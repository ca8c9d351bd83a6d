/* The pending-output buffer (images/pending-output.h): made and mapped once at boot, before any
 * snapshot, so that reading it after a run costs no system call. The Python starter buffers
 * stdout and stderr in it; whatever a kill, a crash or os._exit left there is the program's
 * output all the same, and run_program sends it after the pipes' contents. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent.h"

static struct al_pending_output *pending; /* NULL: none (the starter then writes unbuffered) */

int pending_output_create(void)
{
	int fd = open(AGENT_PENDING_OUTPUT, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (ftruncate(fd, sizeof *pending) != 0 ||
	    fchown(fd, AGENT_USER_UID, AGENT_USER_GID) != 0)
		rc = -errno;
	void *map = rc ? MAP_FAILED
		       : mmap(NULL, sizeof *pending, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (rc == 0 && map == MAP_FAILED)
		rc = -errno;
	close(fd);
	if (rc) {
		unlink(AGENT_PENDING_OUTPUT);
		return rc;
	}
	pending = map;
	return 0;
}

size_t pending_output_take(uint32_t *stream, uint8_t *buf)
{
	if (!pending)
		return 0;
	/* the user's processes are stopped, but the bytes are theirs: read each field once */
	uint32_t len = atomic_load_explicit((_Atomic uint32_t *)&pending->len, memory_order_acquire);
	if (len == 0)
		return 0;
	uint32_t which = *(volatile uint32_t *)&pending->stream;
	atomic_store_explicit((_Atomic uint32_t *)&pending->len, 0, memory_order_relaxed);
	if (len > AL_PENDING_OUTPUT_SIZE || (which != AL_STREAM_STDOUT && which != AL_STREAM_STDERR))
		return 0;
	memcpy(buf, pending->data, len);
	*stream = which;
	return len;
}

int pending_output_empty(void)
{
	return !pending ||
	       atomic_load_explicit((_Atomic uint32_t *)&pending->len, memory_order_relaxed) == 0;
}
