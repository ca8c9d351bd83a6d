/* Counters for GET /metrics, written in Prometheus' text exposition format (version 0.0.4):
 * calls by client and outcome, call durations as a histogram, refusals by reason, and the
 * gauges the server and the transport read at the time of the scrape.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* clients beyond this many are counted together as "other": a label set must stay bounded */
#define METRICS_CLIENTS_MAX 64
#define OUTCOMES 4
#define REASONS_MAX 16

static const char *const outcomes[OUTCOMES] = {"ok", "error", "cancelled", "refused"};
static const double buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define BUCKETS (sizeof buckets / sizeof buckets[0])

struct metrics {
	struct {
		char name[CLIENT_LABEL_MAX];
		uint64_t calls[OUTCOMES];
	} clients[METRICS_CLIENTS_MAX + 1]; /* the last one: "other" */
	unsigned n_clients;
	uint64_t bucket_counts[BUCKETS], count;
	double sum;
	struct {
		char reason[32];
		uint64_t count;
	} refusals[REASONS_MAX];
	unsigned n_reasons;
};

struct metrics *metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof *m);
	if (m)
		snprintf(m->clients[METRICS_CLIENTS_MAX].name, CLIENT_LABEL_MAX, "other");
	return m;
}

void metrics_free(struct metrics *m)
{
	free(m);
}

void metrics_call(struct metrics *m, const char *client, const char *outcome, double seconds)
{
	unsigned c = 0;
	while (c < m->n_clients && strcmp(m->clients[c].name, client) != 0)
		c++;
	if (c == m->n_clients) {
		if (m->n_clients < METRICS_CLIENTS_MAX)
			snprintf(m->clients[m->n_clients++].name, CLIENT_LABEL_MAX, "%s", client);
		else
			c = METRICS_CLIENTS_MAX;
	}
	for (unsigned o = 0; o < OUTCOMES; o++)
		if (strcmp(outcomes[o], outcome) == 0)
			m->clients[c].calls[o]++;
	if (strcmp(outcome, "refused") == 0)
		return; /* no run to time */
	for (size_t b = 0; b < BUCKETS; b++)
		if (seconds <= buckets[b])
			m->bucket_counts[b]++;
	m->count++;
	m->sum += seconds;
}

void metrics_refusal(struct metrics *m, const char *reason)
{
	unsigned r = 0;
	while (r < m->n_reasons && strcmp(m->refusals[r].reason, reason) != 0)
		r++;
	if (r == m->n_reasons) {
		if (m->n_reasons == REASONS_MAX)
			return;
		snprintf(m->refusals[m->n_reasons++].reason, sizeof m->refusals[0].reason, "%s",
			 reason);
	}
	m->refusals[r].count++;
}

/* A label value with \, " and newlines escaped, as the format wants. */
static void escape_label(const char *in, char *out, size_t out_len)
{
	size_t o = 0;
	for (; *in && o + 3 < out_len; in++) {
		if (*in == '\\' || *in == '"') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

char *metrics_render(const struct metrics *m, const struct metrics_gauges *g)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	fprintf(f, "# HELP airlock_calls_total tools/call requests ended, by client and outcome\n"
		   "# TYPE airlock_calls_total counter\n");
	for (unsigned c = 0; c <= METRICS_CLIENTS_MAX; c++) {
		if (c >= m->n_clients && c != METRICS_CLIENTS_MAX)
			continue;
		char label[2 * CLIENT_LABEL_MAX];
		escape_label(m->clients[c].name, label, sizeof label);
		for (unsigned o = 0; o < OUTCOMES; o++)
			if (m->clients[c].calls[o] || c < m->n_clients)
				fprintf(f, "airlock_calls_total{client=\"%s\",outcome=\"%s\"} %llu\n",
					label, outcomes[o],
					(unsigned long long)m->clients[c].calls[o]);
	}
	fprintf(f, "# HELP airlock_call_duration_seconds tools/call from request to answer\n"
		   "# TYPE airlock_call_duration_seconds histogram\n");
	for (size_t b = 0; b < BUCKETS; b++)
		fprintf(f, "airlock_call_duration_seconds_bucket{le=\"%g\"} %llu\n", buckets[b],
			(unsigned long long)m->bucket_counts[b]);
	fprintf(f,
		"airlock_call_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
		"airlock_call_duration_seconds_sum %.6f\n"
		"airlock_call_duration_seconds_count %llu\n",
		(unsigned long long)m->count, m->sum, (unsigned long long)m->count);
	fprintf(f, "# HELP airlock_http_refusals_total HTTP requests refused, by reason\n"
		   "# TYPE airlock_http_refusals_total counter\n");
	for (unsigned r = 0; r < m->n_reasons; r++)
		fprintf(f, "airlock_http_refusals_total{reason=\"%s\"} %llu\n", m->refusals[r].reason,
			(unsigned long long)m->refusals[r].count);
	const struct {
		const char *name, *help;
		unsigned value;
	} gauges[] = {
		{"airlock_calls_running", "calls holding a VM slot", g->running},
		{"airlock_calls_queued", "calls waiting for a VM slot", g->queued},
		{"airlock_vms", "VM processes alive (running, pooled, being killed)", g->vms_live},
		{"airlock_pool_ready", "warm VMs waiting in the pool", g->pool_ready},
		{"airlock_http_connections", "open HTTP connections", g->connections},
		{"airlock_http_sessions", "initialize-era HTTP sessions", g->sessions},
		{"airlock_tasks", "tasks kept (working or ended)", g->tasks},
	};
	for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++)
		fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %u\n", gauges[i].name, gauges[i].help,
			gauges[i].name, gauges[i].name, gauges[i].value);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
