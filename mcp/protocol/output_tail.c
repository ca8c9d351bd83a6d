/* What a progress notification shows of a running program's output: the lines completed since
 * the previous one, the newest OUTPUT_TAIL_LINES of them, stderr's marked (protocol.h).
 *
 * Output arrives in pieces that split lines (and characters) anywhere: each stream keeps its
 * unfinished line, cut at OUTPUT_TAIL_LINE_MAX bytes; a line is complete at its newline. Lines are
 * kept as received and made valid UTF-8 only when formatted (a character split across pieces is
 * whole by then).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* Appends one complete line (without its newline) to the ring of newest lines. */
static void keep_line(struct output_tail *t, uint32_t stream, const uint8_t *text, size_t len,
		      bool cut)
{
	struct output_tail_line *l = &t->lines[t->next % OUTPUT_TAIL_LINES];
	l->stream = stream;
	l->len = len;
	l->cut = cut;
	memcpy(l->text, text, len);
	t->next++;
}

void output_tail_add(struct output_tail *t, uint32_t stream, const uint8_t *data, size_t len)
{
	struct output_tail_partial *p = &t->partial[stream == AL_STREAM_STDERR];
	t->bytes[stream == AL_STREAM_STDERR] += len;
	while (len > 0) {
		const uint8_t *nl = memchr(data, '\n', len);
		size_t piece = nl ? (size_t)(nl - data) : len;
		size_t room = OUTPUT_TAIL_LINE_MAX - p->len;
		size_t take = piece < room ? piece : room;
		memcpy(p->text + p->len, data, take);
		p->len += take;
		p->cut |= take < piece;
		if (!nl)
			break;
		keep_line(t, stream, p->text, p->len, p->cut);
		p->len = 0;
		p->cut = false;
		data = nl + 1;
		len -= piece + 1;
	}
}

int output_tail_take(struct output_tail *t, char *out, size_t out_len)
{
	uint64_t fresh = t->next - t->shown;
	size_t used = 0;
	out[0] = '\0';
	if (fresh == 0)
		return 0;
	uint64_t first = fresh > OUTPUT_TAIL_LINES ? t->next - OUTPUT_TAIL_LINES : t->shown;
	if (first > t->shown)
		used += (size_t)snprintf(out, out_len, "(%llu earlier lines not shown)\n",
					 (unsigned long long)(first - t->shown));
	for (uint64_t i = first; i < t->next && used < out_len; i++) {
		const struct output_tail_line *l = &t->lines[i % OUTPUT_TAIL_LINES];
		size_t text_len;
		char *text = utf8_sanitize(l->text, l->len, &text_len);
		if (!text)
			return -1;
		used += (size_t)snprintf(out + used, out_len - used, "%s%s%s\n",
					 l->stream == AL_STREAM_STDERR ? "[stderr] " : "", text,
					 l->cut ? " [...]" : "");
		free(text);
	}
	if (used >= out_len) { /* cut: end on a whole character (all before the cut is valid) */
		size_t end = out_len - 1, i = 0, n;
		while (i < end && (n = utf8_sequence((const uint8_t *)out + i, end - i)) != 0)
			i += n;
		out[i] = '\0';
	}
	t->shown = t->next;
	return 0;
}
