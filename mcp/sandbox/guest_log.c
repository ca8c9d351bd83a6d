/* The guest's log, as the host reads it: its end for an error message, all of it for --verbose.
 * Its words are the guest's, which may be hostile: quoted, labelled, and cut.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox_internal.h"

/* --verbose: the end of the guest's log, at most VERBOSE_LOG_MAX bytes of it (a guest may write
 * up to the log's own limit, tens of MiB). */
#define VERBOSE_LOG_MAX (256u << 10)

/* Guest text (the agent's ERROR, the boot log) goes into host-worded messages only quoted and
 * labelled as the guest's, so that a hostile guest cannot pass its words off as airlock's:
 * printable ASCII, a double quote turned into a single one, at most out_len - 1 bytes. */
void sandbox_quote_guest_text(const char *text, size_t len, char *out, size_t out_len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < out_len; i++) {
		char c = text[i];
		out[o++] = c == '"' ? '\'' : (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	out[o] = '\0';
}

/* Reads up to len - 1 bytes of the log from offset into buf, NUL-terminated; returns how many. */
static size_t read_log(const struct sandbox *sb, off_t offset, char *buf, size_t len)
{
	size_t n = 0;
	while (n < len - 1) {
		ssize_t got = pread(sb->log_fd, buf + n, len - 1 - n, offset + (off_t)n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	buf[n] = '\0';
	return n;
}

static off_t log_size(const struct sandbox *sb)
{
	struct stat st;
	return sb->log_fd >= 0 && fstat(sb->log_fd, &st) == 0 ? st.st_size : -1;
}

void sandbox_log_tail(const struct sandbox *sb, char *out, size_t out_len)
{
	out[0] = '\0';
	off_t size = log_size(sb);
	if (size < 0)
		return;
	/* the log's end: a panic's call trace, and airlock-vmm's own record of the VM's end
	 * after it (vmm/kvm_report.c), take several KiB */
	static _Thread_local char buf[64 << 10]; /* a snapshot is made on a thread of its own */
	off_t from = size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0;
	size_t n = read_log(sb, from, buf, sizeof buf);
	/* A panic says the most; otherwise the last non-empty line. */
	char *line = strstr(buf, "Kernel panic");
	if (!line) {
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		line = strrchr(buf, '\n');
		line = line ? line + 1 : buf;
	}
	sandbox_quote_guest_text(line, strcspn(line, "\r\n"), out, out_len);
}

void sandbox_copy_log_to_stderr(const struct sandbox *sb)
{
	off_t size = log_size(sb);
	if (size < 0)
		return;
	fprintf(stderr, "---- guest boot log ----\n");
	off_t at = 0;
	if (size > (off_t)VERBOSE_LOG_MAX) {
		fprintf(stderr, "[%lld bytes before these left out]\n",
			(long long)(size - (off_t)VERBOSE_LOG_MAX));
		at = size - (off_t)VERBOSE_LOG_MAX;
	}
	char buf[4096];
	size_t n;
	while ((n = read_log(sb, at, buf, sizeof buf)) > 0) {
		fwrite(buf, 1, n, stderr);
		at += (off_t)n;
	}
	fprintf(stderr, "---- end of guest boot log ----\n");
}
