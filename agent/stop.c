/* Stopping the sandbox user's processes at the end of a run, before the agent looks at what they
 * left: every one of them is killed, double-forked daemons included, and the agent waits until
 * none of them can act any more. Nothing a program does after its end (or after a forged exit
 * report) can then change what the result holds.
 *
 * "Cannot act" is read from /proc as "has no address space": a task loses it early in its exit
 * (exit_mm() clears task->mm before the slow unmapping), long before it is reaped, and never
 * runs user code or starts a system call after that; kernel threads never had one. Whether a
 * task has one costs one readlink of /proc/PID/exe (about 6 us on an emulated CPU; reading
 * /proc/PID/stat costs twenty times that).
 *
 * Which tasks to look at: a walk of /proc costs ~1 ms on an emulated CPU, and ~17 ms the first
 * time in a VM (code is translated on first use, and every VM restored from a snapshot starts
 * with nothing translated). So the agent notes the user's processes once, before its first
 * READY (in the VM that makes the snapshot, so every VM restored from it has the note), with
 * the kernel's count of tasks ever created (/proc/stat "processes"), and counts the helper
 * processes it starts and reaps itself. When the count has only moved by those at the end of
 * the run, no other task was created, and only the noted ones can be left.
 *
 * Waiting for a killed task to leave its address space means giving it the CPU, which under
 * emulation on a busy host costs milliseconds. On a guest with one CPU there is a cheaper proof
 * for a run that ends with nothing left to read: if the agent (SCHED_FIFO, ahead of every user
 * task) has not been switched out since its kill, no other task has run at all.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define STOP_FIRST_WAIT_US 100 /* a killed task usually needs only a moment of CPU to exit */
#define STOP_LONGEST_WAIT_US 8000
#define STOP_MAX_TRACKED 1024 /* processes rechecked by pid; more: the whole of /proc again */

/* Sends SIGKILL to every process of the sandbox user. As PID 1, kill(-1) reaches every process
 * but init itself, and in the guest those are all the user's. The kernel makes that one call
 * race-free against fork and clone: it signals under the task list's lock, and a fork that had
 * not added its child by then fails, its parent having SIGKILL pending. After it, the user can
 * start no task at all. Anywhere else (a test run by hand) a helper that takes the user's uid
 * signals exactly the user's processes. */
static void kill_all_user_processes(void)
{
	if (getpid() == 1) {
		(void)kill(-1, SIGKILL);
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		if (setgid(AGENT_USER_GID) != 0 || setuid(AGENT_USER_UID) != 0)
			_exit(1);
		(void)kill(-1, SIGKILL);
		_exit(0);
	}
	if (pid > 0) {
		(void)waitpid(pid, NULL, 0);
		stop_count_own_task();
	}
}

/* Whether the task whose /proc directory is path (relative to dir_fd) has an address space:
 * 1 yes, 0 no or gone, -errno. A process's exe link leads to its executable while it has one;
 * the agent (root) may read every task's. */
static int task_has_mm(int dir_fd, const char *path)
{
	char link[64], target[8]; /* only whether it resolves matters, not where */
	snprintf(link, sizeof link, "%.40s/exe", path);
	if (readlinkat(dir_fd, link, target, sizeof target) >= 0)
		return 1;
	return errno == ENOENT || errno == ESRCH ? 0 : -errno;
}

/* Whether any thread of the process pid (a /proc entry) may still act: 1, 0, or -errno. */
static int process_may_act(int proc_fd, const char *pid)
{
	int rc = task_has_mm(proc_fd, pid);
	if (rc != 0)
		return rc;
	/* No address space: a kernel thread or an exiting process, unless it is a leader that
	 * ended ahead of its threads; its task directory's link count is 2 + its threads. */
	char path[64];
	struct stat st;
	snprintf(path, sizeof path, "%.20s/task", pid);
	if (fstatat(proc_fd, path, &st, 0) != 0)
		return errno == ENOENT || errno == ESRCH ? 0 : -errno;
	if (st.st_nlink <= 3)
		return 0;
	int task_fd = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (task_fd < 0)
		return errno == ENOENT || errno == ESRCH ? 0 : -errno;
	DIR *tasks = fdopendir(task_fd);
	if (!tasks) {
		close(task_fd);
		return -ENOMEM;
	}
	int may = 0;
	struct dirent *e;
	while (may == 0 && (e = readdir(tasks)) != NULL)
		if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
			may = task_has_mm(task_fd, e->d_name);
	closedir(tasks);
	return may;
}

/* As PID 1 every process but the agent is the user's (kernel threads have no address space);
 * elsewhere (by hand) only those whose real uid is the user's count. */
static int is_users_process(int proc_fd, const char *pid)
{
	if (getpid() == 1)
		return 1;
	char path[64], buf[1024];
	snprintf(path, sizeof path, "%.20s/status", pid);
	int fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	const char *uid = strstr(buf, "\nUid:\t");
	return uid && atol(uid + 6) == AGENT_USER_UID;
}

struct acting {
	pid_t pids[STOP_MAX_TRACKED];
	int count;
	int overflow; /* more than fit: look at the whole of /proc again */
};

