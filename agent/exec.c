/* One program run: prepare /work, let the interpreter (started ahead by program.c) run the
 * program, feed its stdin, stream its output to the host within the caps and the host's credit
 * (reading the host's CREDIT frames meanwhile), enforce the timeout,
 * and at the program's end (its exit, its exit report, or the timeout) stop every process of the
 * user before reporting the exit with the files under /work/out.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/random.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

/* The host waits for the answer until 2 s after the program's timeout; the agent's own
 * deadline leaves room for sending it. Within it, stopping the user's processes may take up to
 * STOP_TIMEOUT_MS (they die in microseconds unless something is badly wrong), and collecting
 * /work/out gets the rest, at least COLLECT_MIN_MS. */
#define ANSWER_GRACE_MS 1500
#define STOP_TIMEOUT_MS 1000
#define COLLECT_MIN_MS 250

int run_request_parse(const uint8_t *payload, size_t len, struct run_request *req)
{
	if (len < sizeof req->header)
		return -EPROTO;
	memcpy(&req->header, payload, sizeof req->header);
	const struct al_run *h = &req->header;
	uint64_t body = (uint64_t)h->code_len + h->stdin_len + h->files_len + h->setup_len;
	if (h->version != AL_PROTO_VERSION || body != len - sizeof *h)
		return -EPROTO;
	const uint32_t known = AL_RUN_EGRESS | AL_RUN_CELL | AL_RUN_KEEP;
	if ((h->flags & ~known) != 0 || h->reserved2 != 0 ||
	    ((h->flags & AL_RUN_KEEP) && !(h->flags & AL_RUN_CELL)) ||
	    h->setup_len > AL_SETUP_MAX_LEN)
		return -EPROTO;
	if (h->output_window == 0 || h->output_window > AL_STREAM_MAX_WINDOW)
		return -EPROTO;
	if (h->language < AL_LANG_FIRST || h->language >= AL_LANG_END)
		return -EPROTO;
	req->code = payload + sizeof *h;
	req->stdin_data = req->code + h->code_len;
	req->files = req->stdin_data + h->stdin_len;
	req->setup = req->files + h->files_len;
	return 0;
}

static void set_wall_clock(int64_t wall_clock_ns)
{
	if (wall_clock_ns <= 0)
		return;
	struct timespec ts = {.tv_sec = wall_clock_ns / 1000000000,
			      .tv_nsec = wall_clock_ns % 1000000000};
	if (clock_settime(CLOCK_REALTIME, &ts) != 0)
		perror("airlock-agent: clock_settime");
}

/* The snapshot issue relies on this: every VM starts from the same RAM, so the kernel's CRNG and
 * clock must be refreshed from the host before user code runs. */
void refresh_entropy_and_clock(const uint8_t entropy[64], int64_t wall_clock_ns)
{
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		union { /* the header and its flexible array's 64 bytes */
			struct rand_pool_info info;
			uint8_t bytes[sizeof(struct rand_pool_info) + 64];
		} seed;
		seed.info.entropy_count = 64 * 8;
		seed.info.buf_size = 64;
		memcpy(seed.info.buf, entropy, 64);
		if (ioctl(fd, RNDADDENTROPY, &seed) != 0)
			perror("airlock-agent: RNDADDENTROPY");
		(void)ioctl(fd, RNDRESEEDCRNG);
		close(fd);
	}
	set_wall_clock(wall_clock_ns);
}

static int write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;
			close(fd);
			return err;
		}
		p += n;
		len -= (size_t)n;
	}
	return close(fd) == 0 ? 0 : -errno;
}

/* Milliseconds until deadline, within [least, most]. */
static int ms_until(int64_t deadline, int least, int most)
{
	int64_t left = deadline - monotonic_ms();
	return left < least ? least : left > most ? most : (int)left;
}

struct output_stream {
	int fd;           /* read end of the pipe, -1 once closed */
	uint32_t stream;  /* AL_STREAM_STDOUT or AL_STREAM_STDERR */
	uint64_t cap;     /* bytes to forward */
	uint64_t credit;  /* bytes the host lets us send now */
	uint64_t total;   /* bytes the program wrote */
	int truncated;
};

