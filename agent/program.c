/* The user's program as a process: started as the sandbox user in its own session, waiting for
 * "go" before it runs anything, so that it can be started before the request arrives (and before
 * a snapshot is taken: the interpreter is then already up in every VM restored from it).
 *
 * The child's file descriptors:
 *   0, 1, 2  pipes to the agent (stdin is fed by the agent, stdout/stderr are read by it)
 *   3        the go pipe: lines from the agent. "P<seed>": prepare (re-seed the PRNGs from the
 *            kernel, which just got fresh host entropy, and warm up), any number of times;
 *            "G<seed>": the program text is in place, run it; "E<seed>": the same, and take
 *            the run's environment from SETUP_ENV_FILE first (a plain run then never looks
 *            for the file: under emulation every new path costs its translation, per VM);
 *            "C<seed>", "K<seed>" (with the environment): run it as a cell and stay
 *            (program_go_cell), then read the next line.
 *   4        the ready pipe: the starter writes "R" once it waits, and after each prepare; or the
 *            child writes an int errno when it could not start the interpreter at all
 *
 * Each interpreter waits for go itself (it is running and has loaded what it loads), and makes
 * its random generators fresh from the kernel at prepare or go (start.py, start.js, bash's
 * $RANDOM). A run with an environment of its own takes it from SETUP_ENV_FILE at "E"; node reads
 * some of it only at its start (NODE_OPTIONS, NODE_EXTRA_CA_CERTS), so such a run gets a fresh
 * node instead: a child that waits for go itself, then execs node with the environment.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

#define USER_MAX_PROCESSES 256
#define USER_MAX_OPEN_FILES 1024
#define GO_FD 3
#define READY_FD 4

struct interpreter {
	const char *script;    /* where the agent writes the program text */
	int preloads;          /* takes "--preload" (import the common modules before go) */
	const char *argv[6];   /* NULL-terminated; "--preload" is appended when asked for */
	/* For a run with an environment of its own: a fresh process that waits for go in the
	 * child, then execs this with the environment; NULL: the waiting interpreter takes it. */
	const char *fresh_argv[4];
};

/* bash: $RANDOM is seeded at start-up, so it is seeded again from each line. A cell ("C", "K")
 * is sourced in this one shell, whose variables, functions and working directory carry over,
 * its stdin from AGENT_CELL_STDIN; its status is reported and the next line read. */
#define BASH_STARTER                                                                               \
	"printf R >&4; while :; do read -r line <&3 || exit 125; RANDOM=${line#?}; "                 \
	"case $line in [GE]*) break;; [CK]*) case $line in K*) set -a; . " SETUP_ENV_FILE "; "        \
	"set +a;; esac; unset line; . \"$0\" <" AGENT_CELL_STDIN "; printf 'X%d\\n' $? >&4;; "      \
	"*) printf R >&4;; esac; done; exec 3<&- 4>&-; "                                             \
	"case $line in E*) set -a; . " SETUP_ENV_FILE "; set +a;; esac; unset line; . \"$0\""

/* One per row of AL_LANGUAGES (proto.h); a row left out here is refused at its first run. */
static const struct interpreter interpreters[AL_LANG_END] = {
	[AL_LANG_PYTHON] = {AGENT_RUN_DIR "/main.py", 1,
			    {"/usr/bin/python3", "/usr/lib/airlock/start.py", AGENT_RUN_DIR "/main.py",
			     NULL},
			    {NULL}},
	[AL_LANG_JAVASCRIPT] = {AGENT_RUN_DIR "/main.js", 1,
				{"/usr/bin/node", "/usr/lib/airlock/start.js", AGENT_RUN_DIR "/main.js",
				 NULL},
				{"/usr/bin/node", AGENT_RUN_DIR "/main.js", NULL}},
	[AL_LANG_BASH] = {AGENT_RUN_DIR "/main.sh", 0,
			  {"/bin/bash", "-c", BASH_STARTER, AGENT_RUN_DIR "/main.sh", NULL},
			  {NULL}},
	[AL_LANG_GO] = {AGENT_RUN_DIR "/main.go", 1,
			{"/bin/bash", "/usr/lib/airlock/start-go.sh", AGENT_RUN_DIR "/main.go", NULL},
			{NULL}},
};

