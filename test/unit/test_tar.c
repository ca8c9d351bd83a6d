/* The agent's ustar reader and writer, checked against libarchive on the host side: what the
 * host packs the agent unpacks, what the agent packs the host reads, and hostile archives are
 * refused without writing outside the target directory. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "sandbox.h"
#include "check.h"

static char dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void fresh_dir(void)
{
	if (dir[0])
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	strcpy(dir, "/tmp/airlock-test-tar-XXXXXX");
	if (!mkdtemp(dir))
		abort();
}

static int file_equals(const char *rel, const char *content)
{
	char path[256], buf[4096];
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf);
	close(fd);
	return n == (ssize_t)strlen(content) && memcmp(buf, content, (size_t)n) == 0;
}

static void host_archive_unpacks_in_agent(void)
{
	fresh_dir();
	struct file_list files = {0};
	char longpath[220];
	memset(longpath, 'd', sizeof longpath);
	memcpy(longpath + 120, "/", 1);
	longpath[sizeof longpath - 1] = '\0'; /* 120 + 1 + 98: needs ustar's prefix field */
	CHECK(file_list_add(&files, "a.txt", "alpha", 5, true) == 0);
	CHECK(file_list_add(&files, "sub/dir/b.bin", "\0\1\2", 3, true) == 0);
	CHECK(file_list_add(&files, "empty", "", 0, true) == 0);
	CHECK(file_list_add(&files, longpath, "long", 4, true) == 0);
	uint8_t *tar;
	size_t len;
	char err[256];
	CHECK(archive_pack(&files, &tar, &len, err, sizeof err) == 0);
	const char *bad = NULL;
	CHECK(tar_extract(tar, len, dir, getuid(), getgid(), &bad) == 0);
	CHECK(bad == NULL);
	CHECK(file_equals("a.txt", "alpha"));
	CHECK(file_equals("empty", ""));
	CHECK(file_equals(longpath, "long"));
	char path[300];
	struct stat st;
	snprintf(path, sizeof path, "%s/sub/dir/b.bin", dir);
	CHECK(stat(path, &st) == 0 && st.st_size == 3);
	free(tar);
	file_list_free(&files);
}

static void agent_archive_reads_on_host(void)
{
	struct tar_writer w = {0};
	char longpath[200];
	memset(longpath, 'x', sizeof longpath);
	memcpy(longpath + 100, "/", 1); /* prefix 100 bytes, name 98 */
	longpath[sizeof longpath - 1] = '\0';
	CHECK(tar_add_file(&w, "plot.png", "\x89PNG", 4) == 0);
	CHECK(tar_add_file(&w, "deep/er/r.csv", "a,b\n", 4) == 0);
	CHECK(tar_add_file(&w, longpath, "y", 1) == 0);
	char toolong[300];
	memset(toolong, 'z', sizeof toolong);
	toolong[sizeof toolong - 1] = '\0';
	CHECK(tar_add_file(&w, toolong, "", 0) == -ENAMETOOLONG);
	CHECK(tar_finish(&w) == 0);

	struct file_list out = {0};
	CHECK(archive_unpack(w.data, w.len, 100, UINT64_MAX, &out) == 0);
	CHECK(out.len == 3);
	if (out.len == 3) {
		CHECK(strcmp(out.items[0].path, "plot.png") == 0 && out.items[0].size == 4);
		CHECK(memcmp(out.items[0].data, "\x89PNG", 4) == 0);
		CHECK(strcmp(out.items[1].path, "deep/er/r.csv") == 0);
		CHECK(strcmp(out.items[2].path, longpath) == 0);
	}
	file_list_free(&out);
	/* max_files bounds what the host takes */
	CHECK(archive_unpack(w.data, w.len, 1, UINT64_MAX, &out) == 0 && out.len == 1);
	file_list_free(&out);
	tar_writer_free(&w);
}

/* Builds a one-member archive with the agent's writer, then lets the test corrupt it. */
static void one_member(struct tar_writer *w, const char *path)
{
	memset(w, 0, sizeof *w);
	tar_add_file(w, path, "data", 4);
	tar_finish(w);
}

static void set_typeflag_and_fix_checksum(struct tar_writer *w, char type)
{
	w->data[156] = (uint8_t)type;
	memset(w->data + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += w->data[i];
	snprintf((char *)w->data + 148, 8, "%06o", sum);
	w->data[155] = ' ';
}

static void agent_refuses_hostile_archives(void)
{
	const char *paths[] = {"../escape", "/etc/passwd", "a/../../b", "..", "ok/.."};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		fresh_dir();
		struct tar_writer w;
		one_member(&w, paths[i]);
		const char *bad = NULL;
		CHECK(tar_extract(w.data, w.len, dir, getuid(), getgid(), &bad) == -EINVAL);
		CHECK(bad != NULL);
		tar_writer_free(&w);
	}
	fresh_dir();
	struct tar_writer w;
	const char *bad;

	one_member(&w, "link");
	set_typeflag_and_fix_checksum(&w, '2'); /* symlink */
	CHECK(tar_extract(w.data, w.len, dir, getuid(), getgid(), &bad) == -EINVAL);
	set_typeflag_and_fix_checksum(&w, '3'); /* character device */
	CHECK(tar_extract(w.data, w.len, dir, getuid(), getgid(), &bad) == -EINVAL);
	set_typeflag_and_fix_checksum(&w, 'x'); /* pax header */
	CHECK(tar_extract(w.data, w.len, dir, getuid(), getgid(), &bad) == -EINVAL);
	tar_writer_free(&w);

	one_member(&w, "f");
	w.data[0] = 'g'; /* checksum no longer matches */
	CHECK(tar_extract(w.data, w.len, dir, getuid(), getgid(), &bad) == -EPROTO);
	tar_writer_free(&w);

	one_member(&w, "f");
	memcpy(w.data + 124, "77777777777", 11); /* size far past the buffer */
	set_typeflag_and_fix_checksum(&w, '0');
	CHECK(tar_extract(w.data, w.len, dir, getuid(), getgid(), &bad) == -EPROTO);
	tar_writer_free(&w);

	one_member(&w, "f");
	CHECK(tar_extract(w.data, 700, dir, getuid(), getgid(), &bad) == -EPROTO); /* truncated */
	CHECK(tar_extract(w.data, 0, dir, getuid(), getgid(), &bad) == 0);          /* empty */
	tar_writer_free(&w);
}

