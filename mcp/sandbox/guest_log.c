/* The guest's log, as the host reads it: its end for an error message, all of it for --verbose.
 * Its words are the guest's, which may be hostile: quoted, labelled, and cut.
 */
#include <stdio.h>
#include <string.h>

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

void sandbox_log_tail(const struct sandbox *sb, char *out, size_t out_len)
{
	out[0] = '\0';
	FILE *f = fopen(sb->serial_log, "r");
	if (!f)
		return;
	/* the log's end: a panic's call trace, and airlock-vmm's own record of the VM's end
	 * after it (vmm/kvm_report.c), take several KiB */
	static _Thread_local char buf[64 << 10]; /* a snapshot is made on a thread of its own */
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
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
	FILE *f = fopen(sb->serial_log, "r");
	if (!f)
		return;
	char buf[4096];
	size_t n;
	fprintf(stderr, "---- guest boot log ----\n");
	if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)VERBOSE_LOG_MAX) {
		fprintf(stderr, "[%ld bytes before these left out]\n",
			ftell(f) - (long)VERBOSE_LOG_MAX);
		fseek(f, -(long)VERBOSE_LOG_MAX, SEEK_END);
	} else {
		rewind(f);
	}
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "---- end of guest boot log ----\n");
	fclose(f);
}
