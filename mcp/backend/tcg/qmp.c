/* The commands a restore sends, and a save driven by QEMU's events (qmp.h). */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qmp.h"

#define QMP_LINE_MAX 65536

/* RAM lives in the memory file (shared when saving, private when loading); the stream skips it */
#define IGNORE_SHARED                                                                              \
	"{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"              \
	"[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}\n"
/* saving: QEMU says when the stream is complete (a MIGRATION event), rather than being asked */
#define MIGRATION_EVENTS                                                                           \
	"{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"              \
	"[{\"capability\":\"events\",\"state\":true}]}}\n"

int qmp_restore_commands(int fd_number, char *out, size_t out_len)
{
	int n = snprintf(out, out_len,
			 "{\"execute\":\"qmp_capabilities\"}\n" IGNORE_SHARED
			 "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"fd:%d\"}}\n",
			 fd_number);
	return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

struct qmp_save {
	int fd;
	bool quit_sent;
	size_t len;
	char line[QMP_LINE_MAX];
};

static int write_all(int fd, const char *text)
{
	size_t len = strlen(text);
	while (len > 0) {
		ssize_t n = write(fd, text, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		text += n;
		len -= (size_t)n;
	}
	return 0;
}

/* getfd: hands QEMU the stream's fd (an outgoing migration takes only a named fd); the fd rides
 * on the command's bytes, and QEMU's monitor keeps it until the command runs. */
static int send_fd(int qmp_fd, int fd)
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
	return sendmsg(qmp_fd, &msg, 0) == (ssize_t)iov.iov_len ? 0 : -errno;
}

int qmp_save_start(int qmp_fd, int state_fd, bool restored, struct qmp_save **out, char *err,
		   size_t err_len)
{
	struct qmp_save *save = calloc(1, sizeof *save);
	if (!save) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	save->fd = qmp_fd;
	/* a restored VM's monitor was set up by its restore commands (x-ignore-shared included) */
	int rc = write_all(qmp_fd, restored ? MIGRATION_EVENTS
					    : "{\"execute\":\"qmp_capabilities\"}\n" IGNORE_SHARED
					      MIGRATION_EVENTS);
	if (rc == 0)
		rc = send_fd(qmp_fd, state_fd);
	if (rc == 0)
		rc = write_all(qmp_fd,
			       "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:state\"}}\n");
	if (rc) {
		snprintf(err, err_len, "QMP: cannot write to QEMU: %s", strerror(-rc));
		free(save);
		return rc;
	}
	*out = save;
	return 0;
}

/* One line from QEMU: a command's answer, an event, or its greeting. */
static int take_line(struct qmp_save *save, const char *text, char *err, size_t err_len)
{
	json_t *msg = json_loads(text, 0, NULL);
	if (!msg)
		return 0; /* not QMP: noise */
	int rc = 0;
	json_t *error = json_object_get(msg, "error");
	const char *event = json_string_value(json_object_get(msg, "event"));
	const char *status =
		json_string_value(json_object_get(json_object_get(msg, "data"), "status"));
	if (error) {
		const char *desc = json_string_value(json_object_get(error, "desc"));
		snprintf(err, err_len, "QEMU refused a command while saving: %s",
			 desc ? desc : "(no reason)");
		rc = -EIO;
	} else if (event && !strcmp(event, "MIGRATION") && status &&
		   (!strcmp(status, "failed") || !strcmp(status, "cancelled"))) {
		snprintf(err, err_len, "QEMU could not save the VM: migration %s", status);
		rc = -EIO;
	} else if (event && !strcmp(event, "MIGRATION") && status && !strcmp(status, "completed") &&
		   !save->quit_sent) {
		/* QEMU stopped the VM with the stream complete: the RAM file is final */
		save->quit_sent = true;
		if ((rc = write_all(save->fd, "{\"execute\":\"quit\"}\n")) != 0)
			snprintf(err, err_len, "QMP: cannot tell QEMU to quit: %s", strerror(-rc));
	}
	json_decref(msg);
	return rc;
}

int qmp_save_progress(struct qmp_save *save, const char *data, size_t len, char *err,
		      size_t err_len)
{
	while (len > 0) {
		size_t room = sizeof save->line - 1 - save->len;
		if (room == 0) {
			snprintf(err, err_len, "QMP: a line from QEMU longer than %u bytes",
				 QMP_LINE_MAX);
			return -EIO;
		}
		size_t take = len < room ? len : room;
		memcpy(save->line + save->len, data, take);
		save->len += take;
		data += take;
		len -= take;
		char *nl;
		while ((nl = memchr(save->line, '\n', save->len)) != NULL) {
			*nl = '\0';
			int rc = take_line(save, save->line, err, err_len);
			size_t used = (size_t)(nl - save->line) + 1;
			memmove(save->line, save->line + used, save->len - used);
			save->len -= used;
			if (rc)
				return rc;
		}
	}
	return 0;
}
