/* The jail's first step: the VM runs as pid 1 of a pid namespace of its own, so that it can name
 * no other process of the host (a kill or ptrace that got past the seccomp filter would find
 * none).
 *
 * A pid namespace only ever takes a process's children, and a KVM VM works only in the process
 * that created it (its mm), so this comes before anything else: airlock-vmm forks at once. The
 * child goes on to be the VM. The parent stays outside as its supervisor, the process airlock
 * knows: it forwards the snapshot signal, turns a request to end into SIGKILL (pid 1 of a
 * namespace ignores signals it has no handler for), and ends as the VM ended, exit status or
 * signal, so that airlock sees no difference. Started as root, it first writes the id maps of
 * the user namespace the VM makes (jail.c): only a process still root outside may map the
 * VM's root to another user, and so the namespace stays root's, not the VM user's. Then it
 * becomes the VM's user (--run-as, else nobody) and holds no fd but stderr, no capability, and
 * runs with no_new_privs, never dumpable. Both die when airlock dies (parent-death signals);
 * the VM also when the supervisor dies, however it dies.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jail.h"
#include "vmm.h"

#define SUPERVISOR_MAX_FDS 8

/* In the VM: the read end of a pipe whose write end only the supervisor holds, so that it
 * reads as hung up once the supervisor is gone (getppid() says nothing in a pid namespace whose
 * parent is outside it). -1 where there is no supervisor. */
static int supervisor_alive_fd = -1;
/* In the VM started as root: its end of the socket on which it asks for its id maps, until
 * they are written. */
static int id_map_fd = -1;
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
static int unshare_pid_namespace(const struct jail_identity *id)
{
	if (id->from_root)
		return unshare(CLONE_NEWPID) == 0
			       ? 0
			       : jail_refused("unshare (pid)", jail_unshare_refused_because(errno));
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0)
		return jail_refused("unshare (user, pid)", jail_unshare_refused_because(errno));
	return jail_map_ids("self", uid, uid, gid, gid);
}

static void forward_signal(int sig)
{
	int saved = errno;
	/* the snapshot signal as it is (the VM has its handler); anything else asked it to end. A
	 * VM still root cannot be signalled by a supervisor that is no longer: the supervisor then
	 * ends itself, and the VM with it (its parent-death signal). */
	if (kill(vm_pid, sig == SIGUSR2 ? SIGUSR2 : SIGKILL) != 0 && sig != SIGUSR2)
		_exit(128 + sig);
	errno = saved;
}

/* Root outside still: waits for the VM to make its user namespace, then writes its maps (the
 * VM's root is id's uid and gid outside) and answers 0 or -errno. Nothing to do when the VM
 * ends first. */
static void write_vm_id_maps(int fd, const struct jail_identity *id)
{
	char request;
	ssize_t n;
	while ((n = recv(fd, &request, 1, 0)) < 0 && errno == EINTR)
		;
	if (n != 1)
		return;
	char pid[16];
	snprintf(pid, sizeof pid, "%d", (int)vm_pid);
	int rc = jail_map_ids(pid, 0, id->uid, 0, id->gid);
	while (send(fd, &rc, sizeof rc, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

int jail_request_id_maps(void)
{
	char request = 'm';
	int rc = -EPROTO;
	ssize_t n;
	while ((n = send(id_map_fd, &request, 1, MSG_NOSIGNAL)) < 0 && errno == EINTR)
		;
	if (n == 1)
		while ((n = recv(id_map_fd, &rc, sizeof rc, 0)) < 0 && errno == EINTR)
			;
	close(id_map_fd);
	id_map_fd = -1;
	if (n != (ssize_t)sizeof rc) {
		vmm_log("jail: the supervisor wrote no id maps (it ended)");
		return -ESRCH;
	}
	return rc; /* the supervisor logged why, on the same stderr */
}

static int confine_supervisor(const struct jail_identity *id)
{
	/* the bounding set first: dropping it takes a capability that the change of user clears */
	int rc = jail_drop_bounding_set();
	if (rc == 0 && id->from_root && id->uid != 0)
		rc = jail_switch_ids(id->uid, id->gid, true);
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
static void supervise(int alive_fd, int maps_fd, const struct jail_identity *id,
		      const sigset_t *mask)
{
	/* Everything but stderr (its log), the pipe that tells the VM it lives and the socket of
	 * the id maps: the host channel in particular, whose end airlock must see when the VM
	 * ends. */
	const int keep[] = {STDERR_FILENO, alive_fd, maps_fd};
	jail_close_fds_except(keep, maps_fd < 0 ? 2 : 3);
	struct sigaction forward = {.sa_handler = forward_signal};
	sigemptyset(&forward.sa_mask);
	const int forwarded[] = {SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGQUIT};
	for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
		sigaction(forwarded[i], &forward, NULL);
	sigprocmask(SIG_SETMASK, mask, NULL); /* what came meanwhile is forwarded now */
	if (maps_fd >= 0) {
		write_vm_id_maps(maps_fd, id);
		close(maps_fd);
	}
	if (confine_supervisor(id) != 0) {
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

int jail_begin(const struct jail_identity *id)
{
	int alive[2], maps[2] = {-1, -1};
	if (pipe2(alive, O_CLOEXEC) != 0)
		return jail_failed("pipe");
	if (id->from_root && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, maps) != 0) {
		int rc = jail_failed("socketpair");
		close(alive[0]);
		close(alive[1]);
		return rc;
	}
	airlock_pid = getppid();
	/* signals wait until each side has its handlers (the supervisor's forward them) */
	sigset_t all, mask;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &mask);
	int rc = unshare_pid_namespace(id);
	pid_t pid = rc == 0 ? fork() : -1;
	if (pid < 0) {
		if (rc == 0)
			rc = jail_failed("fork");
		sigprocmask(SIG_SETMASK, &mask, NULL);
		close(alive[0]);
		close(alive[1]);
		if (maps[0] >= 0) {
			close(maps[0]);
			close(maps[1]);
		}
		return rc;
	}
	if (pid > 0) {
		vm_pid = pid;
		close(alive[0]);
		if (maps[1] >= 0)
			close(maps[1]);
		supervise(alive[1], maps[0], id, &mask);
	}
	sigprocmask(SIG_SETMASK, &mask, NULL);
	close(alive[1]);
	if (maps[0] >= 0)
		close(maps[0]);
	supervisor_alive_fd = alive[0];
	id_map_fd = maps[1];
	/* the VM ends with its supervisor, and with airlock through it */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		return jail_failed("PR_SET_PDEATHSIG");
	return jail_parent_gone() ? -ESRCH : 0;
}
