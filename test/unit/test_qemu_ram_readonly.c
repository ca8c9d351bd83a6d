/* The shim preloaded into QEMU (mcp/qemu_ram_readonly.c): an open for reading and writing of
 * exactly the path in AIRLOCK_READONLY_RAM becomes read-only, through every name QEMU calls;
 * other paths, other modes and creation are left alone. The shim is preloaded into a child (this
 * binary again, argv[1] the shim), which reports the access mode of each open. */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

extern char **environ;

enum { VIA_OPEN, VIA_OPEN64, VIA_OPENAT, VIA_OPENAT64 };

/* In the child: open path as asked through one of the names, print its access mode. */
static int child(const char *path, int via, int flags)
{
	int fd = -1;
	switch (via) {
	case VIA_OPEN: fd = open(path, flags, 0600); break;
	case VIA_OPEN64: fd = open64(path, flags, 0600); break;
	case VIA_OPENAT: fd = openat(AT_FDCWD, path, flags, 0600); break;
	case VIA_OPENAT64: fd = openat64(AT_FDCWD, path, flags, 0600); break;
	}
	if (fd < 0)
		return 2;
	int mode = fcntl(fd, F_GETFL) & O_ACCMODE;
	return mode == O_RDONLY ? 10 : mode == O_RDWR ? 11 : 12;
}

static const char *shim, *self;
static char ram[] = "/tmp/airlock-ram-test-XXXXXX", other[] = "/tmp/airlock-other-XXXXXX";

/* The access mode the child got: O_RDONLY, O_RDWR, or -1 when it failed. */
static int mode_in_child(const char *path, int via, int flags)
{
	char preload[4200], readonly[200], via_arg[16], flags_arg[16];
	snprintf(preload, sizeof preload, "LD_PRELOAD=%s", shim);
	snprintf(readonly, sizeof readonly, "AIRLOCK_READONLY_RAM=%s", ram);
	snprintf(via_arg, sizeof via_arg, "%d", via);
	snprintf(flags_arg, sizeof flags_arg, "%d", flags);
	/* the shim is not sanitized: the ASan build's child must not insist on coming first */
	char *env[] = {preload, readonly, "ASAN_OPTIONS=verify_asan_link_order=0", NULL};
	char *argv[] = {(char *)self, "--child", (char *)path, via_arg, flags_arg, NULL};
	pid_t pid;
	int status;
	if (posix_spawn(&pid, self, NULL, NULL, argv, env) != 0 || waitpid(pid, &status, 0) < 0 ||
	    !WIFEXITED(status))
		return -1;
	switch (WEXITSTATUS(status)) {
	case 10: return O_RDONLY;
	case 11: return O_RDWR;
	default: return -1;
	}
}

static void the_ram_file_opens_read_only_whatever_the_name(void)
{
	CHECK(mode_in_child(ram, VIA_OPEN, O_RDWR) == O_RDONLY);
	CHECK(mode_in_child(ram, VIA_OPEN64, O_RDWR) == O_RDONLY);
	CHECK(mode_in_child(ram, VIA_OPENAT, O_RDWR) == O_RDONLY);
	CHECK(mode_in_child(ram, VIA_OPENAT64, O_RDWR | O_CLOEXEC) == O_RDONLY);
}

static void other_files_and_modes_are_left_alone(void)
{
	CHECK(mode_in_child(other, VIA_OPEN64, O_RDWR) == O_RDWR);
	CHECK(mode_in_child(ram, VIA_OPEN64, O_RDONLY) == O_RDONLY);
	CHECK(mode_in_child(ram, VIA_OPEN64, O_RDWR | O_CREAT) == O_RDWR);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--child") == 0)
		return child(argv[2], atoi(argv[3]), atoi(argv[4]));
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-OF-airlock-qemu-ram.so\n", argv[0]);
		return 2;
	}
	shim = argv[1];
	self = "/proc/self/exe";
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		self = exe;
	}
	int a = mkstemp(ram), b = mkstemp(other);
	CHECK(a >= 0 && b >= 0);
	TEST(the_ram_file_opens_read_only_whatever_the_name);
	TEST(other_files_and_modes_are_left_alone);
	close(a);
	close(b);
	unlink(ram);
	unlink(other);
	return TEST_EXIT_STATUS();
}
