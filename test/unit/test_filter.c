/* The server's own seccomp filter (mcp/confine/filter.c): in a child that installs it, every syscall
 * that would let a taken-over server reach into other processes or the kernel fails with EPERM,
 * and what the server needs still works. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "confine.h"

static const struct {
	long nr;
	const char *name;
} refused[] = {
    {SYS_process_vm_readv, "process_vm_readv"},
    {SYS_bpf, "bpf"},
    {SYS_perf_event_open, "perf_event_open"},
    {SYS_userfaultfd, "userfaultfd"},
    {SYS_io_uring_setup, "io_uring_setup"},
    {SYS_io_uring_enter, "io_uring_enter"},
    {SYS_io_uring_register, "io_uring_register"},
    {SYS_pidfd_getfd, "pidfd_getfd"},
    {SYS_process_madvise, "process_madvise"},
    {SYS_fsopen, "fsopen"},
    {SYS_fsconfig, "fsconfig"},
    {SYS_fsmount, "fsmount"},
    {SYS_fspick, "fspick"},
    {SYS_open_tree, "open_tree"},
    {SYS_move_mount, "move_mount"},
    {SYS_mount_setattr, "mount_setattr"},
};

/* In a child: 0 when the filter is in, each listed syscall is refused with EPERM (its
 * arguments are nonsense: without the filter it fails otherwise, EFAULT or EBADF or EINVAL),
 * and an ordinary syscall works; else the index of the first that was not refused, plus 1. */
static int child(void)
{
	if (host_filter_install() != 0)
		return 100;
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		errno = 0;
		long r = syscall(refused[i].nr, -1L, 0L, 0L, 0L, 0L, 0L);
		if (r != -1 || errno != EPERM) {
			fprintf(stderr, "%s: not refused (%ld, errno %d)\n", refused[i].name, r,
				errno);
			return (int)i + 1;
		}
	}
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0 && close(fd) == 0 ? 0 : 101;
}

static const char *self_path; /* argv[0]: under valgrind, /proc/self/exe is valgrind's */

static void listed_syscalls_are_refused(void)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		/* the child runs as itself, not under valgrind (which knows no seccomp): valgrind
		 * does not follow an exec */
		execl(self_path, "test_filter", "child", (char *)NULL);
		_exit(127);
	}
	int status = -1;
	CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "child") == 0)
		return child();
	self_path = argv[0];
	TEST(listed_syscalls_are_refused);
	return TEST_EXIT_STATUS();
}
