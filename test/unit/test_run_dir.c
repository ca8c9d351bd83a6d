/* airlock run --dir and --repo (mcp/cli/run_dir.c): a host tree packed for /work and unpacked
 * by the agent's own reader (agent/tar.c), links never followed out of the tree, the caps
 * refused with PATH named; the clone command's quoting checked by a real bash. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "cli.h"
#include "check.h"

static char src[64], dst[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tree(char *dir)
{
	if (dir[0])
		nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	dir[0] = '\0';
}

static void fresh_dirs(void)
{
	remove_tree(src);
	remove_tree(dst);
	strcpy(src, "/tmp/airlock-test-dir-src-XXXXXX");
	strcpy(dst, "/tmp/airlock-test-dir-dst-XXXXXX");
	if (!mkdtemp(src) || !mkdtemp(dst))
		abort();
}

static void put(const char *dir, const char *rel, const char *content, mode_t mode)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0 || write(fd, content, strlen(content)) != (ssize_t)strlen(content))
		abort();
	close(fd);
}

static void make_dir(const char *rel)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", src, rel);
	if (mkdir(path, 0755) != 0)
		abort();
}

static void make_link(const char *target, const char *rel)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", src, rel);
	if (symlink(target, path) != 0)
		abort();
}

/* What the agent made of rel under dst: its content, or NULL when absent or not a file. */
static char *unpacked(const char *rel, mode_t *mode)
{
	static char buf[4096];
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dst, rel);
	struct stat st;
	if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return NULL;
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (fd >= 0)
		close(fd);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	if (mode)
		*mode = st.st_mode & 07777;
	return buf;
}

static bool is_dir(const char *rel)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dst, rel);
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool exists(const char *rel)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof path, "%s/%s", dst, rel);
	return lstat(path, &st) == 0;
}

/* Packs src with the caps given, unpacks it under dst with the agent's reader; warnings land in
 * warnings (malloc'd). Returns run_dir_pack's result. */
static int pack_and_unpack(const struct file_list *extra, size_t max_bytes, size_t max_entries,
			   char **warnings, char *err, size_t err_len)
{
	struct file_list none = {0};
	size_t warn_len = 0;
	FILE *warn = open_memstream(warnings, &warn_len);
	uint8_t *tar = NULL;
	size_t len = 0;
	int rc = run_dir_pack(src, extra ? extra : &none, max_bytes, max_entries, warn, &tar, &len,
			      err, err_len);
	fclose(warn);
	if (rc == 0) {
		const char *bad = NULL;
		int x = tar_extract(tar, len, dst, getuid(), getgid(), &bad);
		CHECK(x == 0);
		if (x)
			fprintf(stderr, "tar_extract: %s at %s\n", strerror(-x), bad ? bad : "?");
	}
	free(tar);
	return rc;
}

static void tree_with_hidden_and_nested_files_becomes_work(void)
{
	fresh_dirs();
	make_dir("a");
	make_dir("a/b");
	make_dir(".git");
	make_dir("empty");
	put(src, "top.txt", "top\n", 0644);
	put(src, "a/b/deep.txt", "deep\n", 0600);
	put(src, ".hidden", "secret-ish\n", 0644);
	put(src, ".git/config", "[core]\n", 0644);
	put(src, "run.sh", "#!/bin/sh\necho ran\n", 0755);
	char *warnings = NULL, err[512] = "";
	CHECK(pack_and_unpack(NULL, 16u << 20, 10000, &warnings, err, sizeof err) == 0);
	mode_t mode = 0;
	const char *c;
	CHECK((c = unpacked("top.txt", NULL)) && strcmp(c, "top\n") == 0);
	CHECK((c = unpacked("a/b/deep.txt", NULL)) && strcmp(c, "deep\n") == 0);
	CHECK((c = unpacked(".hidden", NULL)) && strcmp(c, "secret-ish\n") == 0);
	CHECK((c = unpacked(".git/config", NULL)) && strcmp(c, "[core]\n") == 0);
	CHECK((c = unpacked("run.sh", &mode)) && mode == 0755);
	CHECK(is_dir("empty"));
	CHECK(warnings && warnings[0] == '\0');
	free(warnings);
}

