/* Making and checking snapshots (see sandbox.h). Making is a sandbox's life (sandbox.c)
 * with the backend's save in place of a run, on a loop of its own that snapshot_make runs to the
 * end: at image build time (`airlock image build`, or the server's first-use build on a worker
 * thread).
 *
 * The manifest is text, one "key value" per line:
 *     airlock-snapshot 2
 *     language python
 *     backend tcg
 *     kernel KEY
 *     rootfs KEY
 *     memory_mb 512
 *     memory_size BYTES     size of `memory`
 *     state_size BYTES      size of `state`
 *     state_hash HEX        FNV-1a of `state`
 *     guest_tsc_khz N       tcg: the TSC rate its kernel was told (host_tsc_khz), which a
 *                           restore's command line must repeat; 0 on kvm (airlock-vmm asks KVM)
 *     memory_ctime_ns N     `memory`'s change time once made: a later write shows (see the .h)
 *     protocol N            the wire protocol its agent speaks (AL_PROTO_VERSION); none: 1
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "proto.h"
#include "sandbox.h"

#define MANIFEST_VERSION 2 /* 2: guest_tsc_khz, memory_ctime_ns */

static void copy_value(char *out, size_t out_len, const char *value)
{
	size_t n = strlen(value);
	if (n >= out_len)
		n = 0; /* too long to be right: leave it empty, the check then refuses it */
	memcpy(out, value, n);
	out[n] = '\0';
}

int snapshot_locate(const struct snapshot_spec *s, char *dir, size_t dir_len)
{
	char program[PATH_MAX];
	int rc = s->backend->program(program, sizeof program);
	if (rc)
		return rc;
	struct snapshot_recipe r = {s->backend->name, program, s->language, s->memory_mb,
				    s->vcpus};
	return images_snapshot_dir(s->images, &r, dir, dir_len);
}

static long long file_size(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	if (path_printf(path, sizeof path, "%s/%s", dir, name) != 0 || stat(path, &st) != 0)
		return -1;
	return (long long)st.st_size;
}

