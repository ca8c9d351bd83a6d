/* Kept states from the command line: the flags `airlock mcp` and `airlock run` share, and
 * `airlock state list` / `airlock state rm ID` (the user's states, those `airlock run
 * --keep-state` and `airlock mcp --state-persist` made).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cli.h"

int state_option(int opt, const char *arg, struct state_options *o)
{
	char *end;
	unsigned long long v;
	switch (opt) {
	case STATE_OPT_DIR:
		o->dir = arg;
		return 0;
	case STATE_OPT_TTL:
		v = strtoull(arg, &end, 10);
		if (*end || *arg == '\0' || v < 1 || v > 30ull * 86400) {
			fprintf(stderr, "airlock: --state-ttl wants seconds, 1..2592000, got '%s'\n",
				arg);
			return -EINVAL;
		}
		o->ttl_s = (uint32_t)v;
		return 0;
	case STATE_OPT_MAX_MB:
		v = strtoull(arg, &end, 10);
		if (*end || *arg == '\0' || v < 1 || v > (1ull << 24)) {
			fprintf(stderr, "airlock: --state-max-mb wants 1..16777216, got '%s'\n", arg);
			return -EINVAL;
		}
		o->max_mb = v;
		return 0;
	}
	return -EINVAL;
}

int state_options_open(const struct state_options *o, const struct images *im, bool per_process,
		       struct state_store *st, char *err, size_t err_len)
{
	char dir[PATH_MAX], owner[STATE_OWNER_MAX];
	if (o->dir ? path_printf(dir, sizeof dir, "%s", o->dir)
		   : path_printf(dir, sizeof dir, "%s/states", im->dir)) {
		snprintf(err, err_len, "the kept states' directory: path too long");
		return -ENAMETOOLONG;
	}
	state_owner(per_process, owner);
	int rc = state_store_open(st, dir, o->max_mb, o->ttl_s, owner, err, err_len);
	if (rc == 0)
		state_sweep(st);
	return rc;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: airlock state list [--images DIR] " STATE_USAGE
		     "       airlock state rm ID [--images DIR] [--state-dir DIR]\n"
		     "The states `airlock run --keep-state` (and `airlock mcp --state-persist`) kept\n"
		     "for this user: their ids, languages, sizes, last use and expiry.\n");
}

int cli_state(int argc, char **argv)
{
	static const struct option options[] = {
		{"images", required_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		STATE_LONG_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	struct state_options so = STATE_OPTIONS_DEFAULT;
	const char *images_dir = NULL;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[1];
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c >= STATE_OPT_DIR && c <= STATE_OPT_MAX_MB) {
			if (state_option(c, optarg, &so) != 0)
				return 2;
			continue;
		}
		if (c == 'i') {
			images_dir = optarg;
			continue;
		}
		usage(c == 'h' ? stdout : stderr);
		return c == 'h' ? 0 : 2;
	}
	bool list = !strcmp(verb, "list"), rm = !strcmp(verb, "rm");
	if ((!list && !rm) || (list && optind != argc) || (rm && optind != argc - 1)) {
		usage(stderr);
		return 2;
	}
	char err[1024];
	struct images im;
	struct state_store st;
	if (images_init(&im, images_dir, err, sizeof err) != 0 ||
	    state_options_open(&so, &im, false, &st, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		return 1;
	}
	if (list)
		return state_list(&st, stdout) == 0 ? 0 : 1;
	if (state_remove(&st, argv[optind]) != 0) {
		fprintf(stderr, "airlock: no state %s of yours to remove\n", argv[optind]);
		return 1;
	}
	return 0;
}