static void links_never_leave_the_tree(void)
{
	fresh_dirs();
	char outside[128];
	snprintf(outside, sizeof outside, "%s/outside.txt", dst); /* beside src, not in it */
	put(dst, "outside.txt", "HOST SECRET", 0644);
	make_dir("sub");
	put(src, "sub/real.txt", "inside\n", 0755);
	make_link(outside, "absolute");
	make_link("../../etc/passwd", "dotdot");
	make_link("../sub/../../x", "sub/sneaky");
	make_link("real.txt", "sub/same_dir");
	make_link("../sub/real.txt", "sub/up_and_back");
	make_link("sub", "to_dir");
	make_link("nowhere", "dangling");
	make_link("loop", "loop");
	char fifo[512];
	snprintf(fifo, sizeof fifo, "%s/fifo", src);
	CHECK(mkfifo(fifo, 0644) == 0);
	char *warnings = NULL, err[512] = "";
	/* unpacked under dst/work, so that outside.txt is not mistaken for a packed file */
	strcat(dst, "/work");
	CHECK(mkdir(dst, 0755) == 0);
	CHECK(pack_and_unpack(NULL, 16u << 20, 10000, &warnings, err, sizeof err) == 0);
	mode_t mode = 0;
	const char *c;
	CHECK((c = unpacked("sub/same_dir", &mode)) && strcmp(c, "inside\n") == 0 && mode == 0755);
	CHECK((c = unpacked("sub/up_and_back", NULL)) && strcmp(c, "inside\n") == 0);
	const char *gone[] = {"absolute", "dotdot", "sub/sneaky", "to_dir",
			      "dangling", "loop",   "fifo"};
	for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
		CHECK(!exists(gone[i]));
		char line[256];
		snprintf(line, sizeof line, ": skipped %s: ", gone[i]);
		CHECK(warnings && strstr(warnings, line));
	}
	CHECK(strstr(warnings, "skipped absolute: an absolute symbolic link"));
	CHECK(strstr(warnings, "skipped dotdot: a symbolic link that leads out of the directory"));
	CHECK(!strstr(warnings, "same_dir") && !strstr(warnings, "up_and_back"));
	free(warnings);
	dst[strlen(dst) - strlen("/work")] = '\0';
}

static void put_files_come_after_the_tree(void)
{
	fresh_dirs();
	put(src, "a.txt", "from the tree", 0644);
	put(src, "b.txt", "kept", 0644);
	struct file_list extra = {0};
	CHECK(file_list_add(&extra, "a.txt", "from --put", 10, true) == 0);
	CHECK(file_list_add(&extra, "new/c.txt", "c", 1, true) == 0);
	char *warnings = NULL, err[512] = "";
	CHECK(pack_and_unpack(&extra, 16u << 20, 10000, &warnings, err, sizeof err) == 0);
	const char *c;
	CHECK((c = unpacked("a.txt", NULL)) && strcmp(c, "from --put") == 0);
	CHECK((c = unpacked("b.txt", NULL)) && strcmp(c, "kept") == 0);
	CHECK((c = unpacked("new/c.txt", NULL)) && strcmp(c, "c") == 0);
	free(warnings);
	file_list_free(&extra);
}