static int64_t memory_ctime_ns(const char *dir)
{
	char path[PATH_MAX];
	struct stat st;
	if (path_printf(path, sizeof path, "%s/memory", dir) != 0 || stat(path, &st) != 0)
		return -1;
	return (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
}

int snapshot_memory_unchanged(const char *dir, int64_t ctime_ns, char *why, size_t why_len)
{
	if (memory_ctime_ns(dir) == ctime_ns)
		return 0;
	snprintf(why, why_len, "snapshot %s is damaged: its memory file was written or replaced "
			       "after the snapshot was made (by a VM that broke out of its guest?)",
		 dir);
	return -EINVAL;
}

static int state_hash(const char *dir, char out[IMAGE_KEY_LEN + 1])
{
	char path[PATH_MAX];
	if (path_printf(path, sizeof path, "%s/state", dir) != 0)
		return -ENAMETOOLONG;
	return images_file_hash(path, out);
}

/* What is wrong with the files of a snapshot made for this build, from its manifest's figures,
 * or NULL. */
static const char *damage(const char *dir, long long memory, long long state, const char *hash,
			  long long tsc_khz, long long ctime_ns)
{
	char actual_hash[IMAGE_KEY_LEN + 1];
	if (memory <= 0 || file_size(dir, "memory") != memory)
		return "the memory file is missing or has the wrong size";
	if (state <= 0 || file_size(dir, "state") != state)
		return "the state file is missing or has the wrong size";
	if (state_hash(dir, actual_hash) != 0 || strcmp(actual_hash, hash))
		return "the state file does not match its hash";
	if (tsc_khz < 0 || tsc_khz > 10000000)
		return "no TSC rate";
	if (ctime_ns <= 0)
		return "no change time of the memory file";
	return NULL;
}

int snapshot_check(const struct snapshot_spec *s, const char *dir,
		   struct snapshot_facts *facts, char *why, size_t why_len)
{
	char path[PATH_MAX];
	path_printf(path, sizeof path, "%s/manifest", dir);
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(why, why_len, "no snapshot at %s", dir);
		return -ENOENT;
	}
	char line[256], key[64], value[128], hash[IMAGE_KEY_LEN + 1] = "";
	long long version = -1, memory = -1, state = -1, tsc_khz = -1, ctime_ns = -1;
	long long protocol = 1; /* the agent in its memory: before the line, every agent spoke 1 */
	char language[32] = "", rootfs[IMAGE_KEY_LEN + 1] = "", kernel[IMAGE_KEY_LEN + 1] = "";
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%63s %127s", key, value) != 2)
			continue;
		if (!strcmp(key, "airlock-snapshot"))
			version = atoll(value);
		else if (!strcmp(key, "language"))
			copy_value(language, sizeof language, value);
		else if (!strcmp(key, "rootfs"))
			copy_value(rootfs, sizeof rootfs, value);
		else if (!strcmp(key, "kernel"))
			copy_value(kernel, sizeof kernel, value);
		else if (!strcmp(key, "memory_size"))
			memory = atoll(value);
		else if (!strcmp(key, "state_size"))
			state = atoll(value);
		else if (!strcmp(key, "state_hash"))
			copy_value(hash, sizeof hash, value);
		else if (!strcmp(key, "guest_tsc_khz"))
			tsc_khz = atoll(value);
		else if (!strcmp(key, "memory_ctime_ns"))
			ctime_ns = atoll(value);
		else if (!strcmp(key, "protocol"))
			protocol = atoll(value);
	}
	fclose(f);
	char old_agent[128];
	const char *problem = NULL;
	snprintf(old_agent, sizeof old_agent,
		 "it was made by an agent speaking wire protocol %lld (this airlock speaks %u)",
		 protocol, AL_PROTO_VERSION);
	if (version != MANIFEST_VERSION)
		problem = "its manifest is not this airlock's (an older or newer version made it)";
	else if (strcmp(language, s->language) || strcmp(rootfs, s->images->rootfs_key) ||
		 strcmp(kernel, s->images->kernel_key))
		problem = "made for other images or another language";
	else if (protocol != AL_PROTO_VERSION)
		problem = old_agent;
	const char *verdict = problem ? "is out of date" : "is damaged"; /* another build's, or hurt */
	if (!problem)
		problem = damage(dir, memory, state, hash, tsc_khz, ctime_ns);
	if (problem) {
		snprintf(why, why_len, "snapshot %s %s: %s", dir, verdict, problem);
		return -EINVAL;
	}
	if (snapshot_memory_unchanged(dir, ctime_ns, why, why_len) != 0)
		return -EINVAL;
	if (facts)
		*facts = (struct snapshot_facts){(unsigned)tsc_khz, ctime_ns};
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void remove_tree(const char *dir)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_manifest(const struct snapshot_spec *s, const char *dir, unsigned guest_tsc_khz)
{
	char path[PATH_MAX], hash[IMAGE_KEY_LEN + 1];
	int rc = state_hash(dir, hash);
	if (rc)
		return rc;
	path_printf(path, sizeof path, "%s/manifest", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "airlock-snapshot %d\nlanguage %s\nbackend %s\nkernel %s\nrootfs %s\n",
		MANIFEST_VERSION, s->language, s->backend->name, s->images->kernel_key,
		s->images->rootfs_key);
	fprintf(f, "memory_mb %u\nmemory_size %lld\nstate_size %lld\nstate_hash %s\n",
		s->memory_mb, file_size(dir, "memory"), file_size(dir, "state"), hash);
	fprintf(f, "guest_tsc_khz %u\nmemory_ctime_ns %lld\n", guest_tsc_khz,
		(long long)memory_ctime_ns(dir));
	fprintf(f, "protocol %u\n", AL_PROTO_VERSION);
	rc = fflush(f) == 0 && fsync(fileno(f)) == 0 ? 0 : -errno;
	fclose(f);
	return rc;
}

struct made {
	int error;
	char message[1024];
};

static void on_made(struct sandbox *sb, const struct sandbox_result *res, void *ctx)
{
	(void)sb;
	struct made *made = ctx;
	made->error = res->error;
	snprintf(made->message, sizeof made->message, "%s", res->message);
}

/* Boots the VM into tmp and has it saved: a sandbox's life on a loop of this thread's own (the
 * server makes snapshots on a worker thread while its own loop serves). Returns 0 or -errno
 * with err set. */