/* Whether the stream's pipe is worth reading now: open, and not held back for want of credit. */
static int output_readable(const struct output_stream *s)
{
	return s->fd >= 0 &&
	       output_read_size(s->credit, s->total, s->cap, AL_FRAME_MAX_OUTPUT_CHUNK) > 0;
}

/* Forwards n bytes the program wrote on s, up to the cap and the credit (the rest is counted,
 * not sent, and flags the stream). Returns 0, or -errno when the channel fails. */
static int forward_output(int channel_fd, struct output_stream *s, const uint8_t *buf, size_t n)
{
	uint64_t room = s->total < s->cap ? s->cap - s->total : 0;
	if (room > s->credit)
		room = s->credit; /* a pipe is read within its credit; pending output may exceed it */
	size_t forward = (uint64_t)n < room ? n : (size_t)room;
	s->total += (uint64_t)n;
	if (n > forward)
		s->truncated = 1;
	if (forward == 0)
		return 0;
	s->credit -= forward;
	return channel_send_on(channel_fd, AL_FRAME_DATA, s->stream, buf, forward);
}

/* Sends what the Python starter left in its pending buffer (pending.c) after the pipes' own
 * contents: output written before a kill, a crash or os._exit is returned all the same. */
static int forward_pending_output(int channel_fd, struct output_stream streams[2])
{
	static uint8_t buf[AL_PENDING_OUTPUT_SIZE];
	uint32_t stream;
	size_t n = pending_output_take(&stream, buf);
	for (size_t off = 0; off < n;) {
		size_t chunk = n - off < AL_FRAME_MAX_OUTPUT_CHUNK ? n - off : AL_FRAME_MAX_OUTPUT_CHUNK;
		int rc = forward_output(channel_fd, &streams[stream - AL_STREAM_STDOUT], buf + off,
					chunk);
		if (rc)
			return rc;
		off += chunk;
	}
	return 0;
}

/* Reads what is available and forwards it up to the cap and the credit; the rest past the cap is
 * read and dropped so that the program never blocks on a full pipe for it. Returns 0, or -errno
 * when the channel fails. */
static int pump_output(int channel_fd, struct output_stream *s)
{
	static uint8_t buf[AL_FRAME_MAX_OUTPUT_CHUNK];
	size_t want = output_read_size(s->credit, s->total, s->cap, sizeof buf);
	if (want == 0)
		return 0; /* until CREDIT comes */
	ssize_t n = read(s->fd, buf, want);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		close(s->fd);
		s->fd = -1;
		return 0;
	}
	return forward_output(channel_fd, s, buf, (size_t)n);
}

int host_frame_take(int channel_fd, struct output_stream *streams, struct egress *egress)
{
	uint32_t type, stream;
	uint8_t *payload;
	size_t len;
	int rc = channel_recv(channel_fd, &type, &stream, &payload, &len);
	if (rc)
		return rc;
	struct al_credit credit;
	if (stream >= AL_STREAM_FIRST_OPENED && egress) {
		rc = egress_host_frame(egress, channel_fd, type, stream, payload, len);
		if (rc == -EPROTO)
			fprintf(stderr, "airlock-agent: the host broke egress stream %u (frame %u)\n",
				stream, type);
	} else if (type != AL_FRAME_CREDIT || len != sizeof credit || !streams ||
	    (stream != AL_STREAM_STDOUT && stream != AL_STREAM_STDERR)) {
		fprintf(stderr, "airlock-agent: the host sent frame type %u on stream %u\n", type,
			stream);
		rc = -EPROTO;
	} else {
		memcpy(&credit, payload, sizeof credit);
		rc = credit_grant(&streams[stream - AL_STREAM_STDOUT].credit, credit.bytes);
		if (rc)
			fprintf(stderr, "airlock-agent: the host granted credit past the window\n");
	}
	free(payload);
	return rc;
}

/* Forwards what is left in the output pipes, waiting for the host's credit where it is spent
 * until deadline: past it, what is left is not returned (the stream is flagged truncated) and
 * the answer goes with what was sent. Once the user's processes are stopped, all they wrote is
 * in the pipes: the end of file comes only when the dying writers are torn down, which the
 * answer does not wait for. */
