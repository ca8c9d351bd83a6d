/* sandbox/: VMs, the part's one header for the parts above it. Files in and out of the guest
 * (archive.c), one VM's life (sandbox.c and the files beside it), the image cache (images.c), the
 * snapshots (snapshot_cache.c) and the warm pool (pool.c).
 */
#ifndef AIRLOCK_SANDBOX_H
#define AIRLOCK_SANDBOX_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "backend.h"
#include "egress.h"
#include "proto.h"
#include "recipe.h"

/* Files into and out of the guest as ustar archives (libarchive). Paths are checked both ways:
 * what the caller sends and what the untrusted guest returns.
 */

#define ARCHIVE_MAX_PATH 255 /* ustar's prefix + name */

struct file_entry {
	char *path;
	uint8_t *data;
	size_t size;
	bool returned; /* for output files: content included (false: listed only) */
};

struct file_list {
	struct file_entry *items;
	size_t len, cap;
};

/* Adds a copy of path and data. Returns 0 or -ENOMEM. */
int file_list_add(struct file_list *list, const char *path, const void *data, size_t size,
		  bool returned);
void file_list_free(struct file_list *list);

/* Whether path may name a file under /work: relative, no "." or ".." component, no empty
 * component, at most ARCHIVE_MAX_PATH bytes. why says what is wrong. */
bool archive_path_ok(const char *path, char *why, size_t why_len);

/* A libarchive writer's output in memory, grown as it comes (malloc'd data; the caller frees). */
struct archive;
struct archive_memory {
	uint8_t *data;
	size_t len, cap;
};
/* archive_write_open() into m. Returns libarchive's status. */
int archive_write_open_growing(struct archive *a, struct archive_memory *m);
/* Packs files into a ustar archive (malloc'd *out). Returns 0 or -errno with err set. */
int archive_pack(const struct file_list *files, uint8_t **out, size_t *out_len, char *err,
		 size_t err_len);
/* Unpacks regular files from a ustar archive into out, at most max_files, in their order: each
 * with its content (returned = true) while the contents so far stay within cap bytes, else listed
 * with its size only (returned = false; nothing is read or allocated for it). Members with unsafe
 * paths or other types are skipped. Sparse members are refused: libarchive would expand them to
 * their logical size. Returns 0, -EPROTO for a bad archive, or -ENOMEM. */
int archive_unpack(const uint8_t *tar, size_t len, size_t max_files, uint64_t cap,
		   struct file_list *out);

/* One VM's life, on a libuv loop: spawn the backend's VM process with the host channel, wait for
 * the agent's READY, send the run request, collect output within the caps, enforce the boot and
 * run deadlines, kill the VM, and report one result. Every VM serves exactly one run. Making a
 * snapshot is the same life with the backend's save in place of the run.
 */

struct sandbox;

/* What to boot. */
struct sandbox_vm {
	const struct backend *backend;
	const char *kernel;
	const char *rootfs;
	unsigned memory_mb;
	unsigned vcpus;
	uint32_t boot_timeout_ms; /* spawn until the agent is READY */
	bool verbose;             /* copy the guest's boot log to stderr at the end */
	/* Restore from this snapshot (below) instead of booting, or NULL. The snapshot's
	 * language is the only one its VM runs. */
	const char *snapshot_dir;
	const char *snapshot_language;
	/* the snapshot's facts (below): the TSC rate a restore repeats (vm_spec), and the
	 * memory file's change time (no request runs once it changed) */
	unsigned guest_tsc_khz;
	int64_t snapshot_memory_ctime_ns;
	/* The VM's log (its console and the VM program's messages) goes here and is kept, or, when
	 * NULL, to a temporary file removed with the VM. */
	const char *log_path;
	/* Kept state (sandbox/kept_state.h): restore from this kept state, saved by this backend
	 * from a VM of snapshot_dir, rather than from the snapshot itself; or NULL. */
	const char *kept_state_dir;
	/* A run that keeps its state (sandbox_request.keep) saves the VM into this empty directory
	 * (made by the caller) once the program has ended; NULL: no run of this VM keeps it. */
	const char *keep_to_dir;
};

/* The advisory pre-scan (docs/security.md): off, findings returned, or findings refuse the run. */
enum scan_mode { SCAN_OFF, SCAN_WARN, SCAN_DENY };