static char *const user_environment[] = {
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"HOME=" AGENT_WORK_DIR,
	"USER=sandbox",
	"LOGNAME=sandbox",
	"LANG=C.UTF-8",
	"TERM=dumb",
	"TMPDIR=/tmp",
	/* unbuffered, so output printed before a timeout or a crash is not lost */
	"PYTHONUNBUFFERED=1",
	"PYTHONDONTWRITEBYTECODE=1",
	"MPLBACKEND=module://airlock_plot", /* plt.show() saves PNGs to /work/out */
	"MPLCONFIGDIR=/tmp/.matplotlib",
	/* go: the toolchain's caches in /tmp, nothing downloaded, no C compiler */
	"GOCACHE=/tmp/.cache/go-build",
	"GOPATH=/tmp/go",
	"GOPROXY=off",
	"GOFLAGS=-mod=mod",
	"CGO_ENABLED=0",
	/* node: what an image of one's own installs with npm (images/derived.sh) */
	"NODE_PATH=/usr/local/lib/node_modules",
	NULL,
};

static const struct interpreter *interpreter_of(uint32_t language)
{
	if (language < AL_LANG_FIRST || language >= AL_LANG_END || !interpreters[language].script)
		return NULL;
	return &interpreters[language];
}

const char *program_script_path(uint32_t language)
{
	const struct interpreter *interp = interpreter_of(language);
	return interp ? interp->script : NULL;
}

/* A fresh interpreter's child, before it execs: answers prepares, returns 0 at "G", 1 at "E"
 * (go, with the run's environment). */
static int wait_for_go(void)
{
	char c, first = 0;
	ssize_t n;
	while ((n = read(GO_FD, &c, 1)) == 1) {
		if (!first)
			first = c;
		if (c != '\n')
			continue;
		if (first == 'G' || first == 'E')
			return first == 'E';
		(void)!write(READY_FD, "R", 1);
		first = 0;
	}
	return -1;
}

/* In a child: the sandbox user in a new session, with the user's limits, in /work. Returns 0 or
 * an errno. */
static int become_sandbox_user(void)
{
	struct rlimit nproc = {USER_MAX_PROCESSES, USER_MAX_PROCESSES};
	struct rlimit nofile = {USER_MAX_OPEN_FILES, USER_MAX_OPEN_FILES};
	struct rlimit nocore = {0, 0};
	if (setsid() < 0 || setrlimit(RLIMIT_NPROC, &nproc) != 0 ||
	    setrlimit(RLIMIT_NOFILE, &nofile) != 0 || setrlimit(RLIMIT_CORE, &nocore) != 0)
		return errno;
	if (setgroups(0, NULL) != 0 || setgid(AGENT_USER_GID) != 0 || setuid(AGENT_USER_UID) != 0)
		return errno;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || chdir(AGENT_WORK_DIR) != 0)
		return errno;
	umask(022);
	return 0;
}

/* Whether extra (NAME=VALUE strings, NULL-terminated) sets the variable of entry. */
static bool overridden(const char *entry, char *const *extra)
{
	size_t name_len = strcspn(entry, "=") + 1;
	for (size_t i = 0; extra && extra[i] && i < SETUP_MAX_ENV; i++)
		if (strncmp(extra[i], entry, name_len) == 0)
			return true;
	return false;
}

/* The user's environment followed by extra (NAME=VALUE strings, NULL-terminated), into env
 * (room for SETUP_MAX_ENV more than the user's); a variable extra sets replaces the user's (a
 * program would read the first of two). */
static void compose_environment(char *const *extra, char **env)
{
	size_t n = 0;
	for (size_t i = 0; user_environment[i]; i++)
		if (!overridden(user_environment[i], extra))
			env[n++] = user_environment[i];
	for (size_t i = 0; extra && extra[i] && i < SETUP_MAX_ENV; i++)
		env[n++] = extra[i];
	env[n] = NULL;
}

/* The environment file the agent wrote for this run (setup.c: NAME='VALUE' lines), read by a
 * child that execs its interpreter at go; NULL-terminated into entries, pointing into buf. */
