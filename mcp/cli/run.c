/* airlock run: one piece of code in a fresh microVM, from the command line. The program's stdout
 * and stderr go to ours, and its exit status becomes ours (124 on timeout, 128+N for a signal,
 * 125 when the sandbox itself failed). --json prints the structured result instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "sandbox.h"
#include "confine.h"
#include "cli.h"
#include "backend.h"
#include "protocol.h"

#define MAX_TIMEOUT_S 300.0
#define MAX_INPUT_BYTES (16u << 20) /* code + stdin + files, as for an MCP request */
#define MAX_DIR_ENTRIES 10000      /* files, directories and links --dir sends */

struct run_options {
	const char *backend, *language, *file, *code_arg, *images_dir, *image, *out_dir;
	const char *dir, *command, *repo;
	double timeout_s;
	unsigned memory_mb, vcpus;
	bool json, verbose, cold, lang_given;
	struct file_list files;
	struct sandbox_policy policy; /* --allow-host and the rest (policy_options.c) */
	const char *packages[SANDBOX_MAX_PACKAGES];
	size_t n_packages;
	bool keep_state;
	const char *state_id;
	struct state_options states;
};

struct run_state {
	const struct run_options *opts;
	struct kept_call *kept;
	struct state_store *store;
	uv_signal_t sigint, sigterm;
	struct sandbox *sandbox;
	bool interrupted;
	bool restored;
	int exit_status;
};

/* Without --json the program's output goes to ours as it arrives, each stream to its own, in the
 * order the guest sent them. */
static void write_as_it_comes(void *ctx, uint32_t stream, const uint8_t *data, size_t len)
{
	(void)ctx;
	run_write_all(stream == AL_STREAM_STDOUT ? 1 : 2, data, len);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: airlock run [--backend auto|kvm|tcg] [--lang LANGUAGE]\n"
		"                   [--timeout S] [--json] [--put PATH=HOSTFILE]... [--out DIR]\n"
		"                   [--memory-mb N] [--vcpus N] [--images DIR] [--image NAME]\n"
		"                   [--verbose] [--cold] [--dir PATH] [--repo URL] [--package SPEC]...\n"
		"                   [--keep-state] [--state-id ID]\n"
		STATE_USAGE
		POLICY_USAGE
		"                   (--file F | CODE | --command CMD)\n"
		"--package SPEC installs a pip requirement (python) or npm spec (javascript)\n"
		"before the program, from --pip-index / --npm-registry.\n"
		"Standard input, when it is not a terminal, is fed to the program.\n"
		"--dir PATH sends the contents of PATH to be those of /work (hidden files too, at\n"
		"most %u MiB and %u entries); a symbolic link is sent as the file it names inside\n"
		"PATH, never followed out of it; links out, links to directories, fifos, devices\n"
		"and sockets are skipped, each said on stderr.\n"
		"--command CMD runs `bash -c CMD` in /work as the sandbox user.\n"
		"--image NAME runs in an image of one's own (`airlock image build --recipe`).\n"
		"--keep-state saves the VM after the program and prints `airlock: state_id ID` last\n"
		"on stderr; --state-id ID runs in a fresh VM restored from it (its language), as\n"
		"often as wanted (`airlock state list`, `airlock state rm ID`).\n"
		"--repo URL (http:// or https://, with --command) clones URL into /work/repo\n"
		"inside the VM and runs CMD there.\n"
		"--out DIR writes the files the program left in /work/out under DIR: only new files,\n"
		"never over one that exists, through a symbolic link or under a hidden name; each\n"
		"file not written is said on stderr (and in \"out_skipped\" with --json).\n"
		"The VM is restored from the language's snapshot when `airlock image build` made one\n"
		"(for this backend and VM size), else booted; --cold always boots.\n",
		MAX_INPUT_BYTES >> 20, MAX_DIR_ENTRIES);
	char names[256];
	sandbox_language_list(names, sizeof names);
	fprintf(stderr, "LANGUAGE: %s (default python).\n", names);
}

/* Reads a whole file (or fd) up to limit bytes. Returns 0 or -errno (-EFBIG past the limit). */
static int read_all_fd(int fd, size_t limit, uint8_t **out, size_t *out_len)
{
	size_t cap = 65536, len = 0;
	uint8_t *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len == cap) {
			if (cap > limit) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			uint8_t *p = realloc(buf, cap);
			if (!p) {
				free(buf);
				return -ENOMEM;
			}
			buf = p;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;
			free(buf);
			return err;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > limit) {
		free(buf);
		return -EFBIG;
	}
	*out = buf;
	*out_len = len;
	return 0;
}

