/* The setup steps of a run (installing packages, the pre-scan): each a process of the sandbox
 * user in /work, run before the program, one after the other, within the run's deadline. Its
 * stdout and stderr go into one pipe, of which the last AL_STEP_MAX_OUTPUT bytes go back in a
 * STEP frame. While a step runs, the proxy keeps serving (an installer downloads through it).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

/* What a step wrote: the last AL_STEP_MAX_OUTPUT bytes, and how many in all. */
struct step_output {
	uint8_t data[2 * AL_STEP_MAX_OUTPUT];
	size_t len;
	uint64_t total;
};

static void keep_output(struct step_output *o, const uint8_t *buf, size_t n)
{
	o->total += n;
	if (n >= AL_STEP_MAX_OUTPUT) {
		memcpy(o->data, buf + n - AL_STEP_MAX_OUTPUT, AL_STEP_MAX_OUTPUT);
		o->len = AL_STEP_MAX_OUTPUT;
		return;
	}
	if (o->len + n > sizeof o->data) { /* keep the last AL_STEP_MAX_OUTPUT - n */
		size_t keep = AL_STEP_MAX_OUTPUT - n;
		memmove(o->data, o->data + o->len - keep, keep);
		o->len = keep;
	}
	memcpy(o->data + o->len, buf, n);
	o->len += n;
}

static int send_step(int channel_fd, const struct setup_step *step, int status, int64_t started,
		     int stops_run, const struct step_output *o)
{
	size_t len = o->len < AL_STEP_MAX_OUTPUT ? o->len : AL_STEP_MAX_OUTPUT;
	const uint8_t *tail = o->data + o->len - len;
	struct al_step head = {
	    .kind = step->kind,
	    .exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	    .duration_ms = (uint32_t)(monotonic_ms() - started),
	    .stops_run = (uint32_t)stops_run,
	    .output_len = (uint32_t)len,
	    .output_total_hi = (uint32_t)(o->total >> 32),
	    .output_total_lo = (uint32_t)o->total,
	};
	uint8_t *frame = malloc(sizeof head + len);
	if (!frame)
		return -ENOMEM;
	memcpy(frame, &head, sizeof head);
	memcpy(frame + sizeof head, tail, len);
	int rc = channel_send(channel_fd, AL_FRAME_STEP, frame, sizeof head + len);
	free(frame);
	return rc;
}

/* Runs one step to its end or the deadline. *status is as waitpid's (SIGKILL at the deadline).
 * Returns 0, or -errno when the channel or the agent failed. */
static int run_step(int channel_fd, const struct setup_step *step, const struct setup *s,
		    struct egress *egress, int64_t deadline, int *status, struct step_output *o)
{
	int out_fd = -1;
	pid_t pid;
	int rc = program_spawn_step(step->argv, s->env, &pid, &out_fd);
	if (rc)
		return rc;
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	int sig_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sig_fd < 0) {
		rc = -errno;
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(out_fd);
		return rc;
	}
	int ended = 0;
	*status = W_EXITCODE(0, SIGKILL);
	while (!ended && rc == 0) {
		struct pollfd fds[3 + 1 + AL_EGRESS_MAX_STREAMS];
		fds[0] = (struct pollfd){out_fd, POLLIN, 0};
		fds[1] = (struct pollfd){sig_fd, POLLIN, 0};
		fds[2] = (struct pollfd){egress ? channel_fd : -1, POLLIN, 0};
		int n = 3 + egress_poll_fds(egress, fds + 3, 1 + AL_EGRESS_MAX_STREAMS);
		int64_t left = deadline - monotonic_ms();
		if (left <= 0)
			break;
		int ready = poll(fds, (nfds_t)n, left > 1000000 ? 1000000 : (int)left);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0) {
			rc = -errno;
			break;
		}
		if (fds[0].revents && out_fd >= 0) {
			uint8_t buf[16384];
			ssize_t got = read(out_fd, buf, sizeof buf);
			if (got > 0)
				keep_output(o, buf, (size_t)got);
			else if (got == 0 || errno != EINTR) {
				close(out_fd);
				out_fd = -1;
			}
		}
		if (fds[1].revents) {
			struct signalfd_siginfo si;
			while (read(sig_fd, &si, sizeof si) == sizeof si)
				;
			int st;
			pid_t done;
			if ((done = waitpid(pid, &st, WNOHANG)) == pid) {
				*status = st;
				ended = 1;
			}
		}
		if (fds[2].revents)
			rc = host_frame_take(channel_fd, NULL, egress);
		if (rc == 0)
			rc = egress_on_poll(egress, channel_fd, fds + 3, n - 3);
	}
	/* what it started may not outlive it; its last words are in the pipe */
	kill(-pid, SIGKILL);
	if (!ended) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	while (out_fd >= 0) {
		uint8_t buf[16384];
		int waiting = 0;
		struct pollfd pfd = {out_fd, POLLIN, 0};
		if (poll(&pfd, 1, 0) > 0) {
			ssize_t got = read(out_fd, buf, sizeof buf);
			if (got > 0) {
				keep_output(o, buf, (size_t)got);
				waiting = 1;
			}
		}
		if (!waiting) {
			close(out_fd);
			out_fd = -1;
		}
	}
	close(sig_fd);
	stop_forget_processes();
	return rc;
}

int setup_run_steps(int channel_fd, const struct setup *s, struct egress *egress,
		    int64_t deadline, int *stopped)
{
	*stopped = 0;
	for (size_t i = 0; i < s->n_steps; i++) {
		const struct setup_step *step = &s->steps[i];
		struct step_output *o = calloc(1, sizeof *o);
		if (!o)
			return -ENOMEM;
		int64_t started = monotonic_ms();
		int status = 0;
		int rc = run_step(channel_fd, step, s, egress, deadline, &status, o);
		int failed = !WIFEXITED(status) ||
			     (step->fail_status ? WEXITSTATUS(status) == (int)step->fail_status
						: WEXITSTATUS(status) != 0);
		if (rc == 0)
			rc = send_step(channel_fd, step, status, started, failed, o);
		free(o);
		if (rc)
			return rc;
		if (failed) {
			*stopped = 1;
			return 0;
		}
	}
	return 0;
}
