/* The files a VM may only read (mcp/confine/readonly_files.c): whoever holds one of its fds, the file's
 * owner included, cannot write it, reopen it for writing through /proc/self/fd, or change its
 * mode; on a read-only mount (as root, and as a user in a user namespace of its own) and as a
 * sealed copy. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "confine.h"

#define OWNER_UID 4242 /* a user of no account here, owning the file it cannot write */

static char dir[64], file[128];

static void make_file(uid_t owner)
{
	strcpy(dir, "/tmp/airlock-test-ro-XXXXXX");
	if (!mkdtemp(dir) || chmod(dir, 0755) != 0)
		abort();
	snprintf(file, sizeof file, "%s/image", dir);
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	/* data, a 1 MiB hole, data: a snapshot's memory file is mostly holes */
	if (fd < 0 || pwrite(fd, "kernel", 6, 0) != 6 || pwrite(fd, "tail", 4, 1 << 20) != 4 ||
	    fchown(fd, owner, owner) != 0 || close(fd) != 0)
		abort();
}

static void remove_file(void)
{
	unlink(file);
	rmdir(dir);
}

/* Every way in through fd; each must fail with one of the errnos that mean "not writable". */
static int cannot_write(int fd, const char *expect_method)
{
	int failures = 0;
	char self[64], buf[8] = {0};
	snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
#define EXPECT(cond)                                                                               \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                 \
			failures++;                                                                \
		}                                                                                  \
	} while (0)
	EXPECT(pread(fd, buf, 6, 0) == 6 && memcmp(buf, "kernel", 6) == 0);
	EXPECT(pread(fd, buf, 4, 1 << 20) == 4 && memcmp(buf, "tail", 4) == 0);
	EXPECT(write(fd, "x", 1) < 0);
	int rw = open(self, O_RDWR | O_CLOEXEC);
	EXPECT(rw < 0 ? errno == EROFS : write(rw, "x", 1) < 0 && errno == EPERM);
	if (rw >= 0)
		close(rw);
	EXPECT(open(self, O_WRONLY | O_TRUNC | O_CLOEXEC) < 0);
	EXPECT(open(file, O_RDWR | O_CLOEXEC) >= 0); /* the path itself stays the owner's */
	EXPECT(strcmp(readonly_method(), expect_method) == 0);
	if (strcmp(expect_method, "a read-only mount") == 0)
		EXPECT(fchmod(fd, 0666) < 0 && errno == EROFS);
	struct stat st;
	EXPECT(stat(file, &st) == 0 && st.st_size == (1 << 20) + 4 && (st.st_mode & 0777) == 0644);
	EXPECT(pread(fd, buf, 6, 0) == 6 && memcmp(buf, "kernel", 6) == 0);
#undef EXPECT
	return failures;
}

static void root_cannot_write_through_its_fd(void)
{
	make_file(0);
	int fd = readonly_open(file);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(cannot_write(fd, "a read-only mount") == 0);
		close(fd);
	}
	remove_file();
}

/* A kept state's files: read-only all the same, and nothing kept per file (readonly_open keeps
 * 16; a server continuing states would run out of them after 8 calls, as it did). */
static void files_opened_once_are_read_only_and_not_kept(void)
{
	make_file(0);
	for (int i = 0; i < 40; i++) {
		char path[160];
		snprintf(path, sizeof path, "%s/once-%d", dir, i);
		FILE *f = i ? fopen(path, "w") : NULL;
		if (f)
			fclose(f);
		int fd = readonly_open_once(i ? path : file); /* the first: the image, to write at */
		CHECK(fd >= 0);
		if (fd >= 0 && i == 0)
			CHECK(cannot_write(fd, "a read-only mount") == 0);
		if (fd >= 0)
			close(fd);
		if (i)
			unlink(path);
	}
	remove_file();
}

static void the_owner_cannot_write_through_its_fd(void)
{
	make_file(OWNER_UID);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		/* a user's process, as airlock started by that user is (dumpable) */
		if (setresgid(OWNER_UID, OWNER_UID, OWNER_UID) != 0 ||
		    setresuid(OWNER_UID, OWNER_UID, OWNER_UID) != 0 ||
		    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0)
			_exit(100);
		int fd = readonly_open(file);
		if (fd < 0) {
			fprintf(stderr, "readonly_open as the owner: %s\n", strerror(-fd));
			_exit(101);
		}
		_exit(cannot_write(fd, "a read-only mount"));
	}
	int status = -1;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	remove_file();
}

static void a_sealed_copy_cannot_be_written_either(void)
{
	make_file(0);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		readonly_force_sealed_copy();
		int fd = readonly_open(file);
		if (fd < 0)
			_exit(101);
		struct stat st;
		if (fstat(fd, &st) != 0 || st.st_blocks * 512 > (1 << 19)) /* holes kept */
			_exit(102);
		_exit(cannot_write(fd, "a sealed memfd"));
	}
	int status = -1;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	remove_file();
}

static void a_replaced_file_is_opened_anew(void)
{
	make_file(0);
	int first = readonly_open(file);
	char other[160];
	snprintf(other, sizeof other, "%s.new", file);
	int fd = open(other, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write(fd, "rebuilt", 7) == 7 && close(fd) == 0);
	CHECK(rename(other, file) == 0);
	int second = readonly_open(file);
	char buf[8] = {0};
	CHECK(first >= 0 && second >= 0 && pread(second, buf, 7, 0) == 7);
	CHECK(memcmp(buf, "rebuilt", 7) == 0);
	CHECK(pread(first, buf, 6, 0) == 6 && memcmp(buf, "kernel", 6) == 0);
	close(first);
	close(second);
	remove_file();
}

int main(void)
{
	if (geteuid() != 0) {
		printf("SKIP test_readonly_files: needs root (mount namespaces, another user)\n");
		return 77;
	}
	TEST(root_cannot_write_through_its_fd);
	TEST(files_opened_once_are_read_only_and_not_kept);
	TEST(the_owner_cannot_write_through_its_fd);
	TEST(a_sealed_copy_cannot_be_written_either);
	TEST(a_replaced_file_is_opened_anew);
	return TEST_EXIT_STATUS();
}