static int read_file(const char *path, size_t limit, uint8_t **out, size_t *out_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = read_all_fd(fd, limit, out, out_len);
	close(fd);
	return rc;
}

/* --put PATH=HOSTFILE */
static int add_put(struct run_options *o, const char *arg)
{
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg || !eq[1]) {
		fprintf(stderr, "airlock: --put wants PATH=HOSTFILE, got '%s'\n", arg);
		return -EINVAL;
	}
	char path[ARCHIVE_MAX_PATH + 1], why[128];
	size_t plen = (size_t)(eq - arg);
	if (plen > ARCHIVE_MAX_PATH) {
		fprintf(stderr, "airlock: --put: path is longer than %d bytes\n", ARCHIVE_MAX_PATH);
		return -EINVAL;
	}
	memcpy(path, arg, plen);
	path[plen] = '\0';
	if (!archive_path_ok(path, why, sizeof why)) {
		fprintf(stderr, "airlock: --put: path '%s' %s\n", path, why);
		return -EINVAL;
	}
	uint8_t *data;
	size_t len;
	int rc = read_file(eq + 1, MAX_INPUT_BYTES, &data, &len);
	if (rc) {
		fprintf(stderr, "airlock: --put: cannot read %s: %s\n", eq + 1, strerror(-rc));
		return rc;
	}
	rc = file_list_add(&o->files, path, data, len, true);
	free(data);
	return rc;
}

static int parse_options(int argc, char **argv, struct run_options *o)
{
	static const struct option options[] = {
		{"backend", required_argument, NULL, 'b'}, {"lang", required_argument, NULL, 'l'},
		{"timeout", required_argument, NULL, 't'}, {"file", required_argument, NULL, 'f'},
		{"json", no_argument, NULL, 'j'},          {"put", required_argument, NULL, 'p'},
		{"out", required_argument, NULL, 'o'},     {"memory-mb", required_argument, NULL, 'm'},
		{"vcpus", required_argument, NULL, 'c'},   {"images", required_argument, NULL, 'i'},
		{"verbose", no_argument, NULL, 'v'},       {"help", no_argument, NULL, 'h'},
		{"cold", no_argument, NULL, 'C'},          {"dir", required_argument, NULL, 'd'},
		{"command", required_argument, NULL, 'x'}, {"repo", required_argument, NULL, 'r'},
		{"package", required_argument, NULL, 'P'}, {"image", required_argument, NULL, 'I'},
		{"keep-state", no_argument, NULL, 'K'},    {"state-id", required_argument, NULL, 'S'},
		POLICY_LONG_OPTIONS,
		STATE_LONG_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	*o = (struct run_options){.backend = "auto", .language = "python",
				  .timeout_s = CALL_DEFAULT_TIMEOUT_S, .memory_mb = VM_DEFAULT_MEMORY_MB,
				  .vcpus = VM_DEFAULT_VCPUS, .states = STATE_OPTIONS_DEFAULT};
	int c;
	char *end;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (c >= POLICY_OPT_ALLOW_HOST && c <= POLICY_OPT_DENY_IMPORTS) {
			if (policy_option(c, optarg, &o->policy) != 0)
				return -EINVAL;
			continue;
		}
		if (c >= STATE_OPT_DIR && c <= STATE_OPT_MAX_MB) {
			if (state_option(c, optarg, &o->states) != 0)
				return -EINVAL;
			continue;
		}
		switch (c) {
		case 'K': o->keep_state = true; break;
		case 'S': o->state_id = optarg; break;
		case 'b': o->backend = optarg; break;
		case 'P':
			if (o->n_packages == SANDBOX_MAX_PACKAGES) {
				fprintf(stderr, "airlock: at most %d --package\n", SANDBOX_MAX_PACKAGES);
				return -EINVAL;
			}
			o->packages[o->n_packages++] = optarg;
			break;
		case 'l': o->language = optarg; o->lang_given = true; break;
		case 'f': o->file = optarg; break;
		case 'j': o->json = true; break;
		case 'o': o->out_dir = optarg; break;
		case 'i': o->images_dir = optarg; break;
		case 'I': o->image = optarg; break;
		case 'v': o->verbose = true; break;
		case 'C': o->cold = true; break;
		case 'd': o->dir = optarg; break;
		case 'x': o->command = optarg; break;
		case 'r': o->repo = optarg; break;
		case 'p':
			if (add_put(o, optarg) != 0)
				return -EINVAL;
			break;
		case 't':
			o->timeout_s = strtod(optarg, &end);
			if (*end || !(o->timeout_s > 0) || !isfinite(o->timeout_s)) {
				fprintf(stderr, "airlock: --timeout wants seconds > 0, got '%s'\n",
					optarg);
				return -EINVAL;
			}
			if (o->timeout_s > MAX_TIMEOUT_S)
				o->timeout_s = MAX_TIMEOUT_S;
			break;
		case 'm':
		case 'c': {
			unsigned long v = strtoul(optarg, &end, 10);
			unsigned long lo = c == 'm' ? 128 : 1, hi = c == 'm' ? 16384 : 1;
			if (*end || v < lo || v > hi) {
				fprintf(stderr, "airlock: --%s wants %lu..%lu, got '%s'\n",
					c == 'm' ? "memory-mb" : "vcpus", lo, hi, optarg);
				return -EINVAL;
			}
			if (c == 'm')
				o->memory_mb = (unsigned)v;
			else
				o->vcpus = (unsigned)v;
			break;
		}
		case 'h':
			usage();
			exit(0);
		default:
			usage();
			return -EINVAL;
		}
	}
	if (optind < argc)
		o->code_arg = argv[optind++];
	if (o->command && (o->code_arg || o->file)) {
		fprintf(stderr, "airlock: --command is the code: give no --file or CODE with it\n");
		usage();
		return -EINVAL;
	}
	if (o->command && o->lang_given && strcmp(o->language, "bash") != 0) {
		fprintf(stderr, "airlock: --command runs bash; --lang %s does not go with it\n",
			o->language);
		return -EINVAL;
	}
	policy_finish(&o->policy);
	if (o->repo && !o->command) {
		fprintf(stderr, "airlock: --repo wants --command CMD, to run in the clone\n");
		return -EINVAL;
	}
	if (o->command) {
		o->language = "bash"; /* and no CODE: checked above */
		return 0;
	}
	if (optind < argc || (!o->code_arg == !o->file)) {
		fprintf(stderr, "airlock: give the code either as one argument or with --file\n");
		usage();
		return -EINVAL;
	}
	return 0;
}