/* What the operator opened for every call (airlock mcp's and airlock run's flags): hosts the
 * program may reach, the package indexes, an extra CA, the pre-scan. All optional; a zeroed
 * policy opens nothing (the guest then has no proxy at all). */
struct sandbox_policy {
	struct egress_policy egress; /* --allow-host; install: the indexes' hosts, --install-host */
	const char *pip_index;       /* --pip-index URL (a PEP 503 simple index), or NULL */
	const char *npm_registry;    /* --npm-registry URL, or NULL */
	const char *ca_pem;          /* --ca-file's content, or NULL */
	size_t ca_len;
	enum scan_mode scan;
	bool scan_given;          /* --scan was given (else --deny-imports means deny) */
	const char *deny_imports; /* --deny-imports: "a,b,c", or NULL */
};

/* Where packages go in the guest (the call's own /work), and the tools that install them. */
#define SANDBOX_PYTHON_PACKAGES "/work/.airlock/python" /* PYTHONUSERBASE, pip --user */
#define SANDBOX_PYTHON_USER_SITE SANDBOX_PYTHON_PACKAGES "/lib/python3.11/site-packages"
#define SANDBOX_NODE_PACKAGES "/work/.airlock/node"
#define SANDBOX_MAX_PACKAGES 64
#define SANDBOX_MAX_PACKAGE_LEN 200

/* Checks a call's packages against the policy and the language: an index configured for it, at
 * most SANDBOX_MAX_PACKAGES, each a plain requirement (pip: a PEP 508 name with extras, version
 * specifiers and markers, no URL, no option; npm: a registry name with an optional version or
 * tag, no URL, path or git spec). Returns 0, or -EINVAL with err naming what is wrong. */
int sandbox_packages_check(const struct sandbox_policy *policy, enum al_language language,
			   const char *const *packages, size_t n, char *err, size_t err_len);

/* What to run. The sandbox copies everything it needs before sandbox_start() returns. */
struct sandbox_request {
	enum al_language language;
	const void *code;
	size_t code_len;
	const void *stdin_data;
	size_t stdin_len;
	const void *files_tar; /* ustar archive unpacked under /work, or NULL */
	size_t files_len;
	uint32_t timeout_ms;
	uint64_t stdout_cap, stderr_cap, out_files_cap;
	const struct sandbox_policy *policy; /* NULL: nothing opened */
	const char *const *packages;         /* installed before the run (checked already) */
	size_t n_packages;
	/* Called with each piece of stdout (AL_STREAM_STDOUT) or stderr as it arrives, the part
	 * within the cap, before it is added to the result; NULL: none. */
	void (*on_output)(void *ctx, uint32_t stream, const uint8_t *data, size_t len);
	void *output_ctx;
	/* Kept state: run the program as a cell of the interpreter the VM holds (a VM restored from
	 * a kept state, or a run that keeps one), and keep: save the VM into sandbox_vm.keep_to_dir
	 * once it has ended (not after a timeout). */
	bool cell;
	bool keep;
};

struct byte_buffer {
	uint8_t *data;
	size_t len, cap;
};

struct sandbox_result {
	int error;          /* 0 when the program ran (whatever its exit); -errno for a sandbox
			       failure, -ECANCELED after sandbox_cancel() */
	char message[1024]; /* for a failure: one line saying what happened and what to do */
	bool exited;        /* exit_code is valid */
	int exit_code;
	int signal;         /* signal that ended the program, 0 if none */
	bool timed_out, stdout_truncated, stderr_truncated, files_truncated;
	uint64_t stdout_total, stderr_total; /* bytes the program wrote, dropped ones included */
	struct byte_buffer out, err;
	const uint8_t *files_tar; /* returned files under /work/out (ustar) */
	size_t files_len;
	const char *skipped; /* "SIZE PATH\n" lines: files under /work/out not returned */
	size_t skipped_len;
	double boot_ms;     /* spawn to READY */
	double duration_ms; /* request sent to result received */
	bool not_run;       /* a setup step (the install, the pre-scan) stopped the run */
	/* egress: the run had a proxy; every attempt (up to EGRESS_MAX_LOGGED, the rest counted) */
	bool egress;
	struct egress_attempt *network;
	size_t network_len, network_unlisted;
	/* the install step, when the call had packages */
	bool installed;      /* it ran */
	bool install_ok;
	double install_ms;
	struct byte_buffer install_log; /* its output's last AL_STEP_MAX_OUTPUT bytes */
	/* the pre-scan, when on: its JSON ({"advisories": [...]}) and whether it refused the run */
	bool scanned;
	bool scan_refused;
	struct byte_buffer scan_output;
	/* a run with keep: whether the VM was saved into keep_to_dir, else why not */
	bool kept;
	double save_ms; /* EXIT to the saved VM's end */
	char state_error[512];
};

