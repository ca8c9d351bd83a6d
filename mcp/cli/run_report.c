/* What `airlock run` says on stderr about a run's setup, beside the program's own output: the
 * installer's log when the install failed, the pre-scan's advisories, and the connections the
 * policy refused (all of them with --verbose). --json carries the same in its fields.
 */
#include <stdio.h>

#include "cli.h"
#include "protocol.h"

void run_report_setup(const struct sandbox_result *r, bool verbose)
{
	if (r->installed && (!r->install_ok || verbose)) {
		fprintf(stderr, "airlock: %s (%.0f ms)%s\n",
			r->install_ok ? "packages installed" : "the packages could not be installed",
			r->install_ms, r->install_ok ? "" : "; the program did not run. The installer said:");
		if (!r->install_ok)
			run_write_all(2, r->install_log.data, r->install_log.len);
	}
	if (r->scanned) {
		json_t *advisories = result_advisories(r), *a;
		size_t i;
		if (r->scan_refused)
			fprintf(stderr, "airlock: refused by the pre-scan; the program did not run:\n");
		json_array_foreach(advisories, i, a)
		{
			fprintf(stderr, "airlock: advisory: line %lld: %s (%s)\n",
				(long long)json_integer_value(json_object_get(a, "line")),
				json_string_value(json_object_get(a, "message")),
				json_string_value(json_object_get(a, "rule")));
		}
		json_decref(advisories);
	}
	for (size_t i = 0; i < r->network_len; i++) {
		const struct egress_attempt *a = &r->network[i];
		if (a->allowed && !a->reason[0] && !verbose)
			continue;
		fprintf(stderr, "airlock: network: %s %s port %u%s%s (%llu bytes sent, %llu received)\n",
			a->allowed ? (a->reason[0] ? "failed" : "reached") : "refused", a->host, a->port,
			a->reason[0] ? ": " : "", a->reason, (unsigned long long)a->bytes_sent,
			(unsigned long long)a->bytes_received);
	}
	if (r->network_unlisted)
		fprintf(stderr, "airlock: network: %zu more connections not listed\n",
			r->network_unlisted);
}