static int exit_status_of(const struct sandbox_result *r)
{
	if (r->not_run)
		return EXIT_NOT_RUN;
	if (r->timed_out)
		return 124;
	if (r->exited)
		return r->exit_code;
	if (r->signal)
		return 128 + r->signal;
	return EXIT_SANDBOX_FAILURE;
}

static void on_done(struct sandbox *sb, const struct sandbox_result *r, void *ctx)
{
	(void)sb;
	struct run_state *st = ctx;
	const struct run_options *o = st->opts;
	st->sandbox = NULL;
	uv_close((uv_handle_t *)&st->sigint, NULL);
	uv_close((uv_handle_t *)&st->sigterm, NULL);

	if (r->error) {
		if (o->json) {
			json_t *j = json_pack("{s:s}", "error", r->message);
			json_dumpf(j, stdout, JSON_COMPACT);
			putchar('\n');
			json_decref(j);
		}
		if (r->error != -ECANCELED)
			fprintf(stderr, "airlock: %s\n", r->message);
		st->exit_status = st->interrupted ? 130 : EXIT_SANDBOX_FAILURE;
		kept_call_finish(st->kept, st->store, r);
		return;
	}
	uint64_t commit_started = uv_hrtime();
	kept_call_finish(st->kept, st->store, r);
	if (o->verbose && st->kept->kept_id[0])
		fprintf(stderr, "airlock: state kept in %.1f ms (the VM saved in %.1f ms)\n",
			r->save_ms + (double)(uv_hrtime() - commit_started) / 1e6, r->save_ms);
	if (o->verbose)
		fprintf(stderr, "airlock: boot to ready %.1f ms (%s), request to result %.1f ms\n",
			r->boot_ms, st->restored ? "restored from the snapshot" : "booted",
			r->duration_ms);
	struct file_list files = {0};
	if (result_output_files(r, CALL_OUT_FILES_CAP, &files) != 0)
		fprintf(stderr, "airlock: the guest returned a malformed file archive\n");
	if (o->json) {
		/* with --out, execute_code's result plus "out_skipped": the files not written */
		json_t *j = result_structured(r, &files);
		kept_call_annotate(st->kept, j);
		json_t *skipped = o->out_dir ? json_array() : NULL;
		if (o->out_dir)
			run_save_output_files(o->out_dir, &files, skipped);
		if (j && skipped)
			json_object_set(j, "out_skipped", skipped);
		json_decref(skipped);
		if (!j || json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(12)) != 0)
			fprintf(stderr, "airlock: cannot write the JSON result\n");
		putchar('\n');
		json_decref(j);
	} else {
		/* the output itself went out as it came (write_as_it_comes) */
		if (r->stdout_truncated)
			fprintf(stderr, "[airlock: stdout truncated: %llu bytes written, %zu kept]\n",
				(unsigned long long)r->stdout_total, r->out.len);
		if (r->stderr_truncated)
			fprintf(stderr, "[airlock: stderr truncated: %llu bytes written, %zu kept]\n",
				(unsigned long long)r->stderr_total, r->err.len);
		if (r->timed_out)
			fprintf(stderr, "[airlock: timed out after %g s]\n", o->timeout_s);
		run_report_setup(r, o->verbose);
	}
	if (o->out_dir && !o->json)
		run_save_output_files(o->out_dir, &files, NULL);
	/* the last line on stderr, where a script finds it (SPEC.md) */
	if (!o->json && st->kept->keep && st->kept->kept_id[0])
		fprintf(stderr, "airlock: state_id %s\n", st->kept->kept_id);
	else if (!o->json && st->kept->keep)
		fprintf(stderr, "airlock: no state kept: %s\n", st->kept->error);
	file_list_free(&files);
	st->exit_status = exit_status_of(r);
}

