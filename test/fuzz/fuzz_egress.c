/* libFuzzer target: the host's end of egress streams (mcp/egress/egress.c) under whatever frames
 * a hostile guest sends: OPEN, DATA, CREDIT and CLOSE in any order, on any stream, with any
 * payload, the proxy request in DATA included (http-parser, the policy). The policy allows one
 * name and one IP literal whose port nothing listens on, so requests are refused, fail to
 * connect or fail to resolve; no byte leaves the machine. Besides the sanitizers, it checks what
 * the guest relies on: the host never sends an egress stream more DATA than the credit the guest
 * granted, never sends on a stream the guest did not open, and frees everything when the VM ends.
 *
 * Input: records of [type: 1 byte][stream: 1 byte, added to 15][length: 2 bytes LE][payload]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"
#include "proto.h"

#define MAX_STREAM 272

static uint64_t granted[MAX_STREAM]; /* credit the guest gave each stream, less what came */
static bool opened[MAX_STREAM];

static int on_send(void *ctx, uint32_t type, uint32_t stream, const void *payload, size_t len)
{
	(void)ctx;
	(void)payload;
	if (stream >= MAX_STREAM || !opened[stream])
		abort(); /* a stream the guest never opened */
	if (type == AL_FRAME_DATA) {
		if (len > granted[stream])
			abort(); /* past the guest's credit */
		granted[stream] -= len;
	}
	return 0;
}

static void on_closed(void *ctx)
{
	*(int *)ctx = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t types[] = {AL_FRAME_OPEN, AL_FRAME_DATA, AL_FRAME_CREDIT,
					 AL_FRAME_CLOSE, AL_FRAME_DATA, AL_FRAME_DATA};
	struct egress_policy policy = {0};
	char err[256];
	egress_policy_add(&policy.allow, &policy.n_allow, "127.0.0.1:9", err, sizeof err);
	egress_policy_add(&policy.allow, &policy.n_allow, "no-such-host.invalid", err, sizeof err);
	egress_policy_add(&policy.install, &policy.n_install, "*.invalid", err, sizeof err);
	memset(granted, 0, sizeof granted);
	memset(opened, 0, sizeof opened);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct egress *e;
	if (egress_new(&loop, &policy, true, on_send, NULL, &e) != 0)
		abort();
	size_t at = 0;
	while (at + 4 <= size) {
		uint32_t type = types[data[at] % (sizeof types / sizeof *types)];
		uint32_t stream = AL_STREAM_FIRST_OPENED - 1 + data[at + 1];
		size_t len = (size_t)data[at + 2] | (size_t)data[at + 3] << 8;
		at += 4;
		if (len > size - at)
			len = size - at;
		if (data[at - 4] == 0xff) { /* the install step ends */
			egress_install_done(e);
			continue;
		}
		const char *why;
		bool was_open = opened[stream];
		if (type == AL_FRAME_OPEN && !was_open) {
			opened[stream] = true; /* before the call: the host may answer at once */
			granted[stream] = AL_EGRESS_WINDOW;
		}
		int rc = egress_guest_frame(e, type, stream, data + at, len, &why);
		if (type == AL_FRAME_OPEN && !was_open && rc != 0)
			opened[stream] = false;
		if (type == AL_FRAME_CREDIT && rc == 0 && len == 4) {
			uint32_t bytes;
			memcpy(&bytes, data + at, 4);
			granted[stream] += bytes;
		}
		at += len;
		if (rc != 0)
			break; /* the sandbox ends the VM on the first protocol error */
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	size_t n, unlisted;
	(void)egress_attempts(e, &n, &unlisted);
	int closed = 0;
	egress_close(e, on_closed, &closed);
	while (!closed)
		uv_run(&loop, UV_RUN_ONCE);
	uv_run(&loop, UV_RUN_NOWAIT);
	if (uv_loop_close(&loop) != 0)
		abort(); /* a handle left open */
	egress_policy_free(&policy);
	return 0;
}