static void run_request_lengths_must_add_up(void)
{
	uint8_t payload[sizeof(struct al_run) + 6];
	struct al_run h = {.version = AL_PROTO_VERSION, .language = AL_LANG_BASH, .code_len = 4,
			   .stdin_len = 2, .output_window = 256 << 10};
	memcpy(payload, &h, sizeof h);
	memcpy(payload + sizeof h, "echoin", 6);
	struct run_request req;
	CHECK(run_request_parse(payload, sizeof payload, &req) == 0);
	CHECK(req.code == payload + sizeof h && req.stdin_data == req.code + 4);
	CHECK(run_request_parse(payload, sizeof payload - 1, &req) == -EPROTO);
	CHECK(run_request_parse(payload, sizeof h - 1, &req) == -EPROTO);
	h.language = 9;
	memcpy(payload, &h, sizeof h);
	CHECK(run_request_parse(payload, sizeof payload, &req) == -EPROTO);
	h.language = AL_LANG_PYTHON;
	h.files_len = 0xFFFFFFFFu; /* would wrap a 32-bit sum */
	memcpy(payload, &h, sizeof h);
	CHECK(run_request_parse(payload, sizeof payload, &req) == -EPROTO);
	h.files_len = 0;
	h.version = AL_PROTO_VERSION + 1;
	memcpy(payload, &h, sizeof h);
	CHECK(run_request_parse(payload, sizeof payload, &req) == -EPROTO);
	h.version = AL_PROTO_VERSION;
	h.output_window = 0; /* no credit: no output could ever be sent */
	memcpy(payload, &h, sizeof h);
	CHECK(run_request_parse(payload, sizeof payload, &req) == -EPROTO);
	h.output_window = AL_STREAM_MAX_WINDOW + 1;
	memcpy(payload, &h, sizeof h);
	CHECK(run_request_parse(payload, sizeof payload, &req) == -EPROTO);
	h.output_window = AL_STREAM_MAX_WINDOW;
	memcpy(payload, &h, sizeof h);
	CHECK(run_request_parse(payload, sizeof payload, &req) == 0);
}

/* What the agent accepts from its collector (agent/collect.c, the sandbox user's child):
 * exactly the archives tar_add_file and tar_finish make. */
static void agent_checks_what_its_collector_sent(void)
{
	struct tar_writer w = {0};
	CHECK(tar_add_file(&w, "a.txt", "alpha", 5) == 0);
	CHECK(tar_add_file(&w, "d/b.bin", "\0\1", 2) == 0);
	CHECK(tar_finish(&w) == 0);
	uint64_t content = 0;
	unsigned files = 0;
	CHECK(tar_check(w.data, w.len, &content, &files) == 0 && content == 7 && files == 2);
	CHECK(tar_check(w.data, w.len - 1, &content, &files) == -EPROTO);   /* cut short */
	CHECK(tar_check(w.data, w.len - 512, &content, &files) == -EPROTO); /* one end block */
	uint8_t *longer = malloc(w.len + 512);
	memcpy(longer, w.data, w.len);
	memset(longer + w.len, 0, 512);
	CHECK(tar_check(longer, w.len + 512, &content, &files) == -EPROTO); /* trailing bytes */
	free(longer);
	tar_writer_free(&w);

	one_member(&w, "link");
	set_typeflag_and_fix_checksum(&w, '2'); /* a symlink */
	CHECK(tar_check(w.data, w.len, &content, &files) == -EPROTO);
	tar_writer_free(&w);
	one_member(&w, "../up");
	CHECK(tar_check(w.data, w.len, &content, &files) == -EPROTO);
	tar_writer_free(&w);
	one_member(&w, "f");
	memcpy(w.data + 124, "77777777777", 11); /* size past the archive */
	set_typeflag_and_fix_checksum(&w, '0');
	CHECK(tar_check(w.data, w.len, &content, &files) == -EPROTO);
	tar_writer_free(&w);
}

int main(void)
{
	TEST(host_archive_unpacks_in_agent);
	TEST(agent_archive_reads_on_host);
	TEST(agent_refuses_hostile_archives);
	TEST(run_request_lengths_must_add_up);
	TEST(agent_checks_what_its_collector_sent);
	if (dir[0])
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return TEST_EXIT_STATUS();
}