/* Walks /proc and notes the user's processes that may still act. Returns 0 or -errno. */
static int find_acting(int proc_fd, struct acting *a)
{
	int fd = openat(proc_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *proc = fd >= 0 ? fdopendir(fd) : NULL;
	if (!proc) {
		int rc = fd < 0 ? -errno : -ENOMEM;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	pid_t self = getpid();
	a->count = a->overflow = 0;
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(proc)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == self ||
		    !is_users_process(proc_fd, e->d_name))
			continue;
		int may = process_may_act(proc_fd, e->d_name);
		if (may < 0)
			rc = may;
		else if (may && a->count < STOP_MAX_TRACKED)
			a->pids[a->count++] = atoi(e->d_name);
		else if (may)
			a->overflow = 1;
	}
	closedir(proc);
	return rc;
}

/* Looks again at the processes noted: none can have started since the kill, so those that
 * could not act then cannot now. Returns 0 or -errno. */
static int recheck_acting(int proc_fd, struct acting *a)
{
	int kept = 0;
	for (int i = 0; i < a->count; i++) {
		char pid[16];
		snprintf(pid, sizeof pid, "%d", (int)a->pids[i]);
		int may = process_may_act(proc_fd, pid);
		if (may < 0)
			return may;
		if (may)
			a->pids[kept++] = a->pids[i];
	}
	a->count = kept;
	return 0;
}

/* Reaps the agent's dead children. Returns 0, or -ECHILD when it has none left at all. */
static int reap_children(void)
{
	pid_t pid;
	while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
		;
	return pid < 0 && errno == ECHILD ? -ECHILD : 0;
}

/* The kernel's count of tasks created since boot (every fork, clone and kernel thread), from
 * /proc/stat. Returns 0 or -errno. */
static int read_task_count(uint64_t *count)
{
	static char buf[16384]; /* a few hundred bytes in the guest; more on a large host */
	int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = 0;
	ssize_t n;
	while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	const char *line = strstr(buf, "\nprocesses ");
	char *end;
	if (!line)
		return -EPROTO;
	unsigned long long v = strtoull(line + 11, &end, 10);
	if (end == line + 11 || *end != '\n')
		return -EPROTO;
	*count = v;
	return 0;
}

/* The user's processes as they were noted, the kernel's task count before that look, and the
 * tasks the agent has created since (helpers it reaped itself). */
static struct {
	int valid;
	uint64_t tasks_created;
	uint64_t own_tasks;
	struct acting processes;
} noted;

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The times the agent's thread has been switched out, voluntarily or not. */
static long switches_out(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		return -1;
	return ru.ru_nvcsw + ru.ru_nivcsw;
}

/* Whether the guest runs on one CPU (asked once: it costs milliseconds the first time). */
static int one_cpu(void)
{
	static int answer = -1;
	if (answer < 0)
		answer = sysconf(_SC_NPROCESSORS_ONLN) == 1;
	return answer;
}

void stop_kill_all(struct stop_mark *mark)
{
	kill_all_user_processes();
	/* by hand (not PID 1) the kill took a helper process: no proof from switches then */
	mark->switches = one_cpu() && getpid() == 1 ? switches_out() : -1;
}

int stop_nothing_ran_since(const struct stop_mark *mark)
{
	return mark->switches >= 0 && switches_out() == mark->switches;
}

int stop_user_processes(int timeout_ms)
{
	static struct acting a; /* 4 KiB: off the stack of PID 1 */
	int proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc_fd < 0)
		return -errno;
	int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
	long wait_us = STOP_FIRST_WAIT_US;
	kill_all_user_processes(); /* again: free, and the caller may not have yet */
	uint64_t created;
	int rc;
	if (noted.valid && read_task_count(&created) == 0 &&
	    created == noted.tasks_created + noted.own_tasks) {
		a = noted.processes;
		rc = recheck_acting(proc_fd, &a);
	} else if (getpid() == 1 && reap_children() == -ECHILD) {
		/* Every process of the user descends from the agent (orphans come to PID 1): with
		 * no child left, not even a dead one, there is none at all. */
		a.count = a.overflow = 0;
		rc = 0;
	} else {
		rc = find_acting(proc_fd, &a);
	}
	while (rc == 0 && (a.count > 0 || a.overflow)) {
		if (now_us() >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		/* the agent runs first (SCHED_FIFO): the dying tasks get the CPU while it sleeps */
		struct timespec ts = {0, wait_us * 1000};
		nanosleep(&ts, NULL);
		wait_us = wait_us * 2 < STOP_LONGEST_WAIT_US ? wait_us * 2 : STOP_LONGEST_WAIT_US;
		if (a.overflow) {
			/* not needed (see above); free, and by hand it is */
			kill_all_user_processes();
			rc = find_acting(proc_fd, &a);
		} else {
			rc = recheck_acting(proc_fd, &a);
		}
	}
	close(proc_fd);
	return rc;
}

void stop_note_processes(void)
{
	(void)one_cpu(); /* asked here too: a snapshot's VMs have its CPUs */
	noted.valid = 0;
	noted.own_tasks = 0;
	int proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc_fd < 0)
		return;
	/* the count first: a task created during the walk moves it, and the end of the run then
	 * walks /proc again */
	if (read_task_count(&noted.tasks_created) == 0 &&
	    find_acting(proc_fd, &noted.processes) == 0)
		noted.valid = !noted.processes.overflow;
	close(proc_fd);
}

void stop_count_own_task(void)
{
	noted.own_tasks++;
}

void stop_forget_processes(void)
{
	noted.valid = 0;
}

void stop_warm_up(void)
{
	/* what the usual end of a run takes, translated by an emulated CPU while the VM waits */
	(void)one_cpu();
	(void)switches_out();
}
