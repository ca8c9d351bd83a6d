/* A blocking QMP client for the snapshot maker, and the commands a restore sends (qmp.h). */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "qmp.h"

#define QMP_LINE_MAX 65536
#define MIGRATION_POLL_MS 20

/* RAM lives in the memory file (shared when saving, private when loading); the stream skips it */
#define IGNORE_SHARED                                                                              \
	"{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"              \
	"[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}\n"

int qmp_restore_commands(int fd_number, char *out, size_t out_len)
{
	int n = snprintf(out, out_len,
			 "{\"execute\":\"qmp_capabilities\"}\n" IGNORE_SHARED
			 "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"fd:%d\"}}\n",
			 fd_number);
	return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct qmp {
	int fd;
	int64_t deadline;
	char buf[QMP_LINE_MAX];
	size_t len;
};

/* Reads the next reply (skipping events and the greeting). Returns it (caller decrefs) or NULL
 * with *rc set. */
static json_t *read_reply(struct qmp *q, int *rc)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		if (nl) {
			*nl = '\0';
			json_t *msg = json_loads(q->buf, 0, NULL);
			size_t used = (size_t)(nl - q->buf) + 1;
			memmove(q->buf, q->buf + used, q->len - used);
			q->len -= used;
			if (msg && (json_object_get(msg, "return") || json_object_get(msg, "error")))
				return msg;
			json_decref(msg); /* greeting, event, or noise */
			continue;
		}
		int left = (int)(q->deadline - now_ms());
		struct pollfd pfd = {q->fd, POLLIN, 0};
		if (q->len == sizeof q->buf || left <= 0 || poll(&pfd, 1, left) <= 0) {
			*rc = -ETIMEDOUT;
			return NULL;
		}
		ssize_t n = read(q->fd, q->buf + q->len, sizeof q->buf - q->len);
		if (n <= 0) {
			*rc = n == 0 ? -EPIPE : -errno;
			return NULL;
		}
		q->len += (size_t)n;
	}
}

/* Sends one command and returns its "return" value (caller decrefs), or NULL with err set. */
static json_t *command(struct qmp *q, const char *text, char *err, size_t err_len)
{
	size_t len = strlen(text); /* "" when the command went out with send_fd() */
	if (len && write(q->fd, text, len) != (ssize_t)len) {
		snprintf(err, err_len, "QMP: cannot write to QEMU: %s", strerror(errno));
		return NULL;
	}
	int rc = 0;
	json_t *reply = read_reply(q, &rc);
	if (!reply) {
		snprintf(err, err_len, "QMP: no answer from QEMU: %s", strerror(-rc));
		return NULL;
	}
	json_t *ret = json_incref(json_object_get(reply, "return"));
	if (!ret) {
		const char *desc = json_string_value(
			json_object_get(json_object_get(reply, "error"), "desc"));
		snprintf(err, err_len, "QEMU refused %.40s: %s", text, desc ? desc : "(no reason)");
	}
	json_decref(reply);
	return ret;
}

/* getfd: hands QEMU the stream's fd (an outgoing migration takes only a named fd). */
static json_t *send_fd(struct qmp *q, int fd, char *err, size_t err_len)
{
	static const char text[] = "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"state\"}}\n";
	struct iovec iov = {(void *)text, sizeof text - 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = sizeof control.buf};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
	if (sendmsg(q->fd, &msg, 0) != (ssize_t)iov.iov_len) {
		snprintf(err, err_len, "QMP: cannot pass the state file to QEMU: %s", strerror(errno));
		return NULL;
	}
	return command(q, "", err, err_len);
}

int qmp_save_and_quit(int qmp_fd, int state_fd, int timeout_ms, char *err, size_t err_len)
{
	static struct qmp q; /* 64 KiB: not on the stack; the snapshot maker is single-threaded */
	q.fd = qmp_fd;
	q.len = 0;
	q.deadline = now_ms() + timeout_ms;
	const char *setup[] = {"{\"execute\":\"qmp_capabilities\"}\n", IGNORE_SHARED, NULL,
			       "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:state\"}}\n"};
	for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++) {
		json_t *ret = setup[i] ? command(&q, setup[i], err, err_len)
				       : send_fd(&q, state_fd, err, err_len);
		if (!ret)
			return -EIO;
		json_decref(ret);
	}
	/* QEMU stops the VM when the stream is complete: the RAM file is then final */
	for (;;) {
		json_t *ret = command(&q, "{\"execute\":\"query-migrate\"}\n", err, err_len);
		if (!ret)
			return -EIO;
		const char *status = json_string_value(json_object_get(ret, "status"));
		char desc[256];
		snprintf(desc, sizeof desc, "%s",
			 json_string_value(json_object_get(ret, "error-desc"))
				 ? json_string_value(json_object_get(ret, "error-desc"))
				 : "");
		bool done = status && !strcmp(status, "completed");
		bool failed = !status || !strcmp(status, "failed") || !strcmp(status, "cancelled");
		json_decref(ret);
		if (failed) {
			snprintf(err, err_len, "QEMU could not save the VM: %s",
				 desc[0] ? desc : "migration failed");
			return -EIO;
		}
		if (done)
			break;
		if (now_ms() > q.deadline) {
			snprintf(err, err_len, "QEMU did not finish saving the VM in time");
			return -ETIMEDOUT;
		}
		struct timespec pause = {0, MIGRATION_POLL_MS * 1000000L};
		nanosleep(&pause, NULL);
	}
	json_t *ret = command(&q, "{\"execute\":\"quit\"}\n", err, err_len);
	json_decref(ret);
	return 0;
}
