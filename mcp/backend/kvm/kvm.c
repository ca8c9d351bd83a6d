/* The kvm backend: airlock-vmm, our own KVM monitor, one process per VM. Used only where this
 * host's KVM can really run a guest (host_kvm_usable). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "confine.h"

/* The VM process's fds beyond the sandbox's (backend.h): a kept state's files */
#define FD_STATE_IN 4   /* the state restored: its state file */
#define FD_PAGES_IN 5   /* and its pages (vmm/pages.h) */
#define FD_KEEP_STATE 6 /* a VM that may be kept: where SIGUSR2 writes its state */
#define FD_KEEP_PAGES 7 /* and its changed pages */

#define JAIL_CHECK_TIMEOUT_MS 10000 /* a few ms on a host, ~0.1 s in the emulated KVM test host */
#define JAIL_CHECK_OUTPUT_MAX 2048

extern char **environ;

static int vmm_path(char *out, size_t out_len)
{
	return locate_program("AIRLOCK_VMM", "../vmm/airlock-vmm", "airlock-vmm", out, out_len);
}

/* The last non-empty line of text, without airlock-vmm's prefix, into out. */
static void last_line(char *text, char *out, size_t out_len)
{
	size_t n = strlen(text);
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		text[--n] = '\0';
	char *line = strrchr(text, '\n');
	line = line ? line + 1 : text;
	if (strncmp(line, "airlock-vmm: ", 13) == 0)
		line += 13;
	snprintf(out, out_len, "%s", line[0] ? line : "no message");
}

/* Runs `airlock-vmm --jail-check`: the jail every VM builds (the same code: namespaces, ids,
 * empty root, seccomp), built once with no VM, so that a host where it cannot be built (user
 * namespaces off, a chrooted airlock, a container's seccomp policy) is told here, in
 * airlock-vmm's own words, the words a VM's failure would end with. Returns 0 or -EPERM;
 * why gets airlock-vmm's last line either way. */
static int jail_check(const char *vmm, char *why, size_t why_len)
{
	int out[2];
	if (pipe2(out, O_CLOEXEC) != 0) {
		snprintf(why, why_len, "cannot check the jail: pipe: %s", strerror(errno));
		return -errno;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDERR_FILENO);
	char *argv[] = {(char *)vmm, "--jail-check", NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, vmm, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	if (rc != 0) {
		close(out[0]);
		snprintf(why, why_len, "cannot run airlock-vmm: %s", strerror(rc));
		return -rc;
	}
	char text[JAIL_CHECK_OUTPUT_MAX];
	size_t len = 0;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	bool timed_out = false;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		int n = waited < JAIL_CHECK_TIMEOUT_MS ? poll(&p, 1, (int)(JAIL_CHECK_TIMEOUT_MS - waited))
						       : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			timed_out = n == 0;
			break;
		}
		char buf[512];
		ssize_t got = read(out[0], buf, sizeof buf);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		/* keep the end: the last line is the verdict */
		if ((size_t)got > sizeof text - 1 - len) {
			size_t drop = (size_t)got - (sizeof text - 1 - len);
			drop = drop > len ? len : drop;
			memmove(text, text + drop, len - drop);
			len -= drop;
		}
		size_t take = (size_t)got < sizeof text - 1 - len ? (size_t)got : sizeof text - 1 - len;
		memcpy(text + len, buf + (size_t)got - take, take);
		len += take;
	}
	close(out[0]);
	text[len] = '\0';
	if (timed_out)
		kill(pid, SIGKILL);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			status = -1;
			break;
		}
	if (timed_out) {
		snprintf(why, why_len, "airlock-vmm --jail-check did not finish within %d s",
			 JAIL_CHECK_TIMEOUT_MS / 1000);
		return -ETIMEDOUT;
	}
	last_line(text, why, why_len);
	return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}

static int kvm_probe(char *why, size_t why_len)
{
	char kvm_why[256], path[4096];
	if (!host_kvm_usable(kvm_why, sizeof kvm_why)) {
		snprintf(why, why_len, "%s", kvm_why);
		return -ENODEV;
	}
	if (vmm_path(path, sizeof path) != 0) {
		snprintf(why, why_len, "airlock-vmm not found (looked beside airlock and at %s; set "
				       "AIRLOCK_VMM)",
			 path);
		return -ENOENT;
	}
	char jail_why[512];
	if (!vm_unconfined() && jail_check(path, jail_why, sizeof jail_why) != 0) {
		snprintf(why, why_len, "airlock-vmm cannot build its jail here: %s", jail_why);
		return -EPERM;
	}
	snprintf(why, why_len, "airlock-vmm on KVM (%s; its jail builds)", kvm_why);
	return 0;
}

