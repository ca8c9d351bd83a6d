/* airlock mcp: the MCP server on stdin/stdout, or with --http on Streamable HTTP. Arguments,
 * the loop, signals. Logs go to stderr only. Exits 0 on stdin EOF (stdio) or SIGTERM/SIGINT,
 * after killing every VM it started.
 */
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "confine.h"
#include "cli.h"
#include "sandbox.h"
#include "protocol.h"

/* One warm VM per language: a call finds one waiting; the next is restored behind it. */
#define DEFAULT_POOL_SIZE 1u
/* Calls waiting for a VM slot (docs/interface.md). Each holds its request, at most ~17 MiB
 * (protocol.h): 256 bound the queue at ~4.3 GiB in the worst case, ~256 small requests in the usual
 * one. */
#define DEFAULT_MAX_QUEUED 256u
#define MAX_MAX_QUEUED 65536u

#define MAX_ORIGINS 32

/* What --http, --token-file, --allow-origin and --audit-log ask. */
struct transport_options {
	const char *http; /* ADDR:PORT, or NULL for stdio */
	const char *token_file, *audit_log;
	const char *origins[MAX_ORIGINS];
	size_t n_origins;
};

struct mcp_state {
	uv_loop_t *loop;
	uv_signal_t sigterm, sigint;
	struct server *server;
	bool stopped;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: airlock mcp [--backend auto|kvm|tcg] [--pool N] [--vcpus N] "
		     "[--memory-mb N]\n"
		     "                   [--max-concurrent N] [--max-queued N] [--max-timeout S]\n"
		     "                   [--images DIR] [--image NAME] [--verbose]\n"
		     STATE_USAGE
		     "                   [--state-persist]\n"
		     "                   [--http ADDR:PORT [--token-file F] [--allow-origin O]...]\n"
		     "                   [--audit-log FILE]\n"
		     POLICY_USAGE
		     "MCP server on stdin/stdout (one JSON-RPC message per line), or with --http on\n"
		     "Streamable HTTP at http://ADDR:PORT/mcp (a bearer token of --token-file on\n"
		     "every request; without one, loopback only). --audit-log appends one JSON line\n"
		     "per tool call (never the code or its output).\n"
		     "--pool N keeps N VMs per language restored and waiting (default %u, 0: none).\n"
		     "--image NAME serves an image of one's own (`airlock image build --recipe`).\n"
		     "--max-queued N: calls beyond --max-concurrent wait, up to N of them (default "
		     "%u);\nfurther calls are refused at once with \"airlock is busy\".\n"
		     "Kept states (keep_state) belong to this process and are removed when it exits;\n"
		     "--state-persist keeps them for the same user's later servers and `airlock run`.\n",
		DEFAULT_POOL_SIZE, DEFAULT_MAX_QUEUED);
}