/* Called once per sandbox, as soon as the result is final (the VM process is then being killed;
 * it is reaped and every handle closed on the loop afterwards, see sandbox_live_count). The result
 * and everything it points to may be freed when the callback returns. */
typedef void (*sandbox_done_fn)(struct sandbox *sb, const struct sandbox_result *res, void *ctx);

/* Called when a VM started without a request is ready for one (its agent answered). */
typedef void (*sandbox_ready_fn)(struct sandbox *sb, void *ctx);

/* Starts a VM and runs req in it. Returns 0 (done will be called) or -errno with err set (done
 * will not be called). Later failures, a VM that cannot start included, arrive through done. */
int sandbox_start(uv_loop_t *loop, const struct sandbox_vm *vm, const struct sandbox_request *req,
		  sandbox_done_fn done, void *ctx, struct sandbox **out, char *err, size_t err_len);
/* Starts a VM without a request (the warm pool): ready() once it can take one, done() if it ends
 * before. Same returns as sandbox_start(). */
int sandbox_spawn(uv_loop_t *loop, const struct sandbox_vm *vm, sandbox_ready_fn ready,
		  sandbox_done_fn done, void *ctx, struct sandbox **out, char *err, size_t err_len);
/* Boots a VM with vm->snapshot_language's interpreter waiting, and once its agent is READY has
 * the backend save it into vm->snapshot_dir: done() gets error 0 once the VM program has ended
 * with the snapshot written (sandbox/snapshot_cache.c checks it). Same returns as
 * sandbox_start(). */
int sandbox_make_snapshot(uv_loop_t *loop, const struct sandbox_vm *vm, sandbox_done_fn done,
			  void *ctx, char *err, size_t err_len);
/* Gives a spawned VM its one request; from now on done/ctx receive its result, failures (a
 * request too large, say) included. */
void sandbox_submit(struct sandbox *sb, const struct sandbox_request *req, sandbox_done_fn done,
		    void *ctx);
/* Kills the VM now; done follows with error -ECANCELED. Safe to call more than once. */
void sandbox_cancel(struct sandbox *sb);
/* A language's name (a row of AL_LANGUAGES, agent/proto.h) to its enum al_language. Returns 0 or
 * -EINVAL. */
int sandbox_language(const char *name, enum al_language *out);
/* Every language's name, "a, b or c", into out (cut to fit). */
void sandbox_language_list(char *out, size_t out_len);
/* And back ("unknown" for none). */
const char *sandbox_language_name(enum al_language language);
/* The boot deadline: $AIRLOCK_BOOT_TIMEOUT seconds when set (slow hosts, tests), else 60 s. */
uint32_t sandbox_boot_timeout_ms(void);

/* This thread's sandboxes whose VM process or handles are not gone yet: a program that ends runs
 * its loop until this is 0, so that no VM outlives it. */
unsigned sandbox_live_count(void);

/* Whether a VM started without a request is ready for one and has not ended since. */
bool sandbox_idle(const struct sandbox *sb);

/* Output bytes received so far (for progress reports). */
uint64_t sandbox_output_bytes(const struct sandbox *sb);

/* The image cache: guest kernel and root file system, built by the scripts in images/ and kept
 * under one directory (default ~/.cache/airlock, or $AIRLOCK_IMAGES, or --images DIR), each
 * artifact in a directory named after a hash of its recipe. An unchanged recipe is never
 * rebuilt; a failed build leaves nothing behind but its log.
 */

#define IMAGE_KEY_LEN 16 /* hex digits of a 64-bit recipe hash */