static void read_environment_file(char *buf, size_t buf_len, char **entries)
{
	size_t n = 0;
	entries[0] = NULL;
	int fd = open(SETUP_ENV_FILE, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t len = read(fd, buf, buf_len - 1);
	close(fd);
	if (len <= 0)
		return;
	buf[len] = '\0';
	for (char *line = buf, *next; *line && n < SETUP_MAX_ENV; line = next) {
		char *nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		next = nl + 1;
		char *eq = strchr(line, '=');
		size_t len_line = (size_t)(nl - line);
		if (!eq || eq[1] != '\'' || len_line < (size_t)(eq - line) + 3 || nl[-1] != '\'')
			continue;
		/* NAME='VALUE' -> NAME=VALUE, in place */
		memmove(eq + 1, eq + 2, (size_t)(nl - eq - 3));
		eq[1 + (nl - eq - 3)] = '\0';
		entries[n++] = line;
	}
	entries[n] = NULL;
}

/* In the child: become the sandbox user in a new session and exec argv (the waiting
 * interpreter, or with fresh set a fresh one, exec'd at go). Never returns; a failure is written
 * to the ready pipe as an errno. */
static void exec_child(const char *const *argv, int fresh, const int fds[5])
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);

	/* fds[] may sit on 0..4 themselves: move them out of the way first */
	int high[5], err = 0;
	for (int i = 0; i < 5 && !err; i++)
		if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10)) < 0)
			err = errno;
	for (int i = 0; i < 5 && !err; i++)
		if (dup2(high[i], i) < 0)
			err = errno;
	if (!err)
		err = become_sandbox_user();
	if (!err) {
		static char env_buf[16384];
		char *extra[SETUP_MAX_ENV + 1] = {NULL};
		char *env[sizeof user_environment / sizeof *user_environment + SETUP_MAX_ENV + 1];
		if (fresh) {
			(void)!write(READY_FD, "R", 1);
			int go = wait_for_go();
			if (go < 0)
				_exit(125);
			close(GO_FD);
			close(READY_FD);
			if (go == 1)
				read_environment_file(env_buf, sizeof env_buf, extra);
		}
		compose_environment(extra, env);
		execve(argv[0], (char *const *)argv, env);
		err = errno;
	}
	(void)!write(READY_FD, &err, sizeof err);
	_exit(127);
}

int program_spawn_step(char *const argv[], char *const extra_env[], pid_t *pid_out,
		       int *out_fd)
{
	int out[2];
	if (pipe2(out, O_CLOEXEC) != 0)
		return -errno;
	stop_forget_processes();
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int err = null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out[1], 1) < 0 ||
				  dup2(out[1], 2) < 0
			      ? errno
			      : become_sandbox_user();
		if (!err) {
			char *env[sizeof user_environment / sizeof *user_environment +
				  SETUP_MAX_ENV + 1];
			compose_environment(extra_env, env);
			execve(argv[0], argv, env);
			err = errno;
		}
		dprintf(2, "airlock-agent: cannot run %s: %s\n", argv[0], strerror(err));
		_exit(127);
	}
	int rc = pid < 0 ? -errno : 0;
	close(out[1]);
	if (rc) {
		close(out[0]);
		return rc;
	}
	*pid_out = pid;
	*out_fd = out[0];
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void program_discard(struct program *p)
{
	if (p->pid > 0) {
		kill(p->pid, SIGKILL);
		(void)waitpid(p->pid, NULL, 0);
	}
	close_fd(&p->stdin_fd);
	close_fd(&p->stdout_fd);
	close_fd(&p->stderr_fd);
	close_fd(&p->go_fd);
	close_fd(&p->ready_fd);
	p->pid = 0;
	p->language = 0;
}

/* Waits for the child's answer on the ready pipe. Returns 0 when it waits for go, else -errno. */
static int wait_until_ready(int ready_fd, int timeout_ms, const char **why)
{
	struct pollfd pfd = {ready_fd, POLLIN, 0};
	int n = poll(&pfd, 1, timeout_ms);
	if (n == 0) {
		*why = "did not get ready in time";
		return -ETIMEDOUT;
	}
	int answer = 0;
	ssize_t got = n > 0 ? read(ready_fd, &answer, sizeof answer) : -1;
	if (got == 1 && (char)answer == 'R')
		return 0;
	if (got == (ssize_t)sizeof answer) {
		*why = "could not be started";
		return -answer;
	}
	*why = "ended while starting";
	return -ECHILD;
}