static int parse_unsigned(const char *name, const char *text, unsigned lo, unsigned hi,
			  unsigned *out)
{
	char *end;
	unsigned long v = strtoul(text, &end, 10);
	if (*end || *text == '\0' || v < lo || v > hi) {
		fprintf(stderr, "airlock: --%s wants %u..%u, got '%s'\n", name, lo, hi, text);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_options(int argc, char **argv, struct server_config *cfg, const char **backend,
			 const char **images_dir, const char **image, struct state_options *states,
			 struct transport_options *tr)
{
	static const struct option options[] = {
		{"backend", required_argument, NULL, 'b'},
		{"vcpus", required_argument, NULL, 'c'},
		{"memory-mb", required_argument, NULL, 'm'},
		{"max-concurrent", required_argument, NULL, 'n'},
		{"max-queued", required_argument, NULL, 'q'},
		{"pool", required_argument, NULL, 'p'},
		{"max-timeout", required_argument, NULL, 't'},
		{"images", required_argument, NULL, 'i'},
		{"image", required_argument, NULL, 'I'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"state-persist", no_argument, NULL, 'K'},
		{"http", required_argument, NULL, 'H'},
		{"token-file", required_argument, NULL, 'T'},
		{"allow-origin", required_argument, NULL, 'O'},
		{"audit-log", required_argument, NULL, 'A'},
		POLICY_LONG_OPTIONS,
		STATE_LONG_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	int c;
	char *end;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c >= POLICY_OPT_ALLOW_HOST && c <= POLICY_OPT_DENY_IMPORTS) {
			if (policy_option(c, optarg, &cfg->policy) != 0)
				return -1;
			continue;
		}
		if (c >= STATE_OPT_DIR && c <= STATE_OPT_MAX_MB) {
			if (state_option(c, optarg, states) != 0)
				return -1;
			continue;
		}
		switch (c) {
		case 'b': *backend = optarg; break;
		case 'i': *images_dir = optarg; break;
		case 'I': *image = optarg; break;
		case 'v': cfg->verbose = true; break;
		case 'K': states->persist = true; break;
		case 'H': tr->http = optarg; break;
		case 'T': tr->token_file = optarg; break;
		case 'A': tr->audit_log = optarg; break;
		case 'O':
			if (tr->n_origins == MAX_ORIGINS) {
				fprintf(stderr, "airlock: at most %d --allow-origin\n", MAX_ORIGINS);
				return -1;
			}
			tr->origins[tr->n_origins++] = optarg;
			break;
		case 'c':
			if (parse_unsigned("vcpus", optarg, 1, 1, &cfg->vcpus))
				return -1;
			break;
		case 'm':
			if (parse_unsigned("memory-mb", optarg, 128, 16384, &cfg->memory_mb))
				return -1;
			break;
		case 'p':
			if (parse_unsigned("pool", optarg, 0, 64, &cfg->pool_size))
				return -1;
			break;
		case 'n':
			if (parse_unsigned("max-concurrent", optarg, 1, 1024, &cfg->max_concurrent))
				return -1;
			break;
		case 'q':
			if (parse_unsigned("max-queued", optarg, 0, MAX_MAX_QUEUED, &cfg->max_queued))
				return -1;
			break;
		case 't':
			cfg->max_timeout_s = strtod(optarg, &end);
			if (*end || !(cfg->max_timeout_s > 0) || !isfinite(cfg->max_timeout_s) ||
			    cfg->max_timeout_s > 86400) {
				fprintf(stderr, "airlock: --max-timeout wants seconds in (0, 86400]\n");
				return -1;
			}
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "airlock: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!tr->http && (tr->token_file || tr->n_origins)) {
		fprintf(stderr, "airlock: --token-file and --allow-origin go with --http\n");
		return -1;
	}
	return 0;
}

/* ADDR:PORT ([ADDR]:PORT for IPv6) into host (an IP literal) and port. */
static int parse_listen_address(const char *text, char *host, size_t host_len, int *port)
{
	const char *colon = strrchr(text, ':');
	const char *start = text, *end = colon;
	if (text[0] == '[') {
		start = text + 1;
		end = strchr(text, ']');
		if (!end || end + 1 != colon)
			colon = NULL;
	}
	char *tail;
	long p = colon ? strtol(colon + 1, &tail, 10) : -1;
	if (!colon || end <= start || (size_t)(end - start) >= host_len || *tail ||
	    colon[1] == '\0' || p < 0 || p > 65535) {
		fprintf(stderr, "airlock: --http wants ADDR:PORT (an IP address; port 0 picks a "
				"free one), got '%s'\n",
			text);
		return -1;
	}
	snprintf(host, host_len, "%.*s", (int)(end - start), start);
	*port = (int)p;
	return 0;
}

static void on_stopped(void *ctx)
{
	struct mcp_state *st = ctx;
	st->stopped = true;
	st->server = NULL;
	uv_close((uv_handle_t *)&st->sigterm, NULL);
	uv_close((uv_handle_t *)&st->sigint, NULL);
	uv_stop(st->loop); /* a first-use image build may still run in the thread pool */
}

static void on_signal(uv_signal_t *handle, int signum)
{
	struct mcp_state *st = handle->data;
	fprintf(stderr, "airlock: %s: shutting down\n", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	if (st->server)
		server_shutdown(st->server);
}

int cli_mcp(int argc, char **argv)
{
	struct server_config cfg = {
		.memory_mb = VM_DEFAULT_MEMORY_MB,
		.vcpus = VM_DEFAULT_VCPUS,
		.max_concurrent = 8,
		.max_queued = DEFAULT_MAX_QUEUED,
		.pool_size = DEFAULT_POOL_SIZE,
		.max_timeout_s = 300,
		.boot_timeout_ms = sandbox_boot_timeout_ms(),
	};
	const char *backend = "auto", *images_dir = NULL, *image = NULL;
	struct state_options state_opts = STATE_OPTIONS_DEFAULT;
	struct state_store states;
	struct transport_options tr = {0};
	char http_host[64];
	int http_port = 0;
	if (parse_options(argc, argv, &cfg, &backend, &images_dir, &image, &state_opts, &tr) != 0 ||
	    (tr.http &&
	     parse_listen_address(tr.http, http_host, sizeof http_host, &http_port) != 0)) {
		policy_free(&cfg.policy);
		return 2;
	}
	if (tr.audit_log) {
		int arc = audit_open(tr.audit_log, &cfg.audit);
		if (arc) {
			fprintf(stderr, "airlock: --audit-log %s: %s\n", tr.audit_log, strerror(-arc));
			policy_free(&cfg.policy);
			return 1;
		}
	}
	policy_finish(&cfg.policy);
	signal(SIGPIPE, SIG_IGN); /* a host that closes our stdout ends us through EOF instead */

	char why[512];
	if (backend_select(backend, &cfg.backend, why, sizeof why) != 0)
		snprintf(cfg.unavailable, sizeof cfg.unavailable, "%s", why);
	else if (images_init(&cfg.images, images_dir, why, sizeof why) != 0)
		snprintf(cfg.unavailable, sizeof cfg.unavailable, "%s", why);
	/* an image that is not there is the operator's mistake: said at once, not at each call */
	if (!cfg.unavailable[0] && image && images_use(&cfg.images, image, why, sizeof why) != 0) {
		fprintf(stderr, "airlock: %s\n", why);
		policy_free(&cfg.policy);
		return 1;
	}
	/* this process's own states, or with --state-persist the user's (kept_state.h) */
	if (!cfg.unavailable[0] &&
	    state_options_open(&state_opts, &cfg.images, !state_opts.persist, &states, why,
			       sizeof why) != 0)
		snprintf(cfg.unavailable, sizeof cfg.unavailable, "%s", why);
	else if (!cfg.unavailable[0])
		cfg.states = &states;
	if (cfg.unavailable[0])
		fprintf(stderr, "airlock: no sandbox can run: %s (run `airlock doctor`)\n",
			cfg.unavailable);
	else
		fprintf(stderr, "airlock: MCP server on %s, backend %s, image %s, up to %u VMs "
				"at once\n",
			tr.http ? "HTTP" : "stdio", cfg.backend->name, image ? image : "stock",
			cfg.max_concurrent);
	if (!cfg.unavailable[0] && cgroup_init(why, sizeof why) == CGROUP_NONE)
		fprintf(stderr, "airlock: VMs run without cgroup limits: %s\n", why);

	uv_loop_t loop;
	uv_loop_init(&loop);
	struct mcp_state st = {.loop = &loop};
	uv_signal_init(&loop, &st.sigterm);
	uv_signal_init(&loop, &st.sigint);
	st.sigterm.data = st.sigint.data = &st;
	uv_signal_start(&st.sigterm, on_signal, SIGTERM);
	uv_signal_start(&st.sigint, on_signal, SIGINT);

	int rc;
	if (tr.http) {
		struct http_serve_config hc = {
			.host = http_host,
			.port = http_port,
			.token_file = tr.token_file,
			.origins = tr.origins,
			.n_origins = tr.n_origins,
			.state_persist = state_opts.persist,
		};
		char err[512] = "";
		rc = http_serve(&loop, &cfg, &hc, on_stopped, &st, &st.server, err, sizeof err);
		if (rc) {
			fprintf(stderr, "airlock: %s\n", err[0] ? err : strerror(-rc));
			return 1;
		}
	} else if ((rc = server_start(&loop, &cfg, 0, 1, on_stopped, &st, &st.server)) != 0) {
		fprintf(stderr, "airlock: cannot serve on stdin/stdout: %s\n", uv_strerror(rc));
		return 1;
	}
	/* Started: from here on the server, and everything it starts, runs under its filter. */
	rc = host_filter_install();
	if (rc)
		fprintf(stderr, "airlock: warning: running without the seccomp filter: %s\n",
			strerror(-rc));
	else if (getenv("AIRLOCK_SECCOMP_SELFTEST")) /* the test suite's proof that it is on */
		host_filter_selftest();
	while (!st.stopped && uv_run(&loop, UV_RUN_DEFAULT) != 0)
		;
	while (sandbox_live_count() > 0) /* VMs killed at the end: wait until they are reaped */
		uv_run(&loop, UV_RUN_ONCE);
	uv_run(&loop, UV_RUN_NOWAIT); /* let the closes just issued complete */
	if (uv_loop_close(&loop) != 0 && cfg.verbose)
		fprintf(stderr, "airlock: an image build was still running at exit\n");
	if (cfg.states && !state_opts.persist)
		state_remove_owned(cfg.states);
	audit_close(cfg.audit);
	cgroup_cleanup();
	policy_free(&cfg.policy);
	return 0;
}