struct images {
	char dir[PATH_MAX];        /* the cache */
	char recipe_dir[PATH_MAX]; /* images/: build scripts, kernel config, package list */
	char agent[PATH_MAX];      /* the airlock-agent binary installed as the guest's init */
	char kernel_key[IMAGE_KEY_LEN + 1];
	char base_key[IMAGE_KEY_LEN + 1];
	char rootfs_key[IMAGE_KEY_LEN + 1];
	char kernel[PATH_MAX]; /* <dir>/kernel-<key>/vmlinux */
	char base[PATH_MAX];   /* <dir>/base-<key>/root: Debian packages, before the agent (a
				* derived image's own tree once images_use() chose one) */
	char rootfs[PATH_MAX]; /* <dir>/rootfs-<key>/rootfs.ext4 */
	/* A derived image (--image NAME, images_use()); empty strings for the stock one. */
	char image_name[RECIPE_NAME_MAX + 1];
	char image_contents[RECIPE_CONTENTS_MAX]; /* what it adds (recipe.h), for the LLM */
};

/* Resolves the cache directory (dir_override may be NULL), the recipe and the agent, and hashes
 * the recipes. Returns 0 or -errno with err saying what is missing. */
int images_init(struct images *im, const char *dir_override, char *err, size_t err_len);
/* Whether the kernel and root file system of the current recipe are built. */
bool images_ready(const struct images *im);
/* Builds whatever of the current recipe is missing (everything when force), with a progress line
 * on stderr for each step. Returns 0 or -errno with err naming the failed step and its log. */
int images_build(const struct images *im, bool force, char *err, size_t err_len);
/* Builds the derived image a recipe file describes (recipe.h, docs/images.md) on top of the
 * stock one (built first when missing), registers it under its name (<dir>/images/NAME) and
 * switches im to it (images_use()), so that images_build() and the snapshots that follow are
 * the new image's. A failed step is named with its log, and leaves nothing behind. */
int images_build_recipe(struct images *im, const char *recipe_path, bool force, char *err,
			size_t err_len);
/* Switches im to the derived image registered as name. Fails, saying what to do, when there is
 * none or it was built on another stock base (an airlock upgrade): build it again then. */
int images_use(struct images *im, const char *name, char *err, size_t err_len);
/* What a snapshot depends on besides the images. */
struct snapshot_recipe {
	const char *backend;  /* "tcg" or "kvm" */
	const char *program;  /* the VM program (qemu-system-x86_64, airlock-vmm), full path */
	const char *language; /* a name of AL_LANGUAGES (agent/proto.h) */
	unsigned memory_mb, vcpus;
};

/* Where the snapshot of recipe r for the current images lives: <dir>/snapshot-LANG-BACKEND-KEY.
 * Returns 0 or -errno. */
int images_snapshot_dir(const struct images *im, const struct snapshot_recipe *r, char *out,
			size_t out_len);
/* The 64-bit FNV-1a hash of a file's name and content, as hex. Returns 0 or -errno. */
int images_file_hash(const char *path, char out[IMAGE_KEY_LEN + 1]);
/* Prints what the cache holds: one line per artifact with its size and whether it is current. */
int images_list(const struct images *im, FILE *out);
/* Removes every artifact the current recipe does not use (older recipes' kernels, trees, root
 * file systems and snapshots) and what builds that died left, saying each on out (with dry_run,
 * only says). Waits for a build under way. Returns 0 or -errno with err set. Another checkout's
 * recipe sharing the cache counts as older: its next use builds again. */
int images_prune(const struct images *im, bool dry_run, FILE *out, char *err, size_t err_len);

/* Snapshots: a VM booted once per language, its interpreter started and waiting for code,
 * paused and saved, so that every later VM is restored instead of booted (no kernel boot, no
 * interpreter start). One directory per snapshot in the image cache, keyed like the images:
 *
 *     snapshot-LANG-BACKEND-KEY/
 *         memory     guest RAM (sparse); restores map it privately, copy-on-write
 *         state      everything else: QEMU's migration stream (tcg) or airlock-vmm's state
 *                    file (kvm, format documented in vmm/snapshot.c)
 *         manifest   what it was made from, and the sizes and hash that prove it is whole
 *
 * A snapshot that is missing, truncated, corrupt or made for other images is refused by
 * snapshot_check() and made again by snapshot_ensure(); it is never half-loaded.
 *
 * The memory file is what every later VM starts from, so no VM may write it: airlock-vmm opens it
 * read-only, and QEMU does too, though 7.2 would open it read-write even to map it private
 * (qemu_preload.c), as a user who may not write it or under a jail that binds it read-only
 * (backend/tcg/tcg.c). Should it be written all the same (by anything on the host), the write cannot
 * be undone without being seen: it changes the file's ctime, which the manifest records, so the
 * snapshot is refused from then on, and a VM restored from it runs no request once it changed.
 */

