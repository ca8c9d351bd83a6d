/* Kept state, the guest's part: the user's processes stopped (not killed) at the end of a kept
 * run, so that the VM can be saved with the interpreter and whatever else the program left
 * running, and set going again in the VM restored from it.
 *
 * Stopping: as PID 1, kill(-1, SIGSTOP) reaches every process but init, and the kernel makes it
 * race-free against fork (a fork that had not added its child is restarted after the stop, see
 * stop.c). A stop is asynchronous, though: each task stops when it next returns to user space.
 * The agent waits until every task of every user process reads as stopped ('T' or 't') or dead
 * in /proc, so that nothing can write /work/out or the output pipes once it collects them, and
 * the snapshot holds no task half-way through a system call of its own.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define FREEZE_FIRST_WAIT_US 100
#define FREEZE_LONGEST_WAIT_US 8000

static int frozen;

/* The state letter of /proc/PID/task/TID/stat: after the last ')' (the name may hold any). */
static char task_state(int task_dir_fd, const char *tid)
{
	char path[300], buf[512];
	snprintf(path, sizeof path, "%s/stat", tid);
	int fd = openat(task_dir_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 'X'; /* gone */
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 'X';
	buf[n] = '\0';
	char *paren = strrchr(buf, ')');
	return paren && paren[1] == ' ' ? paren[2] : '?';
}

/* Whether every task of process pid is stopped or gone. */
static int process_stopped(int proc_fd, const char *pid)
{
	char path[300];
	snprintf(path, sizeof path, "%s/task", pid);
	int task_fd = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (task_fd < 0)
		return 1; /* gone */
	DIR *tasks = fdopendir(task_fd);
	if (!tasks) {
		close(task_fd);
		return 1;
	}
	int stopped = 1;
	struct dirent *t;
	while (stopped && (t = readdir(tasks)) != NULL) {
		if (t->d_name[0] < '0' || t->d_name[0] > '9')
			continue;
		char state = task_state(dirfd(tasks), t->d_name);
		stopped = state == 'T' || state == 't' || state == 'Z' || state == 'X';
	}
	closedir(tasks);
	return stopped;
}

/* As PID 1 every process with an address space but the agent is the user's (stop.c). */
static int is_user_process(int proc_fd, const char *pid)
{
	char path[300], exe[16];
	snprintf(path, sizeof path, "%s/exe", pid);
	/* a kernel thread has no executable; a task past exit_mm() neither (it cannot act) */
	return readlinkat(proc_fd, path, exe, sizeof exe) > 0;
}

/* Returns 1 when every user process is stopped, 0 when one is not yet, -errno on failure. */
static int all_stopped(void)
{
	DIR *proc = opendir("/proc");
	if (!proc)
		return -errno;
	int result = 1;
	struct dirent *e;
	pid_t self = getpid();
	while (result == 1 && (e = readdir(proc)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == self)
			continue;
		if (is_user_process(dirfd(proc), e->d_name) && !process_stopped(dirfd(proc), e->d_name))
			result = 0;
	}
	closedir(proc);
	return result;
}

int cell_freeze(int timeout_ms)
{
	if (getpid() != 1)
		return -EPERM; /* kill(-1) anywhere else would reach the host's processes */
	(void)kill(-1, SIGSTOP);
	frozen = 1;
	int64_t deadline = monotonic_ms() + timeout_ms;
	long wait_us = FREEZE_FIRST_WAIT_US;
	for (;;) {
		int rc = all_stopped();
		if (rc != 0)
			return rc < 0 ? rc : 0;
		if (monotonic_ms() >= deadline)
			return -ETIMEDOUT;
		struct timespec ts = {0, wait_us * 1000};
		nanosleep(&ts, NULL);
		if (wait_us < FREEZE_LONGEST_WAIT_US)
			wait_us *= 2;
	}
}

void cell_thaw(void)
{
	if (!frozen)
		return;
	frozen = 0;
	(void)kill(-1, SIGCONT);
}

int cell_frozen(void)
{
	return frozen;
}