static int boot_and_save(const struct snapshot_spec *s, const char *tmp, const char *log,
			 char *err, size_t err_len)
{
	uv_loop_t loop;
	int rc = uv_loop_init(&loop);
	if (rc) {
		snprintf(err, err_len, "cannot make an event loop: %s", uv_strerror(rc));
		return -EIO;
	}
	struct sandbox_vm vm = {
		.backend = s->backend,
		.kernel = s->images->kernel,
		.rootfs = s->images->rootfs,
		.memory_mb = s->memory_mb,
		.vcpus = s->vcpus,
		.boot_timeout_ms = s->timeout_ms,
		.snapshot_dir = tmp,
		.snapshot_language = s->language,
		.log_path = log,
	};
	struct made made = {.error = -EINPROGRESS};
	rc = sandbox_make_snapshot(&loop, &vm, on_made, &made, err, err_len);
	if (rc == 0) {
		uv_run(&loop, UV_RUN_DEFAULT); /* until the VM is reaped and its handles closed */
		rc = made.error;
		if (rc)
			snprintf(err, err_len, "the snapshot VM failed: %s (log: %s)", made.message,
				 log);
	}
	if (uv_loop_close(&loop) != 0) /* every handle is closed by now: a bug if not */
		fprintf(stderr, "airlock: the snapshot maker's loop still had handles open\n");
	return rc;
}

int snapshot_make(const struct snapshot_spec *s, const char *dir, char *err, size_t err_len)
{
	char tmp[PATH_MAX], log[PATH_MAX], why[512];
	const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
	char logs[PATH_MAX];
	if (path_printf(tmp, sizeof tmp, "%s.tmp-%d", dir, (int)getpid()) ||
	    path_printf(log, sizeof log, "%s/logs/%s.log", s->images->dir, name) ||
	    path_printf(logs, sizeof logs, "%s/logs", s->images->dir)) {
		snprintf(err, err_len, "the image directory's path is too long");
		return -ENAMETOOLONG;
	}
	remove_tree(tmp);
	mkdir(logs, 0755);
	if (mkdir(tmp, 0755) != 0) {
		snprintf(err, err_len, "cannot create %s: %s", tmp, strerror(errno));
		return -errno;
	}
	fprintf(stderr, "airlock: making the %s snapshot (%s: boot, start the interpreter, save); "
			"log: %s\n",
		s->language, s->backend->name, log);
	int64_t started = now_ms();
	unsigned tsc_khz = s->backend->snapshot_tsc_khz();
	int rc = boot_and_save(s, tmp, log, err, err_len);
	if (rc == 0 && (rc = write_manifest(s, tmp, tsc_khz)) != 0)
		snprintf(err, err_len, "cannot write the snapshot manifest: %s", strerror(-rc));
	if (rc == 0 && (rc = snapshot_check(s, tmp, NULL, why, sizeof why)) != 0)
		snprintf(err, err_len, "the new snapshot does not check out: %s", why);
	if (rc == 0) {
		remove_tree(dir); /* a damaged one */
		if (rename(tmp, dir) != 0) {
			rc = -errno;
			snprintf(err, err_len, "cannot move the snapshot to %s: %s", dir,
				 strerror(errno));
		}
	}
	if (rc) {
		remove_tree(tmp);
		return rc;
	}
	fprintf(stderr, "airlock: %s snapshot made in %.1f s\n", s->language,
		(double)(now_ms() - started) / 1000);
	return 0;
}

int snapshot_ensure(const struct snapshot_spec *s, char *dir, size_t dir_len, char *err,
		    size_t err_len)
{
	int rc = snapshot_locate(s, dir, dir_len);
	if (rc) {
		snprintf(err, err_len, "cannot locate the %s snapshot: %s", s->language,
			 strerror(-rc));
		return rc;
	}
	char why[512];
	rc = snapshot_check(s, dir, NULL, why, sizeof why);
	if (rc == 0)
		return 0;
	if (rc == -EINVAL)
		fprintf(stderr, "airlock: %s; making it again\n", why);
	return snapshot_make(s, dir, err, err_len);
}

int snapshot_ensure_all(const struct backend *backend, const struct images *images,
			unsigned memory_mb, unsigned vcpus, char *err, size_t err_len)
{
	for (uint32_t l = AL_LANG_FIRST; l < AL_LANG_END; l++) {
		struct snapshot_spec spec = {backend, images, al_language_name(l), memory_mb, vcpus,
					     SNAPSHOT_MAKE_TIMEOUT_MS};
		char dir[PATH_MAX];
		int rc = snapshot_ensure(&spec, dir, sizeof dir, err, err_len);
		if (rc)
			return rc;
	}
	return 0;
}
