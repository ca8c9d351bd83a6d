/* One VM's life, on a libuv loop: spawn the backend's VM process with the host channel, wait for
 * the agent's READY, send the run request, collect output within the caps, enforce the boot and
 * run deadlines, kill the VM, and report one result. Every VM serves exactly one run. Making a
 * snapshot is the same life with the backend's save in place of the run.
 *
 * This is sandbox/'s face: the protocol and the CLI include it; snapshot_cache.h, pool.h and
 * images.h are the rest of the part's interface.
 */
#ifndef AIRLOCK_SANDBOX_H
#define AIRLOCK_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "backend.h"
#include "proto.h"

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
	/* Restore from this snapshot (snapshot_cache.h) instead of booting, or NULL. The snapshot's
	 * language is the only one its VM runs. */
	const char *snapshot_dir;
	const char *snapshot_language;
	/* the snapshot's facts (snapshot_cache.h): the TSC rate a restore repeats (vm_spec), and the
	 * memory file's change time (no request runs once it changed) */
	unsigned guest_tsc_khz;
	int64_t snapshot_memory_ctime_ns;
	/* The VM's log (its console and the VM program's messages) goes here and is kept, or, when
	 * NULL, to a temporary file removed with the VM. */
	const char *log_path;
};

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

#endif
