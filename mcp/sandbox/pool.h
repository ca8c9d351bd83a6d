/* The warm pool: per language, up to N VMs restored from the language's snapshot and waiting
 * for a request (the guest idles in HLT). A call takes one and the pool restores a replacement in
 * the background, starting a moment later (REFILL_AFTER_TAKE_MS) so as not to slow that call
 * down. Every VM still serves exactly one call and is destroyed; the pool only moves the
 * restore out of the call's path. A VM that dies while it waits is dropped and replaced; a
 * language whose restores keep failing stops being refilled (calls then restore or boot on
 * demand and report what went wrong).
 */
#ifndef AIRLOCK_POOL_H
#define AIRLOCK_POOL_H

#include <stdbool.h>
#include <uv.h>

#include "proto.h"
#include "sandbox.h"

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