static int drain_output(int channel_fd, struct output_stream streams[2], struct egress *egress,
			int64_t deadline)
{
	for (int i = 0; i < 2; i++) {
		struct output_stream *s = &streams[i];
		while (s->fd >= 0) {
			struct pollfd pfd = {s->fd, POLLIN, 0};
			if (poll(&pfd, 1, 0) <= 0)
				break;
			if (!output_readable(s)) {
				struct pollfd host = {channel_fd, POLLIN, 0};
				int ready = poll(&host, 1, ms_until(deadline, 0, INT_MAX));
				if (ready < 0 && errno == EINTR)
					continue;
				if (ready < 0)
					return -errno;
				if (ready == 0) {
					s->truncated = 1; /* no credit in time */
					break;
				}
				int rc = host_frame_take(channel_fd, streams, egress);
				if (rc)
					return rc;
				continue;
			}
			int rc = pump_output(channel_fd, s);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Whether a pipe holds bytes not read yet. */
static int pipe_has_data(int fd)
{
	int n = 0;
	return fd >= 0 && (ioctl(fd, FIONREAD, &n) != 0 || n > 0);
}

static int send_exit(int channel_fd, int status, int timed_out, uint32_t flags,
		     const struct output_stream *out, const struct output_stream *err,
		     const struct out_files *files)
{
	struct al_exit e = {0};
	if (WIFEXITED(status)) {
		e.exit_code = WEXITSTATUS(status);
	} else {
		e.exit_code = -1;
		e.signal = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
	}
	e.flags = flags | (timed_out ? AL_EXIT_TIMED_OUT : 0) |
		  (out->truncated ? AL_EXIT_STDOUT_TRUNCATED : 0) |
		  (err->truncated ? AL_EXIT_STDERR_TRUNCATED : 0) |
		  (files->truncated ? AL_EXIT_FILES_TRUNCATED : 0);
	e.stdout_bytes = out->total;
	e.stderr_bytes = err->total;
	if (!files->payload)
		return channel_send(channel_fd, AL_FRAME_EXIT, &e, sizeof e);
	e.files_len = files->tar_len;
	e.skipped_len = files->skipped_len;
	memcpy(files->payload, &e, sizeof e);
	return channel_send(channel_fd, AL_FRAME_EXIT, files->payload,
			    sizeof e + (size_t)files->tar_len + files->skipped_len);
}

static int prepare_work_dir(int channel_fd, const struct run_request *req, const char *script)
{
	int rc = write_file(script, req->code, req->header.code_len, 0644);
	if (rc) {
		channel_send_error(channel_fd, "cannot write the program to %s: %s", AGENT_RUN_DIR,
				   strerror(-rc));
		return rc;
	}
	if (req->header.files_len) {
		const char *bad = NULL;
		rc = tar_extract(req->files, req->header.files_len, AGENT_WORK_DIR, AGENT_USER_UID,
				 AGENT_USER_GID, &bad);
		if (rc) {
			channel_send_error(channel_fd, "files: cannot write %s: %s",
					   bad ? bad : "(archive)", strerror(-rc));
			return rc;
		}
	}
	if ((mkdir(AGENT_OUT_DIR, 0755) != 0 && errno != EEXIST) ||
	    chown(AGENT_OUT_DIR, AGENT_USER_UID, AGENT_USER_GID) != 0) {
		rc = -errno;
		channel_send_error(channel_fd, "cannot create %s: %s", AGENT_OUT_DIR, strerror(errno));
		return rc;
	}
	return 0;
}

/* Feeds the program's stdin from the request without ever blocking the agent; closes it when
 * all is written or the program stopped reading. */
struct input_stream {
	int fd; /* write end, -1 once closed */
	const uint8_t *data;
	size_t left;
};

static void pump_input(struct input_stream *in)
{
	if (in->fd < 0)
		return;
	while (in->left > 0) {
		ssize_t n = write(in->fd, in->data, in->left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			break; /* EPIPE: the program closed its stdin */
		in->data += n;
		in->left -= (size_t)n;
	}
	close(in->fd);
	in->fd = -1;
}

/* A starter's "X<status>\n" on its ready pipe (python's after it closed its output, node's after
 * its exit listeners), the program's output already in its pipes:
 * returns 1 with *status set (as waitpid would) when it came; closes the fd on anything else.
 * (Parsed by hand: a first sscanf costs milliseconds of translation on an emulated CPU.) */
static int read_exit_report(int *fd, int *status)
{
	char line[8];
	ssize_t n = read(*fd, line, sizeof line);
	int code = -1; /* from "X", one to three digits, "\n" */
	if (n >= 3 && n <= 5 && line[0] == 'X' && line[n - 1] == '\n') {
		code = 0;
		for (ssize_t i = 1; i < n - 1 && code >= 0; i++)
			code = line[i] >= '0' && line[i] <= '9' ? code * 10 + (line[i] - '0') : -1;
	}
	if (code >= 0 && code <= 255) {
		*status = W_EXITCODE(code, 0);
		return 1;
	}
	close(*fd);
	*fd = -1;
	return 0;
}

/* Sets up what the request's setup records ask for and runs its steps, the proxy serving from
 * here on when the run has egress (*egress). Returns 0 to go on with the program, 1 when a step
 * stopped the run (EXIT sent), or -errno (an ERROR was sent when the channel still works). */
static int run_setup(int channel_fd, const struct run_request *req, struct egress **egress,
		     int64_t deadline, int *with_environment)
{
	const struct al_run *h = &req->header;
	struct setup setup;
	int rc = setup_parse(req->setup, h->setup_len, &setup);
	if (rc) {
		channel_send_error(channel_fd, "malformed setup records in the request");
		setup_free(&setup);
		return rc;
	}
	for (size_t i = 0; i < setup.n_steps; i++) { /* a scan step reads the program */
		struct setup_step *step = &setup.steps[i];
		size_t argc = 0;
		while (step->argv[argc])
			argc++;
		if (step->kind == AL_STEP_SCAN && argc + 1 < SETUP_MAX_ARGS) {
			step->argv[argc] = (char *)program_script_path(h->language);
			step->argv[argc + 1] = NULL;
		}
	}
	if ((rc = setup_write_files(&setup)) != 0)
		channel_send_error(channel_fd, "cannot write the run's environment: %s", strerror(-rc));
	if (rc == 0 && (h->flags & AL_RUN_EGRESS) && (rc = egress_start(egress)) != 0)
		channel_send_error(channel_fd, "cannot serve the proxy on 127.0.0.1:%d: %s",
				   AL_EGRESS_PROXY_PORT, strerror(-rc));
	*with_environment = setup.n_env > 0;
	int stopped = 0;
	if (rc == 0 && setup.n_steps)
		rc = setup_run_steps(channel_fd, &setup, *egress, deadline, &stopped);
	setup_free(&setup);
	if (rc == 0 && stopped) {
		struct al_exit e = {.exit_code = -1, .flags = AL_EXIT_NOT_RUN};
		rc = channel_send(channel_fd, AL_FRAME_EXIT, &e, sizeof e);
		return rc ? rc : 1;
	}
	return rc;
}

/* The end of a kept run (AL_RUN_KEEP): every user process stopped, not killed (cell.c), the
 * output drained and the files the cell created or changed collected, then EXIT with
 * AL_EXIT_KEPT. The interpreter, its pipes and whatever else the program left running stay for
 * the VM restored from the save. Returns 0 or -errno as run_program does, or -EAGAIN when the
 * processes would not stop (nothing sent: the caller ends the run as an ordinary one). */
static int keep_cell(int channel_fd, const struct al_run *h, struct program *prog,
		     struct output_stream streams[2], struct egress *egress, int status,
		     int64_t answer_by, const struct timespec *cell_start)
{
	int rc = cell_freeze(ms_until(answer_by, 1, STOP_TIMEOUT_MS));
	if (rc) {
		fprintf(stderr, "airlock-agent: the user's processes did not stop: %s\n",
			strerror(-rc));
		cell_thaw();
		return -EAGAIN;
	}
	rc = drain_output(channel_fd, streams, egress, answer_by);
	egress_stop(egress); /* the proxy's connections do not outlive the call */
	if (rc != 0 || (rc = forward_pending_output(channel_fd, streams)) != 0)
		return rc;
	prog->stdout_fd = streams[0].fd; /* closed by now if the program closed its end */
	prog->stderr_fd = streams[1].fd;
	struct out_files files = {0};
	rc = out_files_collect(AGENT_OUT_DIR, h->out_files_cap,
			       ms_until(answer_by, COLLECT_MIN_MS, INT_MAX), cell_start, &files);
	if (prog->pid <= 0) /* the interpreter ended: the next cell starts a new one */
		program_discard(prog);
	/* the processes the restored VM will have: its run's end then rechecks only those */
	stop_note_processes();
	if (rc == 0)
		rc = send_exit(channel_fd, status, 0, AL_EXIT_KEPT, &streams[0], &streams[1], &files);
	out_files_free(&files);
	return rc;
}

int run_program(int channel_fd, const struct run_request *req, struct program *prog,
		int vm_is_unique)
{
	const struct al_run *h = &req->header;
	const char *why = NULL;
	int rc;
	/* a cell: run in the interpreter a kept run left (or a new one), and leave it running */
	int cell = (h->flags & AL_RUN_CELL) != 0, keep = (h->flags & AL_RUN_KEEP) != 0;

	if (prog->pid > 0 && prog->language != h->language)
		program_discard(prog); /* started for another language */
	if (prog->pid <= 0 && (rc = program_start(prog, h->language, 0, &why)) != 0) {
		channel_send_error(channel_fd, "the interpreter %s: %s", why, strerror(-rc));
		return 0;
	}
	if (vm_is_unique) /* a PING fed the CRNG already: only the clock may have gone stale */
		set_wall_clock(h->wall_clock_ns);
	else
		refresh_entropy_and_clock(h->entropy, h->wall_clock_ns);
	struct timespec cell_start = {0, 0}; /* a cell returns the files it created or changed */
	if (cell)
		clock_gettime(CLOCK_REALTIME_COARSE, &cell_start); /* file times are coarse too */
	rc = prepare_work_dir(channel_fd, req, program_script_path(h->language));
	if (rc == 0 && cell &&
	    (rc = write_file(AGENT_CELL_STDIN, req->stdin_data, h->stdin_len, 0644)) != 0)
		channel_send_error(channel_fd, "cannot write the cell's stdin: %s", strerror(-rc));
	if (rc) {
		program_discard(prog);
		return 0; /* already reported */
	}
	/* the whole run, setup steps included, within the request's timeout */
	int64_t deadline = monotonic_ms() + h->timeout_ms;
	struct egress *egress = NULL;
	int with_environment = 0;
	/* A plain run (no setup records, no egress) skips all of it: in a VM restored from a
	 * snapshot, under emulation, a path not taken before costs its translation and a stack
	 * deeper than before its first page faults: 8 ms of a 20 ms call, measured on tcg. */
	rc = h->setup_len || h->flags
		 ? run_setup(channel_fd, req, &egress, deadline, &with_environment)
		 : 0;
	if (rc != 0) {
		program_discard(prog);
		egress_stop(egress);
		return rc == 1 ? 0 : rc == -EPROTO || rc == -ENOMEM ? 0 : rc;
	}
	if (with_environment && !cell && (rc = program_freshen_for_environment(prog, &why)) != 0) {
		channel_send_error(channel_fd, "the interpreter %s: %s", why, strerror(-rc));
		egress_stop(egress);
		return 0;
	}
	sigset_t chld; /* blocked since the agent started (main.c), so no exit is missed */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	int sig_fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (sig_fd < 0 || timer_fd < 0 ||
	    (prog->stdin_fd >= 0 && fcntl(prog->stdin_fd, F_SETFL, O_NONBLOCK) != 0) ||
	    (cell ? program_go_cell(prog, with_environment) : program_go(prog, with_environment)) !=
		0) {
		channel_send_error(channel_fd, "cannot start the program: %s", strerror(errno));
		program_discard(prog);
		egress_stop(egress);
		return 0;
	}
	pid_t child = prog->pid;
	/* From here on the agent runs before the user's processes whenever it has work (output, the
	 * deadline, the answer), however busy they keep the one vCPU: the answer then does not wait
	 * for the kernel to tear the finished program down. Only for the run, not while the guest
	 * boots (its kernel threads must not wait behind us); children start as ordinary processes. */
	struct sched_param fifo = {.sched_priority = AGENT_RUN_PRIORITY};
	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &fifo) != 0)
		perror("airlock-agent: sched_setscheduler");

	int64_t left_ms = deadline - monotonic_ms();
	if (left_ms < 0)
		left_ms = 0;
	struct itimerspec its = {.it_value = {.tv_sec = left_ms / 1000,
					      .tv_nsec = (long)(left_ms % 1000) * 1000000}};
	if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
		its.it_value.tv_nsec = 1;
	timerfd_settime(timer_fd, 0, &its, NULL);
	int64_t answer_by = deadline + ANSWER_GRACE_MS;

	/* RUN opened both output streams with output_window bytes of credit each */
	struct output_stream streams[2] = {
	    {prog->stdout_fd, AL_STREAM_STDOUT, h->stdout_cap, h->output_window, 0, 0},
	    {prog->stderr_fd, AL_STREAM_STDERR, h->stderr_cap, h->output_window, 0, 0}};
	struct output_stream *out = &streams[0], *err = &streams[1];
	/* a cell's stdin is a file its starter binds (the pipe is closed at the first cell) */
	struct input_stream in = {prog->stdin_fd, req->stdin_data, cell ? 0 : h->stdin_len};
	int report_fd = prog->ready_fd; /* a starter's exit report (python, node) */
	prog->stdin_fd = -1;
	if (!cell) /* this function owns the process now */
		*prog = PROGRAM_NONE;
	pump_input(&in);
	int status = 0, ended = 0, timed_out = 0;

	/* until the program's end: its exit, its exit report, or the timeout */
	while (!ended) {
		/* A stream whose credit is spent is not read: its program waits on a full pipe. The
		 * host's CREDIT frames are read only then, not on every wake-up (a flood past the cap
		 * wakes the agent per pipe write, and polling the port costs an emulated CPU each
		 * time); the few that come meanwhile wait in the port. */
		int out_ready = output_readable(out), err_ready = output_readable(err);
		int needs_credit = (out->fd >= 0 && !out_ready) || (err->fd >= 0 && !err_ready);
		/* with egress the host sends whenever an upstream does: always read it then. The
		 * proxy's descriptors follow in a static array, only in a run that has them (a
		 * deeper stack is a first page fault in a restored VM, see run_setup's call) */
		static struct pollfd with_egress[7 + 1 + AL_EGRESS_MAX_STREAMS];
		struct pollfd plain[7];
		struct pollfd *fds = egress ? with_egress : plain;
		fds[0] = (struct pollfd){out_ready ? out->fd : -1, POLLIN, 0};
		fds[1] = (struct pollfd){err_ready ? err->fd : -1, POLLIN, 0};
		fds[2] = (struct pollfd){sig_fd, POLLIN, 0};
		fds[3] = (struct pollfd){timer_fd, POLLIN, 0};
		fds[4] = (struct pollfd){in.fd, POLLOUT, 0};
		fds[5] = (struct pollfd){report_fd, POLLIN, 0};
		fds[6] = (struct pollfd){needs_credit || egress ? channel_fd : -1, POLLIN, 0};
		int nfds = 7 + egress_poll_fds(egress, fds + 7, 1 + AL_EGRESS_MAX_STREAMS);
		if (poll(fds, (nfds_t)nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			break; /* the agent cannot wait any more: end the program here */
		}
		/* The report comes once the program's output is closed, while the kernel still frees
		 * the interpreter's memory: answering then does not wait for that. The program may
		 * write one itself (python's starter cannot hide the pipe from code in the same
		 * process); since every user process is stopped next, a forged report ends the
		 * program just as exiting with that status would. */
		if (fds[5].revents && read_exit_report(&report_fd, &status))
			ended = 1;
		if (fds[4].revents)
			pump_input(&in);
		if (fds[6].revents && (rc = host_frame_take(channel_fd, streams, egress)) != 0)
			break;
		if ((rc = egress_on_poll(egress, channel_fd, fds + 7, nfds - 7)) != 0)
			break;
		if (fds[0].revents && (rc = pump_output(channel_fd, out)) != 0)
			break;
		if (fds[1].revents && (rc = pump_output(channel_fd, err)) != 0)
			break;
		if (fds[2].revents) {
			struct signalfd_siginfo si;
			while (read(sig_fd, &si, sizeof si) == sizeof si)
				;
			int st;
			pid_t pid;
			while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
				if (pid == child)
					prog->pid = 0; /* a cell's interpreter ended: none is kept */
				if (pid == child && !ended) {
					status = st;
					ended = 1;
				}
			}
		}
		if (fds[3].revents && !ended) {
			timed_out = 1;
			ended = 1;
		}
	}
	if (rc != 0) { /* the channel failed, or the host broke the protocol: no answer */
		egress_stop(egress);
		return rc;
	}
	if (!ended || timed_out)
		status = SIGKILL; /* reads as "killed by SIGKILL" */
	if (in.fd >= 0)
		close(in.fd);
	if (cell)
		prog->ready_fd = report_fd; /* the next cell's report comes there too */
	else if (report_fd >= 0)
		close(report_fd);
	close(sig_fd);
	close(timer_fd);
	if (keep && !timed_out) {
		rc = keep_cell(channel_fd, h, prog, streams, egress, status, answer_by, &cell_start);
		if (rc != -EAGAIN)
			return rc;
		/* the user's processes would not stop: end as an ordinary run, nothing kept */
	}
	if (cell) { /* from here on an ordinary run's end: the kill below takes the interpreter
		     * too (not waited for, as no program is), and the streams' fds close below */
		if (prog->go_fd >= 0)
			close(prog->go_fd);
		if (prog->ready_fd >= 0)
			close(prog->ready_fd);
		*prog = PROGRAM_NONE;
	}

	/* Nothing the program started may outlive it, and nothing of the user's may run while its
	 * output and files are read: what the result holds is what there was at the kill. */
	struct stop_mark mark;
	stop_kill_all(&mark);
	struct out_files files = {0};
	rc = 0;
	if (!pipe_has_data(out->fd) && !pipe_has_data(err->fd) && pending_output_empty() &&
	    !out_files_any(AGENT_OUT_DIR) && stop_nothing_ran_since(&mark)) {
		/* the usual end: nothing left to read, and no user task has run since the kill,
		 * so none can have added anything; the dying ones are not waited for */
	} else {
		int stopped = stop_user_processes(ms_until(answer_by, 1, STOP_TIMEOUT_MS));
		if (stopped != 0)
			fprintf(stderr, "airlock-agent: the user's processes did not stop: %s\n",
				strerror(-stopped));
		if (stopped == 0 && ((rc = drain_output(channel_fd, streams, egress, answer_by)) != 0 ||
				     (rc = forward_pending_output(channel_fd, streams)) != 0)) {
			egress_stop(egress);
			return rc;
		}
		if (stopped == 0)
			rc = out_files_collect(AGENT_OUT_DIR, h->out_files_cap,
					       ms_until(answer_by, COLLECT_MIN_MS, INT_MAX),
					       cell ? &cell_start : NULL, &files);
		else
			files.truncated = 1; /* a process still running could change them */
	}
	if (out->fd >= 0)
		close(out->fd);
	if (err->fd >= 0)
		close(err->fd);
	egress_stop(egress); /* the user's processes are gone: so are their connections */
	if (rc == 0)
		rc = send_exit(channel_fd, status, timed_out, 0, out, err, &files);
	out_files_free(&files);
	return rc;
}

void warm_up_run_path(void)
{
	/* an emulated CPU translates code on first use: run the kernel's fork, kill, exit and wait
	 * paths (and the agent's) once while the VM waits in the pool, not during the request */
	pid_t pid = fork();
	if (pid == 0)
		for (;;)
			pause();
	if (pid > 0) {
		(void)kill(pid, SIGKILL); /* as the end of a run kills */
		(void)kill(-1, 0);        /* the walk of kill(-1), signalling nothing */
		(void)waitpid(pid, NULL, 0);
		stop_count_own_task();
		/* its SIGCHLD (blocked) would otherwise wake the run's first poll for nothing */
		sigset_t chld;
		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		struct timespec now = {0, 0};
		(void)sigtimedwait(&chld, NULL, &now);
	}
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (fd >= 0)
		close(fd);
	stop_warm_up();
	out_files_warm_up();
	/* the file system paths a request takes: a file in the run directory, a directory in /work */
	static const char warm_file[] = AGENT_RUN_DIR "/warm-up";
	if (write_file(warm_file, "x", 1, 0600) == 0)
		unlink(warm_file);
	static const char warm_dir[] = AGENT_WORK_DIR "/.warm-up";
	if (mkdir(warm_dir, 0755) == 0) {
		(void)!chown(warm_dir, AGENT_USER_UID, AGENT_USER_GID);
		rmdir(warm_dir);
	}
}
