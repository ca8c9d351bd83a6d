/* The setup records of a RUN (proto.h): the program's extra environment, the extra CA
 * certificates and the steps to run before the program, parsed into struct setup; and the files
 * they become in the run directory, which the waiting interpreter reads at go.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

/* The system's bundle, which the extra CA certificates join. */
#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* NAME=VALUE with NAME of [A-Za-z0-9_] (not starting with a digit) and VALUE free of newlines
 * and single quotes: the environment file is read by bash (as NAME='VALUE'), python and C. */
static int env_entry_ok(const char *s, size_t len)
{
	const char *eq = memchr(s, '=', len);
	if (!eq || eq == s || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (const char *p = s; p < eq; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	for (const char *p = eq + 1; p < s + len; p++)
		if (*p == '\n' || *p == '\'' || *p == '\0')
			return 0;
	return 1;
}

/* A step's value: struct al_step_command, then argv as NUL-terminated strings. */
static int parse_step(struct setup_step *step, char *value, size_t len)
{
	struct al_step_command cmd;
	if (len < sizeof cmd + 2 || value[len - 1] != '\0')
		return -EPROTO;
	memcpy(&cmd, value, sizeof cmd);
	if (cmd.kind != AL_STEP_INSTALL && cmd.kind != AL_STEP_SCAN)
		return -EPROTO;
	step->kind = cmd.kind;
	step->fail_status = cmd.fail_status;
	size_t argc = 0;
	for (char *p = value + sizeof cmd; p < value + len; p += strlen(p) + 1) {
		if (argc + 1 >= SETUP_MAX_ARGS)
			return -EPROTO;
		step->argv[argc++] = p;
	}
	step->argv[argc] = NULL;
	return step->argv[0][0] == '/' ? 0 : -EPROTO;
}

int setup_parse(const uint8_t *data, size_t len, struct setup *s)
{
	*s = (struct setup){0};
	if (len == 0)
		return 0;
	if (len > AL_SETUP_MAX_LEN)
		return -EPROTO;
	/* a copy with room for a NUL after each value */
	s->storage = malloc(len + len / sizeof(struct al_setup_record) + 1);
	if (!s->storage)
		return -ENOMEM;
	char *out = s->storage;
	size_t at = 0;
	while (at < len) {
		struct al_setup_record rec;
		if (len - at < sizeof rec)
			return -EPROTO;
		memcpy(&rec, data + at, sizeof rec);
		at += sizeof rec;
		if (rec.length > len - at)
			return -EPROTO;
		char *value = out;
		memcpy(value, data + at, rec.length);
		value[rec.length] = '\0';
		out += rec.length + 1;
		at += rec.length;
		switch (rec.kind) {
		case AL_SETUP_ENV:
			if (s->n_env >= SETUP_MAX_ENV || !env_entry_ok(value, rec.length))
				return -EPROTO;
			s->env[s->n_env++] = value;
			break;
		case AL_SETUP_CA:
			if (s->ca)
				return -EPROTO;
			s->ca = value;
			s->ca_len = rec.length;
			break;
		case AL_SETUP_STEP:
			if (s->n_steps >= SETUP_MAX_STEPS ||
			    parse_step(&s->steps[s->n_steps], value, rec.length) != 0)
				return -EPROTO;
			s->n_steps++;
			break;
		default:
			return -EPROTO;
		}
	}
	s->env[s->n_env] = NULL;
	return 0;
}

void setup_free(struct setup *s)
{
	free(s->storage);
	*s = (struct setup){0};
}

static int write_all_to(int fd, const void *data, size_t len)
{
	int rc = fd_write_all(fd, data, len);
	return rc;
}

/* The system bundle and the extra certificates, into one file the program's tools are told of. */
static int write_ca_bundle(const struct setup *s)
{
	int out = open(SETUP_CA_BUNDLE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return -errno;
	int rc = 0, in = open(SYSTEM_CA_BUNDLE, O_RDONLY | O_CLOEXEC);
	if (in >= 0) {
		char buf[16384];
		ssize_t n;
		while (rc == 0 && (n = read(in, buf, sizeof buf)) > 0)
			rc = write_all_to(out, buf, (size_t)n);
		close(in);
	}
	if (rc == 0)
		rc = write_all_to(out, "\n", 1);
	if (rc == 0)
		rc = write_all_to(out, s->ca, s->ca_len);
	if (close(out) != 0 && rc == 0)
		rc = -errno;
	if (rc)
		return rc;
	out = open(SETUP_CA_EXTRA, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return -errno;
	rc = write_all_to(out, s->ca, s->ca_len);
	if (close(out) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

int setup_write_files(const struct setup *s)
{
	if (s->ca) {
		int rc = write_ca_bundle(s);
		if (rc)
			return rc;
	}
	if (s->n_env == 0)
		return 0;
	int fd = open(SETUP_ENV_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int rc = 0;
	for (size_t i = 0; i < s->n_env && rc == 0; i++) {
		const char *eq = strchr(s->env[i], '=');
		rc = write_all_to(fd, s->env[i], (size_t)(eq - s->env[i]) + 1);
		if (rc == 0)
			rc = write_all_to(fd, "'", 1);
		if (rc == 0)
			rc = write_all_to(fd, eq + 1, strlen(eq + 1));
		if (rc == 0)
			rc = write_all_to(fd, "'\n", 2);
	}
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	return rc;
}
