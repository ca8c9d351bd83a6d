/* The jail's first step: the VM runs as pid 1 of a pid namespace of its own, so that it can name
 * no other process of the host (a kill or ptrace that got past the seccomp filter would find
 * none: every jailed monitor runs as the same user, nobody).
 *
 * A pid namespace only ever takes a process's children, and a KVM VM works only in the process
 * that created it (its mm), so this comes before anything else: airlock-vmm forks at once. The
 * child goes on to be the VM. The parent stays outside as its supervisor, the process airlock
 * knows: it forwards the snapshot signal, turns a request to end into SIGKILL (pid 1 of a
 * namespace ignores signals it has no handler for), and ends as the VM ended, exit status or
 * signal, so that airlock sees no difference. It holds no fd but stderr and runs with no
 * capability, no_new_privs, and (when the VM will) as nobody. Both die when airlock dies
 * (parent-death signals); the VM also when the supervisor dies, however it dies.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail.h"
#include "vmm.h"

#define SUPERVISOR_MAX_FDS 8

/* In the VM: the read end of a pipe whose write end only the supervisor holds, so that it
 * reads as hung up once the supervisor is gone (getppid() says nothing in a pid namespace whose
 * parent is outside it). -1 where there is no supervisor. */
static int supervisor_alive_fd = -1;
static pid_t vm_pid;      /* in the supervisor */
static pid_t airlock_pid; /* the supervisor's parent, from the start */

bool jail_parent_gone(void)
{
	if (supervisor_alive_fd < 0) /* reparented: to init, or to a subreaper */
		return airlock_pid ? getppid() != airlock_pid : getppid() == 1;
	struct pollfd p = {.fd = supervisor_alive_fd, .events = POLLIN};
	return poll(&p, 1, 0) != 0; /* the supervisor never writes: any event is its end */
}

/* A pid namespace needs CAP_SYS_ADMIN: root has it; anyone else gets it in a user namespace
 * of their own, made for this, mapping them to themselves (jail_enter's comes inside it). */
static int unshare_pid_namespace(void)
{
	if (geteuid() == 0)
		return unshare(CLONE_NEWPID) == 0 ? 0 : jail_failed("unshare (pid)");
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0)
		return jail_failed("unshare (user, pid)");
	return jail_map_ids(uid, uid, gid, gid);
}

static void forward_signal(int sig)
{
	int saved = errno;
	/* the snapshot signal as it is (the VM has its handler); anything else asked it to end. A
	 * VM not yet nobody cannot be signalled by a supervisor that already is: the supervisor then
	 * ends itself, and the VM with it (its parent-death signal). */
	if (kill(vm_pid, sig == SIGUSR2 ? SIGUSR2 : SIGKILL) != 0 && sig != SIGUSR2)
		_exit(128 + sig);
	errno = saved;
}

static int confine_supervisor(bool keep_root)
{
	uid_t uid;
	gid_t gid;
	/* the bounding set first: dropping it takes a capability that becoming nobody clears */
	int rc = jail_drop_bounding_set();
	if (rc == 0)
		rc = jail_become_unprivileged(&uid, &gid, keep_root);
	if (rc == 0)
		rc = jail_drop_capabilities();
	struct rlimit no_core = {0, 0}, fds = {SUPERVISOR_MAX_FDS, SUPERVISOR_MAX_FDS};
	if (rc == 0 && (setrlimit(RLIMIT_CORE, &no_core) != 0 || setrlimit(RLIMIT_NOFILE, &fds) != 0))
		rc = jail_failed("setrlimit");
	if (rc == 0 && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
			prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0))
		rc = jail_failed("prctl");
	return rc;
}

/* Never returns. mask: the signal mask to restore once the handlers are in place. */
static void supervise(int alive_fd, bool keep_root, const sigset_t *mask)
{
	/* Everything but stderr (its log) and the pipe that tells the VM it lives: the host channel
	 * in particular, whose end airlock must see when the VM ends. */
	for (int fd = 0; fd < alive_fd; fd++)
		if (fd != STDERR_FILENO)
			close(fd);
	close_range((unsigned)alive_fd + 1, ~0u, 0);
	struct sigaction forward = {.sa_handler = forward_signal};
	sigemptyset(&forward.sa_mask);
	const int forwarded[] = {SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGQUIT};
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaction(forwarded[i], &forward, NULL);
	sigprocmask(SIG_SETMASK, mask, NULL); /* what came meanwhile is forwarded now */
	if (confine_supervisor(keep_root) != 0) {
		vmm_log("the supervisor of the VM cannot confine itself: the VM is ended");
		if (kill(vm_pid, SIGKILL) != 0) /* else reaped below */
			_exit(1);          /* and the VM with it */
	}
	int status;
	while (waitpid(vm_pid, &status, 0) < 0)
		if (errno != EINTR)
			_exit(1);
	if (WIFEXITED(status))
		_exit(WEXITSTATUS(status));
	int sig = WTERMSIG(status);
	signal(sig, SIG_DFL); /* end the same way (no core dump: its limit is 0) */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	_exit(128 + sig);
}

int jail_begin(bool writes_snapshot)
{
	int alive[2];
	if (pipe2(alive, O_CLOEXEC) != 0)
		return jail_failed("pipe");
	airlock_pid = getppid();
	/* signals wait until each side has its handlers (the supervisor's forward them) */
	sigset_t all, mask;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &mask);
	int rc = unshare_pid_namespace();
	pid_t pid = rc == 0 ? fork() : -1;
	if (pid < 0) {
		if (rc == 0)
			rc = jail_failed("fork");
		sigprocmask(SIG_SETMASK, &mask, NULL);
		close(alive[0]);
		close(alive[1]);
		return rc;
	}
	if (pid > 0) {
		vm_pid = pid;
		close(alive[0]);
		supervise(alive[1], writes_snapshot, &mask);
	}
	sigprocmask(SIG_SETMASK, &mask, NULL);
	close(alive[1]);
	supervisor_alive_fd = alive[0];
	/* the VM ends with its supervisor, and with airlock through it */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		return jail_failed("PR_SET_PDEATHSIG");
	return jail_parent_gone() ? -ESRCH : 0;
}
