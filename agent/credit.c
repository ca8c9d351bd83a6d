/* What the host lets the agent send on an output stream (agent/proto.h: credit), as pure
 * functions of the counts, so that the rules are tested apart from pipes and the channel.
 */
#include <errno.h>

#include "agent.h"

int credit_grant(uint64_t *credit, uint32_t bytes)
{
	if (bytes == 0 || *credit + bytes > AL_STREAM_MAX_WINDOW)
		return -EPROTO;
	*credit += bytes;
	return 0;
}

size_t output_read_size(uint64_t credit, uint64_t total, uint64_t cap, size_t buf_size)
{
	if (total >= cap)
		return buf_size; /* dropped: what is past the cap needs no credit */
	return credit < buf_size ? (size_t)credit : buf_size;
}