/* Starts argv as the program of language (fresh: a fresh interpreter, see exec_child) and
 * waits until it is ready for go. */
static int start_process(struct program *p, uint32_t language, const char *const *argv, int fresh,
			 int timeout_ms, const char **why)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, go[2] = {-1, -1},
	    ready[2] = {-1, -1};
	*p = PROGRAM_NONE;
	*why = "could not be set up";
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
	    pipe2(go, O_CLOEXEC) || pipe2(ready, O_CLOEXEC)) {
		int rc = -errno;
		int *all[] = {in, out, err, go, ready};
		for (size_t i = 0; i < 5; i++) {
			close_fd(&all[i][0]);
			close_fd(&all[i][1]);
		}
		return rc;
	}
	stop_forget_processes(); /* a user process the note of them does not hold */
	pid_t pid = fork();
	if (pid == 0) {
		const int child_fds[5] = {in[0], out[1], err[1], go[0], ready[1]};
		exec_child(argv, fresh, child_fds);
	}
	int rc = pid < 0 ? -errno : 0;
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(go[0]);
	close(ready[1]);
	*p = (struct program){.pid = pid, .language = language, .stdin_fd = in[1],
			      .stdout_fd = out[0], .stderr_fd = err[0], .go_fd = go[1],
			      .ready_fd = ready[0]};
	if (rc == 0)
		rc = wait_until_ready(ready[0], timeout_ms, why);
	if (rc != 0) {
		if (pid < 0)
			p->pid = 0;
		program_discard(p);
	}
	return rc;
}

int program_start(struct program *p, uint32_t language, int preload, const char **why)
{
	const struct interpreter *interp = interpreter_of(language);
	if (!interp) {
		*why = "has no interpreter in this agent";
		return -EINVAL;
	}
	const char *argv[8];
	size_t n = 0;
	for (; interp->argv[n]; n++)
		argv[n] = interp->argv[n];
	if (preload && interp->preloads)
		argv[n++] = "--preload";
	argv[n] = NULL;
	return start_process(p, language, argv, 0,
			     preload ? PROGRAM_PRELOAD_TIMEOUT_MS : PROGRAM_START_TIMEOUT_MS, why);
}

int program_freshen_for_environment(struct program *p, const char **why)
{
	const struct interpreter *interp = interpreter_of(p->language);
	if (!interp || !interp->fresh_argv[0])
		return 0;
	uint32_t language = p->language;
	program_discard(p);
	return start_process(p, language, interp->fresh_argv, 1, PROGRAM_START_TIMEOUT_MS, why);
}

/* Writes "<command><seed>\n" on the go pipe. */
static int send_line(struct program *p, char command)
{
	uint32_t seed = 0;
	/* after the agent fed the host's entropy to the kernel, so fresh in every VM */
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed)
		seed = (uint32_t)p->pid;
	char line[16];
	int n = snprintf(line, sizeof line, "%c%u\n", command, seed & 0x7fff);
	return write(p->go_fd, line, (size_t)n) == n ? 0 : -EPIPE;
}

/* Reads and drops what is waiting in a pipe (what a prepare printed is not the program's). */
static void drop_pending(int fd)
{
	char buf[512];
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
		return;
	while (read(fd, buf, sizeof buf) > 0)
		;
	(void)fcntl(fd, F_SETFL, flags);
}

int program_prepare(struct program *p)
{
	const char *why;
	int rc = send_line(p, 'P');
	if (rc == 0)
		rc = wait_until_ready(p->ready_fd, PROGRAM_START_TIMEOUT_MS, &why);
	drop_pending(p->stdout_fd);
	drop_pending(p->stderr_fd);
	return rc;
}

int program_go_cell(struct program *p, int with_environment)
{
	return send_line(p, with_environment ? 'K' : 'C');
}

int program_go(struct program *p, int with_environment)
{
	int rc = send_line(p, with_environment ? 'E' : 'G');
	close_fd(&p->go_fd);
	return rc;
}