static void on_signal(uv_signal_t *handle, int signum)
{
	(void)signum;
	struct run_state *st = handle->data;
	st->interrupted = true;
	if (st->sandbox)
		sandbox_cancel(st->sandbox);
}

static int prepare_images(const struct run_options *o, struct images *im)
{
	char err[1024];
	if (images_init(im, o->images_dir, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		return -ENOENT;
	}
	if (o->image && images_use(im, o->image, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		return -ENOENT;
	}
	if (!images_ready(im)) {
		fprintf(stderr, "airlock: guest images are not built yet; building them now "
				"(first use only)\n");
		if (images_build(im, false, err, sizeof err) != 0) {
			fprintf(stderr, "airlock: %s\n", err);
			return -EIO;
		}
	}
	return 0;
}

int cli_run(int argc, char **argv)
{
	struct run_options o;
	if (parse_options(argc, argv, &o) != 0) {
		file_list_free(&o.files);
		policy_free(&o.policy);
		return 2;
	}
	int status = EXIT_SANDBOX_FAILURE;
	uint8_t *code = NULL, *input = NULL, *tar = NULL;
	char *repo_code = NULL;
	size_t code_len = 0, input_len = 0, tar_len = 0;
	char err[1024];
	enum al_language lang = AL_LANG_PYTHON;
	int lang_rc = sandbox_language(o.language, &lang);
	const struct backend *backend = NULL;
	struct images im;
	struct state_store store;
	struct kept_call kept = {0};

	if (lang_rc != 0) {
		char names[256];
		sandbox_language_list(names, sizeof names);
		fprintf(stderr, "airlock: --lang must be %s (got '%s')\n", names, o.language);
		status = 2;
		goto out;
	}
	if (sandbox_packages_check(&o.policy, lang, o.packages, o.n_packages, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: --package: %s\n", err);
		status = 2;
		goto out;
	}
	if (o.repo && run_repo_code(o.repo, o.command, &repo_code, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		status = 2;
		goto out;
	}
	if (o.file) {
		int rc = read_file(o.file, MAX_INPUT_BYTES, &code, &code_len);
		if (rc) {
			fprintf(stderr, "airlock: cannot read %s: %s\n", o.file, strerror(-rc));
			status = 2;
			goto out;
		}
	}
	if (!isatty(0)) {
		int rc = read_all_fd(0, MAX_INPUT_BYTES, &input, &input_len);
		if (rc == -EBADF) {
			input_len = 0; /* no stdin at all */
		} else if (rc) {
			fprintf(stderr, "airlock: reading standard input: %s\n", strerror(-rc));
			status = 2;
			goto out;
		}
	}
	/* before a backend is picked or an image looked at: a tree too big starts nothing */
	if (o.dir && run_dir_pack(o.dir, &o.files, MAX_INPUT_BYTES, MAX_DIR_ENTRIES, stderr, &tar,
				  &tar_len, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		status = 2;
		goto out;
	}
	if (!o.dir && o.files.len &&
	    archive_pack(&o.files, &tar, &tar_len, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		goto out;
	}
	if (backend_select(o.backend, &backend, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		goto out;
	}
	if (prepare_images(&o, &im) != 0)
		goto out;
	if (o.keep_state || o.state_id) {
		if (o.cold) {
			fprintf(stderr, "airlock: --cold boots, and a kept state is a restore: not both\n");
			status = 2;
			goto out;
		}
		if (state_options_open(&o.states, &im, false, &store, err, sizeof err) != 0 ||
		    kept_call_begin(&kept, &store, o.state_id, o.keep_state,
				    o.lang_given ? o.language : NULL, &lang, err, sizeof err) != 0) {
			fprintf(stderr, "airlock: %s\n", err);
			status = 2;
			goto out;
		}
		o.language = sandbox_language_name(lang); /* the state's */
	}

	signal(SIGPIPE, SIG_IGN); /* a VM that died under a write is an EPIPE, then its result */
	if (cgroup_init(err, sizeof err) == CGROUP_NONE && o.verbose)
		fprintf(stderr, "airlock: the VM runs without cgroup limits: %s\n", err);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct run_state st = {.opts = &o, .kept = &kept, .store = &store,
			       .exit_status = EXIT_SANDBOX_FAILURE};
	uv_signal_init(&loop, &st.sigint);
	uv_signal_init(&loop, &st.sigterm);
	st.sigint.data = st.sigterm.data = &st;
	uv_signal_start(&st.sigint, on_signal, SIGINT);
	uv_signal_start(&st.sigterm, on_signal, SIGTERM);

	struct sandbox_vm vm = {
		.backend = backend,
		.kernel = im.kernel,
		.rootfs = im.rootfs,
		.memory_mb = o.memory_mb,
		.vcpus = o.vcpus,
		.boot_timeout_ms = sandbox_boot_timeout_ms(),
		.verbose = o.verbose,
	};
	char snapshot[PATH_MAX];
	struct snapshot_spec snap = {backend, &im, o.language, o.memory_mb, o.vcpus, 0};
	struct snapshot_facts facts;
	if (!o.cold && snapshot_locate(&snap, snapshot, sizeof snapshot) == 0 &&
	    snapshot_check(&snap, snapshot, &facts, err, sizeof err) == 0) {
		vm.snapshot_dir = snapshot;
		vm.guest_tsc_khz = facts.guest_tsc_khz;
		vm.snapshot_memory_ctime_ns = facts.memory_ctime_ns;
		vm.snapshot_language = o.language;
		st.restored = true;
	} else if (!o.cold && o.verbose) {
		fprintf(stderr, "airlock: booting (no snapshot: %s)\n", err);
	}
	/* --command: the command is the bash program; with --repo, the clone runs it */
	const char *text = repo_code ? repo_code : o.command ? o.command : o.code_arg;
	struct sandbox_request req = {
		.language = lang,
		.code = o.file ? (const void *)code : text,
		.code_len = o.file ? code_len : strlen(text),
		.stdin_data = input,
		.stdin_len = input_len,
		.files_tar = tar,
		.files_len = tar_len,
		.timeout_ms = (uint32_t)llround(o.timeout_s * 1000),
		.stdout_cap = CALL_OUTPUT_CAP,
		.stderr_cap = CALL_OUTPUT_CAP,
		.out_files_cap = CALL_OUT_FILES_CAP,
		.policy = &o.policy,
		.packages = o.packages,
		.n_packages = o.n_packages,
		.on_output = o.json ? NULL : write_as_it_comes,
	};
	fflush(stdout);
	if ((o.keep_state || o.state_id) &&
	    kept_call_prepare(&kept, &store, &vm, &req, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		uv_close((uv_handle_t *)&st.sigint, NULL);
		uv_close((uv_handle_t *)&st.sigterm, NULL);
	} else if (sandbox_start(&loop, &vm, &req, on_done, &st, &st.sandbox, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		uv_close((uv_handle_t *)&st.sigint, NULL);
		uv_close((uv_handle_t *)&st.sigterm, NULL);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		fprintf(stderr, "airlock: internal error: handles left open\n");
	cgroup_cleanup();
	status = st.exit_status;
out:
	kept_call_abandon(&kept);
	free(code);
	free(repo_code);
	free(input);
	free(tar);
	file_list_free(&o.files);
	policy_free(&o.policy);
	return status;
}
