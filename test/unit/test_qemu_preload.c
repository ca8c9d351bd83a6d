/* The library preloaded into QEMU (mcp/backend/tcg/qemu_preload.c): the process is not dumpable, a write past
 * its file size limit fails instead of killing it (SIGXFSZ ignored), and an open
 * for reading and writing of exactly the path in AIRLOCK_READONLY_RAM becomes read-only, through
 * every name it defines; other paths, other modes and creation are left alone. It is preloaded
 * into a child (this binary again, argv[1] the library), which calls each name as looked up in
 * the process (the preloaded definition comes first) and reports what it got. */
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

enum { GOT_RDONLY = 10, GOT_RDWR, GOT_OTHER, GOT_DUMPABLE, GOT_NO_SYMBOL, GOT_SIGXFSZ_KILLS };

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*fortified_fn)(const char *, int);

/* In the child: open path with flags through the function of that name; exits with what it got. */
static int child(const char *name, const char *path, int flags)
{
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0)
		return GOT_DUMPABLE;
	struct sigaction xfsz;
	if (sigaction(SIGXFSZ, NULL, &xfsz) != 0 || xfsz.sa_handler != SIG_IGN)
		return GOT_SIGXFSZ_KILLS; /* a full log would end QEMU */
	void *fn = dlsym(RTLD_DEFAULT, name);
	if (!fn)
		return GOT_NO_SYMBOL;
	int fd;
	if (strncmp(name, "__open", 6) == 0)
		fd = ((fortified_fn)fn)(path, flags);
	else if (strncmp(name, "openat", 6) == 0)
		fd = ((openat_fn)fn)(AT_FDCWD, path, flags, 0600);
	else
		fd = ((open_fn)fn)(path, flags, 0600);
	if (fd < 0)
		return 2;
	int mode = fcntl(fd, F_GETFL) & O_ACCMODE;
	return mode == O_RDONLY ? GOT_RDONLY : mode == O_RDWR ? GOT_RDWR : GOT_OTHER;
}

static const char *preload, *self;
static char ram[] = "/tmp/airlock-ram-test-XXXXXX", other[] = "/tmp/airlock-other-XXXXXX";
static const char *const names[] = {"open", "open64", "openat", "openat64", "__open_2",
				    "__open64_2"};

/* What the child got (GOT_*), or -1 when it did not end normally. */
static int in_child(const char *name, const char *path, int flags)
{
	char env_preload[4200], readonly[200], flags_arg[16];
	snprintf(env_preload, sizeof env_preload, "LD_PRELOAD=%s", preload);
	snprintf(readonly, sizeof readonly, "AIRLOCK_READONLY_RAM=%s", ram);
	snprintf(flags_arg, sizeof flags_arg, "%d", flags);
	/* the library is not sanitized: the ASan build's child must not insist on coming first */
	char *env[] = {env_preload, readonly, "ASAN_OPTIONS=verify_asan_link_order=0", NULL};
	char *argv[] = {(char *)self, "--child", (char *)name, (char *)path, flags_arg, NULL};
	pid_t pid;
	int status;
	if (posix_spawn(&pid, self, NULL, NULL, argv, env) != 0 || waitpid(pid, &status, 0) < 0 ||
	    !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static void the_ram_file_opens_read_only_through_every_name(void)
{
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		int got = in_child(names[i], ram, O_RDWR);
		if (got != GOT_RDONLY)
			fprintf(stderr, "%s: got %d\n", names[i], got);
		CHECK(got == GOT_RDONLY);
	}
	CHECK(in_child("open64", ram, O_RDWR | O_CLOEXEC) == GOT_RDONLY);
}

static void other_files_and_modes_are_left_alone(void)
{
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		CHECK(in_child(names[i], other, O_RDWR) == GOT_RDWR);
	CHECK(in_child("open64", ram, O_RDONLY) == GOT_RDONLY);
	CHECK(in_child("open64", ram, O_RDWR | O_CREAT) == GOT_RDWR);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--child") == 0)
		return child(argv[2], argv[3], atoi(argv[4]));
	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-OF-airlock-qemu-preload.so\n", argv[0]);
		return 2;
	}
	preload = argv[1];
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return 2;
	exe[n] = '\0';
	self = exe;
	int a = mkstemp(ram), b = mkstemp(other);
	CHECK(a >= 0 && b >= 0);
	TEST(the_ram_file_opens_read_only_through_every_name);
	TEST(other_files_and_modes_are_left_alone);
	close(a);
	close(b);
	unlink(ram);
	unlink(other);
	return TEST_EXIT_STATUS();
}
