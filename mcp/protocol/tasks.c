/* The tasks extension of MCP 2026-07-28 (io.modelcontextprotocol/tasks): an execute_code call
 * that may run longer than a call's default timeout, from a request that declares the extension,
 * is answered at once with a task; the client polls tasks/get for its status and, once it is
 * completed, its result, or ends it with tasks/cancel. Tasks belong to the client that made
 * them (HTTP: the token), are kept for a while after they end, and are bounded per client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol.h"

#define TASK_ID_LEN 32
/* a task is kept this long after its call could at most have ended */
#define TASK_KEEP_AFTER_MS (10 * 60 * 1000)
#define TASK_POLL_INTERVAL_MS 1000

enum task_status { TASK_WORKING, TASK_COMPLETED, TASK_CANCELLED };
static const char *const status_names[] = {"working", "completed", "cancelled"};

struct task {
	char id[TASK_ID_LEN + 1];
	enum task_status status;
	struct call *call; /* while working */
	json_t *result;    /* once completed */
	int64_t created_ms, updated_ms, ttl_ms;
	struct task *next;
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void iso_time(int64_t ms, char out[32])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

static void task_free(struct task *t)
{
	json_decref(t->result);
	free(t);
}

/* Forgets the client's ended tasks past their ttl. */
static void sweep(struct client *c)
{
	int64_t now = wall_ms();
	for (struct task **p = &c->tasks; *p;) {
		struct task *t = *p;
		if (t->status != TASK_WORKING && now > t->created_ms + t->ttl_ms) {
			*p = t->next;
			c->n_tasks--;
			task_free(t);
		} else {
			p = &t->next;
		}
	}
}

static struct task *find(struct client *c, const char *id)
{
	sweep(c);
	for (struct task *t = c->tasks; id && t; t = t->next)
		if (strcmp(t->id, id) == 0)
			return t;
	return NULL;
}

bool task_possible(const struct call *call)
{
	if (!call->tasks_ok || !call->x)
		return false;
	sweep(call->client);
	return call->client->n_tasks < TASKS_PER_CLIENT_MAX;
}

static json_t *task_json(const struct task *t)
{
	char created[32], updated[32];
	iso_time(t->created_ms, created);
	iso_time(t->updated_ms, updated);
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:i}", "taskId", t->id, "status",
			      status_names[t->status], "createdAt", created, "lastUpdatedAt",
			      updated, "ttlMs", (json_int_t)t->ttl_ms, "pollIntervalMs",
			      TASK_POLL_INTERVAL_MS);
	if (j && t->status == TASK_WORKING)
		json_object_set_new(j, "statusMessage", json_string("The program is running."));
	if (j && t->status == TASK_COMPLETED && t->result)
		json_object_set(j, "result", t->result);
	return j;
}

int task_begin(struct call *call, double timeout_s)
{
	struct task *t = calloc(1, sizeof *t);
	if (!t || random_hex(t->id, TASK_ID_LEN / 2) != 0) {
		free(t);
		return -1;
	}
	t->status = TASK_WORKING;
	t->call = call;
	t->created_ms = t->updated_ms = wall_ms();
	t->ttl_ms = (int64_t)(timeout_s * 1000) + TASK_KEEP_AFTER_MS;
	struct client *c = call->client;
	t->next = c->tasks;
	c->tasks = t;
	c->n_tasks++;
	/* made before it is announced: a tasks/get right after the answer finds it */
	struct exchange *x = call->x;
	call->x = NULL;
	if (x->call == call)
		x->call = NULL;
	call->task = t;
	json_t *created = task_json(t);
	if (created)
		json_object_set_new(created, "resultType", json_string("task"));
	reply_result(x, call->version, call->id, created);
	return 0;
}

void task_finish(struct call *call, json_t *result)
{
	struct task *t = call->task;
	t->call = NULL;
	t->updated_ms = wall_ms();
	if (result) {
		t->status = TASK_COMPLETED;
		t->result = result;
	} else {
		t->status = TASK_CANCELLED;
	}
}

void tasks_forget(struct client *c)
{
	while (c->tasks) {
		struct task *t = c->tasks;
		c->tasks = t->next;
		if (t->call)
			t->call->task = NULL;
		task_free(t);
	}
	c->n_tasks = 0;
}

bool task_method(struct server *srv, struct exchange *x, const char *version, const char *method,
		 json_t *id, json_t *params, bool declared)
{
	(void)srv;
	bool get = !strcmp(method, "tasks/get"), cancel = !strcmp(method, "tasks/cancel");
	bool update = !strcmp(method, "tasks/update");
	if (!get && !cancel && !update)
		return false;
	if (!declared) {
		reply_error(x, id, RPC_MISSING_CAPABILITY, "tasks/* needs the " TASKS_EXTENSION " extension in "
					   "_meta's clientCapabilities",
			    json_pack("{s:{s:{s:{}}}}", "requiredCapabilities", "extensions",
				      TASKS_EXTENSION));
		return true;
	}
	struct task *t = find(x->client, json_string_value(json_object_get(params, "taskId")));
	if (!t) {
		reply_error(x, id, RPC_INVALID_PARAMS, "Failed to retrieve task: Task not found",
			    NULL);
		return true;
	}
	if (get) {
		reply_result(x, version, id, task_json(t));
		return true;
	}
	if (cancel && t->status == TASK_WORKING && t->call) {
		t->status = TASK_CANCELLED; /* said now; the VM is killed on its way */
		t->updated_ms = wall_ms();
		call_cancel(t->call);
	}
	reply_result(x, version, id, json_object()); /* tasks/update: nothing ever waits on input */
	return true;
}
