/* The audit log (--audit-log FILE): one JSON line per tools/call with SPEC.md's fields: who
 * called, what ran (the code's digest, never the code), under which limits, how it ended, how
 * much it wrote, what it reached, which state it came from and kept. Never the code, stdin,
 * files or output. Each line goes out in one write(2) to a file opened O_APPEND, so lines from
 * several servers sharing a file do not interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "protocol.h"

struct audit {
	int fd;
	bool failed_said; /* a failed write is said once on stderr, not per call */
};

int audit_open(const char *path, struct audit **out)
{
	struct audit *a = calloc(1, sizeof *a);
	if (!a)
		return -ENOMEM;
	a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (a->fd < 0) {
		int rc = -errno;
		free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	close(a->fd);
	free(a);
}

static void rfc3339_now(char out[40])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 40 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* What the result says of the run, from its structuredContent (absent: a call refused or
 * failed before a run). */
static void add_outcome(json_t *line, json_t *result)
{
	json_t *sc = json_object_get(result, "structuredContent");
	json_t *exit_code = json_object_get(sc, "exit_code");
	json_t *signal = json_object_get(sc, "signal");
	json_t *network = json_object_get(sc, "network");
	json_object_set(line, "exit_code", exit_code ? exit_code : json_null());
	json_object_set(line, "signal", signal ? signal : json_null());
	json_object_set_new(line, "timed_out",
			    json_boolean(json_is_true(json_object_get(sc, "timed_out"))));
	/* the hosts reached, without the rest of each attempt's detail */
	json_t *hosts = json_array();
	size_t i;
	json_t *attempt;
	json_array_foreach(network, i, attempt)
	{
		json_array_append_new(hosts,
				      json_pack("{s:O?, s:O?, s:O?}", "host",
						json_object_get(attempt, "host"), "port",
						json_object_get(attempt, "port"), "allowed",
						json_object_get(attempt, "allowed")));
	}
	json_object_set_new(line, "network", hosts);
	json_t *kept = json_object_get(sc, "state_id");
	json_object_set(line, "state_kept", json_is_string(kept) ? kept : json_null());
}

void audit_call(struct audit *a, const struct call *call, const char *backend, bool cancelled,
		json_t *result)
{
	char now[40];
	rfc3339_now(now);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	(void)cancelled; /* its exit_code and signal stay null */
	json_t *line = json_pack("{s:s, s:s, s:s, s:n, s:n, s:n, s:I, s:n, s:n, s:b, s:i, s:n, "
				 "s:n, s:n, s:s}",
				 "time", now, "client", call->client->label, "tool", "", "language",
				 "code_sha256", "limits", "duration_ms",
				 (json_int_t)(now_ms - call->started_ms), "exit_code", "signal",
				 "timed_out", 0, "bytes_out", 0, "network", "state_from",
				 "state_kept", "backend", backend);
	if (!line)
		return;
	json_object_update_existing(line, call->audit); /* what the tool knew */
	if (result)
		add_outcome(line, result);
	char *text = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(12));
	json_decref(line);
	if (!text)
		return;
	size_t len = strlen(text);
	text[len] = '\n'; /* the NUL's place: one write, one line */
	ssize_t n = write(a->fd, text, len + 1);
	if (n != (ssize_t)(len + 1) && !a->failed_said) {
		a->failed_said = true;
		fprintf(stderr, "airlock: warning: cannot write the audit log: %s\n",
			n < 0 ? strerror(errno) : "short write");
	}
	free(text);
}