static int push_command(const struct vm_spec *s, struct argv_list *a)
{
	char path[4096];
	if (vmm_path(path, sizeof path) != 0)
		return -ENOENT;
	int rc = 0;
	rc |= argv_push(a, "%s", path);
	if (s->mode == VM_RESTORE) {
		rc |= argv_push(a, "--restore=%s", s->snapshot_dir);
		if (s->kept_state_dir) {
			rc |= argv_push(a, "--state-in-fd=%d", FD_STATE_IN);
			rc |= argv_push(a, "--pages-in-fd=%d", FD_PAGES_IN);
		}
		if (s->keep_to_dir)
			rc |= argv_push(a, "--keep-to-fds=%d,%d", FD_KEEP_STATE, FD_KEEP_PAGES);
	} else {
		rc |= argv_push(a, "--kernel=%s", s->kernel);
		rc |= argv_push(a, "--memory-mb=%u", s->memory_mb);
		rc |= argv_push(a, "--vcpus=%u", s->vcpus);
	}
	rc |= argv_push(a, "--rootfs=%s", s->rootfs);
	rc |= argv_push(a, "--channel-fd=%d", VM_FD_CHANNEL);
	rc |= argv_push(a, "--serial-stdout");
	if (vm_unconfined())
		rc |= argv_push(a, "--unconfined");
	else if (s->run_as_uid)
		/* airlock is root: the VM's own user outside (airlock-vmm refuses it otherwise) */
		rc |= argv_push(a, "--run-as=%u:%u", s->run_as_uid, s->run_as_uid);
	if (s->mode == VM_MAKE_SNAPSHOT) {
		/* the snapshot is taken on SIGUSR2 (kvm_save), once the host has seen READY */
		rc |= argv_push(a, "--cmdline-extra=airlock.warm=%s", s->language);
		rc |= argv_push(a, "--snapshot-to=%s", s->snapshot_dir);
	}
	return rc ? -ENOMEM : 0;
}

/* Kept state: the files of the state restored and of the state a save writes, as fds
 * (kept_files_open). */
static int open_kept_state_files(const struct vm_spec *s, struct vm_launch *launch, char *err,
				 size_t err_len)
{
	struct kept_files f;
	int rc = kept_files_open(s, &f, err, err_len);
	launch->fds[FD_STATE_IN] = f.state_in;
	launch->fds[FD_PAGES_IN] = f.pages_in;
	launch->fds[FD_KEEP_STATE] = f.state_out;
	launch->fds[FD_KEEP_PAGES] = f.pages_out;
	return rc;
}

static int kvm_prepare(const struct vm_spec *s, struct vm_launch *launch, char *err,
		       size_t err_len)
{
	int rc = s->mode == VM_RESTORE ? open_kept_state_files(s, launch, err, err_len) : 0;
	if (rc)
		return rc;
	rc = push_command(s, &launch->argv);
	if (rc)
		snprintf(err, err_len, "cannot build airlock-vmm's command line: %s", strerror(-rc));
	return rc;
}

/* airlock-vmm saves the VM into --snapshot-to (or a kept state into the fds of --keep-to-fds)
 * and exits 0. */
static int kvm_save(struct vm_launch *launch, pid_t pid, char *err, size_t err_len)
{
	(void)launch;
	if (kill(pid, SIGUSR2) == 0)
		return 0;
	int rc = -errno;
	snprintf(err, err_len, "cannot signal airlock-vmm to save: %s", strerror(-rc));
	return rc;
}

static unsigned kvm_snapshot_tsc_khz(void)
{
	return 0; /* airlock-vmm asks KVM, and its snapshot holds the rate */
}

const struct backend backend_kvm = {
	.name = "kvm",
	.probe = kvm_probe,
	.program = vmm_path,
	.prepare = kvm_prepare,
	.save = kvm_save,
	.save_progress = NULL,
	.snapshot_tsc_khz = kvm_snapshot_tsc_khz,
};