static void caps_are_refused_naming_the_directory(void)
{
	fresh_dirs();
	char big[6000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	put(src, "big.bin", big, 0644);
	char *warnings = NULL, err[512] = "";
	/* header 512 + content 6144 + end 1024 = 7680 bytes: over 4096 */
	CHECK(pack_and_unpack(NULL, 4096, 10000, &warnings, err, sizeof err) == -EFBIG);
	CHECK(strstr(err, src) && strstr(err, "7680 bytes") && strstr(err, "4096 bytes"));
	free(warnings);
	CHECK(pack_and_unpack(NULL, 7680, 10000, &warnings, err, sizeof err) == 0); /* just fits */
	free(warnings);

	fresh_dirs();
	make_dir("d");
	for (int i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof name, "d/f%d", i);
		put(src, name, "", 0644);
	}
	err[0] = '\0';
	CHECK(pack_and_unpack(NULL, 16u << 20, 5, &warnings, err, sizeof err) == -E2BIG);
	CHECK(strstr(err, src) && strstr(err, "more than 5"));
	free(warnings);
	CHECK(pack_and_unpack(NULL, 16u << 20, 6, &warnings, err, sizeof err) == 0);
	free(warnings);

	err[0] = '\0';
	CHECK(run_dir_pack("/nonexistent/airlock-dir", &(struct file_list){0}, 1 << 20, 10, stderr,
			   &(uint8_t *){NULL}, &(size_t){0}, err, sizeof err) == -ENOENT);
	CHECK(strstr(err, "/nonexistent/airlock-dir"));
}

/* Runs code with bash, git, cd and exec replaced by functions that print their arguments one a
 * line: what the clone would have been given. Returns the output (malloc'd). */
static char *bash_arguments(const char *code)
{
	char script[4096];
	snprintf(script, sizeof script,
		 "git() { printf '<%%s>\\n' \"$@\"; }; cd() { printf 'cd <%%s>\\n' \"$1\"; }; "
		 "exec() { printf '<%%s>\\n' \"$@\"; }\n%s",
		 code);
	int out[2];
	if (pipe(out) != 0)
		abort();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(out[1], 1);
		close(out[0]);
		execlp("bash", "bash", "-c", script, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	char *buf = calloc(1, 8192);
	size_t len = 0;
	ssize_t n;
	while (len < 8191 && (n = read(out[0], buf + len, 8191 - len)) > 0)
		len += (size_t)n;
	close(out[0]);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return buf;
}

static void repo_code_quotes_the_url_and_the_command(void)
{
	char *code = NULL, err[256];
	CHECK(run_repo_code("https://example.org/r.git", "make test", &code, err, sizeof err) == 0);
	CHECK(code && strcmp(code, "git clone --depth 1 -- 'https://example.org/r.git' /work/repo "
				   "&& cd /work/repo && exec bash -c 'make test'\n") == 0);
	free(code);

	/* each arrives as one argument, byte for byte, whatever quotes and operators it holds */
	const char *url = "http://h/it's;$(touch${IFS}/tmp/pwned)`id`";
	const char *cmd = "echo 'a'\"b\" $HOME; false || echo \"it's\" && exit 3\n# '\\'";
	CHECK(run_repo_code(url, cmd, &code, err, sizeof err) == 0);
	char *args = bash_arguments(code);
	char expected[1024];
	snprintf(
	    expected, sizeof expected,
	    "<clone>\n<--depth>\n<1>\n<-->\n<%s>\n</work/repo>\ncd </work/repo>\n<bash>\n<-c>\n"
	    "<%s>\n",
	    url, cmd);
	CHECK(strcmp(args, expected) == 0);
	if (strcmp(args, expected) != 0)
		fprintf(stderr, "got:\n%s\nwanted:\n%s\n", args, expected);
	free(args);
	free(code);

	const char *bad[] = {"ftp://h/r",	  "file:///etc",   "/srv/repo",
			     "--upload-pack=x",	  "https://",	   "http:///path",
			     "https://h/a b",	  "https://h/\nx", "ext::sh -c id",
			     "git@github.com:a/b"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		code = NULL;
		err[0] = '\0';
		CHECK(run_repo_code(bad[i], "true", &code, err, sizeof err) == -EINVAL);
		CHECK(code == NULL && strstr(err, "--repo"));
	}
	CHECK(run_repo_code("HTTPS://Example.org/r", "true", &code, err, sizeof err) == 0);
	free(code);
}

int main(void)
{
	TEST(tree_with_hidden_and_nested_files_becomes_work);
	TEST(links_never_leave_the_tree);
	TEST(put_files_come_after_the_tree);
	TEST(caps_are_refused_naming_the_directory);
	TEST(repo_code_quotes_the_url_and_the_command);
	remove_tree(src);
	remove_tree(dst);
	return TEST_EXIT_STATUS();
}
