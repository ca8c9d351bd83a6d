/* The pending-output buffer the guest's Python starter shares with the agent: one file,
 * AGENT_PENDING_OUTPUT (agent/agent.h), that the agent creates and maps at boot and the
 * starter's _airlock_output module (images/python-output.c) maps to buffer stdout and stderr.
 * What a kill, a crash or os._exit leaves pending, the agent sends after the program's end.
 * The agent trusts none of it: stream and len are checked before use. */
#ifndef AIRLOCK_PENDING_OUTPUT_H
#define AIRLOCK_PENDING_OUTPUT_H

#include <stdint.h>

#define AL_PENDING_OUTPUT_SIZE (64u << 10)

struct al_pending_output {
	uint32_t stream; /* whose bytes are pending: 1 stdout, 2 stderr (AL_STREAM_*) */
	uint32_t len;    /* how many, at the start of data */
	uint8_t data[AL_PENDING_OUTPUT_SIZE];
};

#endif
