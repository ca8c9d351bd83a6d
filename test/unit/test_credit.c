/* The agent's rules for sending output within the host's credit (agent/credit.c): what it reads
 * from a program's pipe, and which CREDIT it refuses. */
#include <errno.h>

#include "agent.h"
#include "check.h"

#define CHUNK AL_FRAME_MAX_OUTPUT_CHUNK
#define CAP (1u << 20)

static void reads_no_more_than_the_credit_below_the_cap(void)
{
	CHECK(output_read_size(1u << 20, 0, CAP, CHUNK) == CHUNK);
	CHECK(output_read_size(100, 0, CAP, CHUNK) == 100);
	CHECK(output_read_size(100, CAP - 1, CAP, CHUNK) == 100); /* straddling the cap */
}

static void spent_credit_stops_reading_the_pipe(void)
{
	CHECK(output_read_size(0, 0, CAP, CHUNK) == 0);
	CHECK(output_read_size(0, CAP - 1, CAP, CHUNK) == 0);
}

static void output_past_the_cap_needs_no_credit(void)
{
	/* dropped by the agent: read on, so that the program never waits for it */
	CHECK(output_read_size(0, CAP, CAP, CHUNK) == CHUNK);
	CHECK(output_read_size(0, 5 * (uint64_t)CAP, CAP, CHUNK) == CHUNK);
	CHECK(output_read_size(0, 0, 0, CHUNK) == CHUNK); /* a cap of 0 */
}

static void credit_adds_up_to_the_largest_window(void)
{
	uint64_t credit = 0;
	CHECK(credit_grant(&credit, 1000) == 0 && credit == 1000);
	CHECK(credit_grant(&credit, AL_STREAM_MAX_WINDOW - 1000) == 0);
	CHECK(credit == AL_STREAM_MAX_WINDOW);
}

static void credit_past_the_largest_window_is_refused(void)
{
	uint64_t credit = AL_STREAM_MAX_WINDOW - 10;
	CHECK(credit_grant(&credit, 11) == -EPROTO);
	CHECK(credit_grant(&credit, 0xFFFFFFFFu) == -EPROTO);
	CHECK(credit == AL_STREAM_MAX_WINDOW - 10); /* left as it was */
	CHECK(credit_grant(&credit, 0) == -EPROTO); /* a grant of nothing is no grant */
}

int main(void)
{
	TEST(reads_no_more_than_the_credit_below_the_cap);
	TEST(spent_credit_stops_reading_the_pipe);
	TEST(output_past_the_cap_needs_no_credit);
	TEST(credit_adds_up_to_the_largest_window);
	TEST(credit_past_the_largest_window_is_refused);
	return TEST_EXIT_STATUS();
}
