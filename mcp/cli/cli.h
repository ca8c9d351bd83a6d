/* The `airlock` command: main.c picks the subcommand; each returns the process exit status. */
#ifndef AIRLOCK_CLI_H
#define AIRLOCK_CLI_H

#include <jansson.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "kept_state.h"
#include "sandbox.h"

int cli_mcp(int argc, char **argv);    /* airlock mcp    (mcp.c) */
int cli_run(int argc, char **argv);    /* airlock run    (run.c) */
int cli_image(int argc, char **argv);  /* airlock image  (image.c) */
int cli_doctor(int argc, char **argv); /* airlock doctor (doctor.c) */
int cli_bench(int argc, char **argv);  /* airlock bench  (bench.c) */

/* airlock run --out DIR (run_out_dir.c): writes the returned files under dir; skipped, when not
 * NULL, gets a {path, reason} for each file not written. */
void run_save_output_files(const char *dir, const struct file_list *files, json_t *skipped);
/* write(2) until all of data is written. Returns 0 or -errno. */
int run_write_all(int fd, const void *data, size_t len);

/* The operator's policy flags of `airlock mcp` and `airlock run` (policy_options.c): put
 * POLICY_LONG_OPTIONS in getopt_long's table and hand each such option to policy_option(). */
enum {
	POLICY_OPT_ALLOW_HOST = 0x100,
	POLICY_OPT_INSTALL_HOST,
	POLICY_OPT_PIP_INDEX,
	POLICY_OPT_NPM_REGISTRY,
	POLICY_OPT_CA_FILE,
	POLICY_OPT_SCAN,
	POLICY_OPT_DENY_IMPORTS,
};
#define POLICY_LONG_OPTIONS                                                                        \
	{"allow-host", required_argument, NULL, POLICY_OPT_ALLOW_HOST},                              \
	    {"install-host", required_argument, NULL, POLICY_OPT_INSTALL_HOST},                      \
	    {"pip-index", required_argument, NULL, POLICY_OPT_PIP_INDEX},                            \
	    {"npm-registry", required_argument, NULL, POLICY_OPT_NPM_REGISTRY},                      \
	    {"ca-file", required_argument, NULL, POLICY_OPT_CA_FILE},                                \
	    {"scan", required_argument, NULL, POLICY_OPT_SCAN},                                      \
	    {"deny-imports", required_argument, NULL, POLICY_OPT_DENY_IMPORTS}
#define POLICY_USAGE                                                                               \
	"  [--allow-host PATTERN]... [--pip-index URL] [--npm-registry URL]\n"                      \
	"  [--install-host PATTERN]... [--ca-file FILE] [--scan off|warn|deny]\n"                   \
	"  [--deny-imports MOD,...]\n"                                                              \
	"--allow-host PATTERN lets the program reach HOST, HOST:PORT, *.DOMAIN or an IP address\n"   \
	"(ports 443 and 80 unless one is given) through a proxy on the guest's loopback; with\n"    \
	"none there is no route out. --pip-index/--npm-registry let `packages` install from\n"      \
	"that index (its host, and --install-host ones, reachable only while they install).\n"

/* The kept states' flags of `airlock mcp`, `airlock run` and `airlock state` (state.c): where
 * they live, how long, how much in all. */
enum {
	STATE_OPT_DIR = 0x200,
	STATE_OPT_TTL,
	STATE_OPT_MAX_MB,
};
#define STATE_LONG_OPTIONS                                                                         \
	{"state-dir", required_argument, NULL, STATE_OPT_DIR},                                       \
	    {"state-ttl", required_argument, NULL, STATE_OPT_TTL},                                   \
	    {"state-max-mb", required_argument, NULL, STATE_OPT_MAX_MB}
#define STATE_USAGE                                                                                \
	"  [--state-dir DIR] [--state-ttl S] [--state-max-mb N]\n"
struct state_options {
	const char *dir; /* NULL: <image directory>/states */
	uint32_t ttl_s;
	uint64_t max_mb;
	bool persist; /* airlock mcp --state-persist */
};
#define STATE_OPTIONS_DEFAULT {NULL, STATE_DEFAULT_TTL_S, STATE_DEFAULT_MAX_MB, false}
/* Takes one STATE_OPT_* option. Returns 0, or -EINVAL with the reason on stderr. */
int state_option(int opt, const char *arg, struct state_options *o);
/* Opens the store the options name for images (per_process: this process's states only, as
 * `airlock mcp` without --state-persist), and sweeps out what expired. Returns 0 or -errno
 * with err set. */
int state_options_open(const struct state_options *o, const struct images *im, bool per_process,
		       struct state_store *st, char *err, size_t err_len);
int cli_state(int argc, char **argv); /* airlock state (state.c) */

/* Takes one policy option (opt is a POLICY_OPT_*). Returns 0, or -EINVAL with the reason on
 * stderr. */
int policy_option(int opt, const char *arg, struct sandbox_policy *p);
/* After the last option: the defaults that depend on several. Returns 0 or -EINVAL. */
int policy_finish(struct sandbox_policy *p);
void policy_free(struct sandbox_policy *p);
/* airlock run --dir PATH (run_dir.c): packs the tree under path, then the --put files put (which
 * win over a file of the same name), into a ustar archive for /work (malloc'd *tar, *tar_len).
 * Symbolic links are never followed out of path; what is left out is said on warn, a line each.
 * Returns 0, or -errno with err naming path: -EFBIG when the archive would pass max_bytes,
 * -E2BIG past max_entries files, directories and links, before anything past them is read. */
int run_dir_pack(const char *path, const struct file_list *put, size_t max_bytes,
		 size_t max_entries, FILE *warn, uint8_t **tar, size_t *tar_len, char *err,
		 size_t err_len);
/* airlock run --repo URL --command CMD (run_dir.c): bash code (malloc'd *code) that clones url
 * into /work/repo and runs cmd there as `bash -c` would, both quoted. Returns 0, or -EINVAL with
 * err set when url is not an http:// or https:// URL without spaces or control characters. */
int run_repo_code(const char *url, const char *cmd, char **code, char *err, size_t err_len);

/* airlock run's report on stderr of what the setup did: the install's log when it failed, the
 * pre-scan's advisories, refused connections (every connection with verbose). */
void run_report_setup(const struct sandbox_result *r, bool verbose);
/* Exit status when a setup step (the install, the pre-scan) kept the program from running, as a
 * shell says of a command it cannot execute. */
#define EXIT_NOT_RUN 126

/* Exit status for a failure of airlock itself (as timeout(1) uses 125). */
#define EXIT_SANDBOX_FAILURE 125

#endif