/* boot + importing numpy, pandas and matplotlib under emulation on a loaded host (about 10 s on
 * tcg here, 16 s in the KVM test host): a boot that has not answered in 3 minutes never will */
#define SNAPSHOT_MAKE_TIMEOUT_MS 180000

struct snapshot_spec {
	const struct backend *backend;
	const struct images *images;
	const char *language; /* a name of AL_LANGUAGES (agent/proto.h) */
	unsigned memory_mb, vcpus;
	uint32_t timeout_ms; /* boot + interpreter start + save */
};

/* The snapshot's directory for spec. Returns 0 or -errno. */
int snapshot_locate(const struct snapshot_spec *spec, char *dir, size_t dir_len);
/* What a restore needs to know of a checked snapshot. */
struct snapshot_facts {
	unsigned guest_tsc_khz;  /* what its kernel was told (vm_spec): a restore must say the same */
	int64_t memory_ctime_ns; /* the memory file's change time when the snapshot was made */
};

/* Whether dir holds a whole snapshot made from the current images. Returns 0 with *facts set
 * (unless NULL), -ENOENT when there is none, or -EINVAL when it is damaged or mismatched; why
 * says what is wrong. */
int snapshot_check(const struct snapshot_spec *spec, const char *dir,
		   struct snapshot_facts *facts, char *why, size_t why_len);
/* Whether dir's memory file still has the change time memory_ctime_ns (snapshot_facts): 0, or
 * -EINVAL with why saying it was written since (or is gone). A stat, cheap enough per request. */
int snapshot_memory_unchanged(const char *dir, int64_t memory_ctime_ns, char *why,
			      size_t why_len);
/* Makes the snapshot: boots, waits for READY, saves, checks, and moves it into place. Blocking
 * (it runs an event loop of its own); progress and failures on stderr too. Returns 0 or -errno with err set. */
int snapshot_make(const struct snapshot_spec *spec, const char *dir, char *err, size_t err_len);
/* Checks the snapshot and (re)makes it when it is missing or damaged. Returns 0 with dir set, or
 * -errno with err set. */
int snapshot_ensure(const struct snapshot_spec *spec, char *dir, size_t dir_len, char *err,
		    size_t err_len);

/* snapshot_ensure() for every language. Returns 0 or -errno with err set. */
int snapshot_ensure_all(const struct backend *backend, const struct images *images,
			unsigned memory_mb, unsigned vcpus, char *err, size_t err_len);

/* The warm pool: per language, up to N VMs restored from the language's snapshot and waiting
 * for a request (the guest idles in HLT). A call takes one and the pool restores a replacement in
 * the background, starting a moment later (REFILL_AFTER_TAKE_MS) so as not to slow that call
 * down. Every VM still serves exactly one call and is destroyed; the pool only moves the
 * restore out of the call's path. A VM that dies while it waits is dropped and replaced; a
 * language whose restores keep failing stops being refilled (calls then restore or boot on
 * demand and report what went wrong).
 */

struct pool;

/* Per language: the VM to restore (vm.snapshot_dir set), or snapshot_dir NULL for a language
 * without a snapshot (never pooled). */
struct pool_config {
	unsigned size; /* idle VMs per language */
	struct sandbox_vm vm[AL_LANG_END];
	void (*log)(void *ctx, const char *message); /* restore failures */
	void *log_ctx;
};

/* Creates the pool and starts filling it. Returns 0 or -errno. */
int pool_start(uv_loop_t *loop, const struct pool_config *cfg, struct pool **out);
/* A ready VM for language, now the caller's (give it a request with sandbox_submit), or NULL
 * when none is waiting. Starts a replacement either way. */
struct sandbox *pool_take(struct pool *p, enum al_language language);
/* Kills every waiting VM; stopped(ctx) runs once all are gone and the pool is freed. */
void pool_stop(struct pool *p, void (*stopped)(void *ctx), void *ctx);
/* VMs waiting and VMs being restored, for language. */
void pool_counts(const struct pool *p, enum al_language language, unsigned *idle,
		 unsigned *starting);

#endif
