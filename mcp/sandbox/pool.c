/* The warm pool (see sandbox.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"

#define MAX_POOL_SIZE 64
#define FAILURES_BEFORE_GIVING_UP 3
#define REFILL_RETRY_MS 1000 /* after a failed restore, before the next try */
/* A VM taken from the pool is replaced this much later, once its call is mostly done: a restore
 * started at once competes with that call for the host's CPUs (tcg on 2 cores: a warm
 * execute_code took 28 ms median with the restore beside it, 23 ms with it 50 ms later). */
#define REFILL_AFTER_TAKE_MS 50

struct member {
	struct pool *pool;
	struct sandbox *sb;
	enum al_language language;
	bool ready;
	struct member *next;
};

struct lane {
	struct member *members; /* idle and starting; the oldest ready one is served first */
	unsigned idle, starting;
	unsigned failures; /* in a row */
};

struct pool {
	uv_loop_t *loop;
	struct pool_config cfg;
	struct lane lanes[AL_LANG_END];
	uv_timer_t retry; /* the next refill: after a failure, or after a take */
	bool stopping, timer_closed;
	void (*stopped)(void *ctx);
	void *stopped_ctx;
};

static void refill(struct pool *p);

static void on_retry(uv_timer_t *timer)
{
	refill(timer->data);
}

static void logf_pool(struct pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logf_pool(struct pool *p, const char *fmt, ...)
{
	char msg[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (p->cfg.log)
		p->cfg.log(p->cfg.log_ctx, msg);
}

static void unlink_member(struct lane *lane, struct member *m)
{
	for (struct member **pp = &lane->members; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	if (m->ready)
		lane->idle--;
	else
		lane->starting--;
}

static void maybe_finish_stop(struct pool *p)
{
	if (!p->stopping || !p->timer_closed)
		return;
	for (int l = AL_LANG_FIRST; l < AL_LANG_END; l++)
		if (p->lanes[l].members)
			return;
	void (*stopped)(void *) = p->stopped;
	void *ctx = p->stopped_ctx;
	free(p);
	if (stopped)
		stopped(ctx);
}

static void on_member_ready(struct sandbox *sb, void *ctx)
{
	(void)sb;
	struct member *m = ctx;
	struct lane *lane = &m->pool->lanes[m->language];
	m->ready = true;
	lane->starting--;
	lane->idle++;
	lane->failures = 0;
}

/* A pooled VM ended before anyone took it: it failed to restore, died, or was stopped. */
static void on_member_done(struct sandbox *sb, const struct sandbox_result *res, void *ctx)
{
	(void)sb;
	struct member *m = ctx;
	struct pool *p = m->pool;
	struct lane *lane = &p->lanes[m->language];
	unlink_member(lane, m);
	if (!p->stopping && res->error != -ECANCELED) {
		lane->failures++;
		logf_pool(p, "warm pool: a %s VM ended while waiting: %s%s",
			  sandbox_language_name(m->language), res->message,
			  lane->failures >= FAILURES_BEFORE_GIVING_UP
				  ? " (giving up on this language's pool; calls restore on demand)"
				  : "");
		if (lane->failures < FAILURES_BEFORE_GIVING_UP)
			uv_timer_start(&p->retry, on_retry, REFILL_RETRY_MS, 0);
	}
	free(m);
	maybe_finish_stop(p);
}

static void start_member(struct pool *p, enum al_language language)
{
	struct member *m = calloc(1, sizeof *m);
	if (!m)
		return;
	m->pool = p;
	m->language = language;
	char err[512];
	if (sandbox_spawn(p->loop, &p->cfg.vm[language], on_member_ready, on_member_done, m, &m->sb,
			  err, sizeof err) != 0) {
		logf_pool(p, "warm pool: cannot restore a VM: %s", err);
		p->lanes[language].failures++;
		free(m);
		return;
	}
	struct lane *lane = &p->lanes[language];
	m->next = lane->members;
	lane->members = m;
	lane->starting++;
}

static void refill(struct pool *p)
{
	if (p->stopping)
		return;
	for (int l = AL_LANG_FIRST; l < AL_LANG_END; l++) {
		struct lane *lane = &p->lanes[l];
		if (!p->cfg.vm[l].snapshot_dir)
			continue;
		while (lane->idle + lane->starting < p->cfg.size &&
		       lane->failures < FAILURES_BEFORE_GIVING_UP) {
			unsigned before = lane->starting;
			start_member(p, (enum al_language)l);
			if (lane->starting == before)
				break; /* could not even spawn: the failure count decides later */
		}
	}
}

int pool_start(uv_loop_t *loop, const struct pool_config *cfg, struct pool **out)
{
	if (cfg->size > MAX_POOL_SIZE)
		return -EINVAL;
	struct pool *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->loop = loop;
	p->cfg = *cfg;
	uv_timer_init(loop, &p->retry);
	p->retry.data = p;
	refill(p);
	*out = p;
	return 0;
}

struct sandbox *pool_take(struct pool *p, enum al_language language)
{
	struct lane *lane = &p->lanes[language];
	struct member *oldest = NULL;
	for (struct member *m = lane->members; m; m = m->next)
		if (m->ready && sandbox_idle(m->sb)) /* not one that died and is not yet dropped */
			oldest = m; /* members are pushed at the front: the last ready is the oldest */
	struct sandbox *sb = NULL;
	if (oldest) {
		unlink_member(lane, oldest);
		sb = oldest->sb;
		free(oldest);
	}
	if (!p->stopping && !uv_is_active((uv_handle_t *)&p->retry)) /* else a refill is due */
		uv_timer_start(&p->retry, on_retry, REFILL_AFTER_TAKE_MS, 0);
	return sb;
}

static void on_retry_closed(uv_handle_t *h)
{
	struct pool *p = h->data;
	p->timer_closed = true;
	maybe_finish_stop(p);
}

void pool_stop(struct pool *p, void (*stopped)(void *ctx), void *ctx)
{
	if (p->stopping)
		return;
	p->stopping = true;
	p->stopped = stopped;
	p->stopped_ctx = ctx;
	uv_timer_stop(&p->retry);
	uv_close((uv_handle_t *)&p->retry, on_retry_closed);
	for (int l = AL_LANG_FIRST; l < AL_LANG_END; l++)
		for (struct member *m = p->lanes[l].members; m; m = m->next)
			sandbox_cancel(m->sb); /* on_member_done frees it, later */
}

void pool_counts(const struct pool *p, enum al_language language, unsigned *idle,
		 unsigned *starting)
{
	*idle = p->lanes[language].idle;
	*starting = p->lanes[language].starting;
}
