/* airlock-agent: PID 1 of every airlock microVM. Sets up the guest (mounts, loopback), tells the
 * host it is READY, runs exactly one program on request, reports it, and ends the VM (or, for
 * a kept run, waits to continue in the VM restored from its save: proto.h, "Kept state").
 * PID 1 must never exit (the kernel would panic), so every failure ends in reboot(), which the
 * VMM sees as the end of the VM (the kernel runs with reboot=t: a triple fault).
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#define TMP_SEED "/usr/share/airlock/tmp-seed" /* caches built with the image, e.g. matplotlib's */
#define TMP_SEED_MAX_DEPTH 4
#define CHANNEL_WAIT_MS 10000 /* virtio-console may register its port after init starts */

struct mount_point {
	const char *source, *target, *type;
	unsigned long flags;
	const char *data;
};

#define STRINGIFY(x) #x
#define STRINGIFY_VALUE(x) STRINGIFY(x)
#define TMPFS_SIZE STRINGIFY_VALUE(AL_GUEST_TMPFS_MB) "m"

/* The root file system is mounted read-only by the kernel (`ro`); everything writable is a
 * size-capped tmpfs. */
static const struct mount_point mounts[] = {
	{"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
	{"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL},
	{"devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666"},
	{"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m"},
	{"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64m"},
	{"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=" TMPFS_SIZE},
	{"tmpfs", "/work", "tmpfs", MS_NOSUID | MS_NODEV,
	 "mode=0755,size=" TMPFS_SIZE ",uid=1000,gid=1000"},
};

static void log_error(const char *what)
{
	fprintf(stderr, "airlock-agent: %s: %s\n", what, strerror(errno));
}

static int mount_all(void)
{
	for (size_t i = 0; i < sizeof mounts / sizeof mounts[0]; i++) {
		const struct mount_point *m = &mounts[i];
		mkdir(m->target, 0755); /* fails harmlessly on the read-only root when it exists */
		if (mount(m->source, m->target, m->type, m->flags, m->data) != 0 && errno != EBUSY) {
			log_error(m->target);
			return -errno;
		}
	}
	if (mkdir(AGENT_RUN_DIR, 0755) != 0 && errno != EEXIST) {
		log_error(AGENT_RUN_DIR);
		return -errno;
	}
	return 0;
}

static int copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = 0;
	if (in >= 0)
		out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	char buf[65536];
	ssize_t n;
	while (out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n)
			rc = -EIO;
	if (in < 0 || out < 0 || fchown(out, AGENT_USER_UID, AGENT_USER_GID) != 0)
		rc = -errno;
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return rc;
}

/* Copies the image's seed tree into the fresh /tmp, owned by the sandbox user. */
static void seed_tmp(const char *src, const char *dst, int depth)
{
	DIR *dir = opendir(src);
	if (!dir)
		return;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char from[512], to[512];
		if ((size_t)snprintf(from, sizeof from, "%s/%s", src, e->d_name) >= sizeof from ||
		    (size_t)snprintf(to, sizeof to, "%s/%s", dst, e->d_name) >= sizeof to)
			continue;
		struct stat st;
		if (lstat(from, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < TMP_SEED_MAX_DEPTH) {
			if (mkdir(to, 0755) == 0 && chown(to, AGENT_USER_UID, AGENT_USER_GID) == 0)
				seed_tmp(from, to, depth + 1);
		} else if (S_ISREG(st.st_mode) && copy_file(from, to) != 0) {
			log_error(to);
		}
	}
	closedir(dir);
}

/* Loopback is the only network interface; programs may still talk to themselves over it. */
static void bring_up_loopback(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
			log_error("lo up");
	}
	close(fd);
}

static int open_channel(void)
{
	for (int waited = 0;; waited += 2) {
		int fd = channel_find();
		if (fd >= 0 || waited >= CHANNEL_WAIT_MS)
			return fd;
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* After its last frame the agent leaves the VM's end to the host, which kills the VM once it has
 * the whole frame. A reboot at once would lose what the channel still holds: a write returns
 * when the bytes are in the guest's queue, not on the host, and QEMU exits at the reset with
 * them (a 500 KB EXIT arrived cut at 224 KiB now and then). Only a host that never ends the VM
 * meets the reboot, after LAST_FRAME_GRACE_MS, or at once when the channel hangs up. */
#define LAST_FRAME_GRACE_MS 30000

static void wait_for_the_host(int channel_fd)
{
	struct pollfd p = {.fd = channel_fd, .events = POLLIN};
	uint8_t sink[4096];
	for (int64_t deadline = monotonic_ms() + LAST_FRAME_GRACE_MS;;) {
		int64_t left = deadline - monotonic_ms();
		if (left <= 0 || poll(&p, 1, (int)left) < 0 || (p.revents & (POLLHUP | POLLERR)))
			return;
		if ((p.revents & POLLIN) && read(channel_fd, sink, sizeof sink) <= 0)
			return; /* the host closed its end: nothing more can be lost */
	}
}

static void end_vm(void)
{
	sync();
	for (;;) {
		reboot(RB_AUTOBOOT);
		pause();
	}
}

/* airlock.warm=LANG on the kernel command line: start that interpreter before READY (the VM
 * that makes a snapshot). Returns the language, or 0. */
static uint32_t warm_language(void)
{
	char cmdline[4096];
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof cmdline - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	cmdline[n] = '\0';
	for (char *tok = strtok(cmdline, " \n"); tok; tok = strtok(NULL, " \n")) {
		if (strncmp(tok, "airlock.warm=", 13) != 0)
			continue;
		for (uint32_t lang = AL_LANG_FIRST; lang < AL_LANG_END; lang++)
			if (!strcmp(tok + 13, al_language_name(lang)))
				return lang;
	}
	return 0;
}

/* Serves the VM's run: one, or, after a kept run (AL_RUN_KEEP), the next in the VM the host
 * restores from its save (the PINGs come again, and the kept processes go on at the first). */
static void serve_runs(int channel_fd)
{
	struct program prog = PROGRAM_NONE;
	uint32_t warm = warm_language();
	const char *why;
	int started = warm ? program_start(&prog, warm, 1, &why) : 0;
	if (started != 0) /* not fatal: the request will start one */
		fprintf(stderr, "airlock-agent: the interpreter started ahead %s: %s\n", why,
			strerror(-started));
	stop_note_processes(); /* before READY: in the snapshot, for every VM restored from it */

	struct al_ready ready = {.version = AL_PROTO_VERSION};
	if (channel_send(channel_fd, AL_FRAME_READY, &ready, sizeof ready) != 0) {
		log_error("send READY");
		return;
	}
	do {
		uint32_t type, stream;
		uint8_t *payload;
		size_t len;
		int rc, pinged = 0;
		/* PINGs come first when the VM was restored from a snapshot (its READY is in the
		 * snapshot) */
		while ((rc = channel_recv(channel_fd, &type, &stream, &payload, &len)) == 0 &&
		       type == AL_FRAME_PING) {
			struct al_ping ping;
			if (len == sizeof ping && stream == AL_STREAM_CONVERSATION) {
				/* unique from here on, before any request: the PRNGs are seeded again */
				memcpy(&ping, payload, sizeof ping);
				refresh_entropy_and_clock(ping.entropy, ping.wall_clock_ns);
				pinged = 1;
				cell_thaw(); /* a kept state's processes go on, the interpreter first */
				if (prog.pid > 0 && program_prepare(&prog) != 0)
					program_discard(&prog); /* the request will start a fresh one */
				warm_up_run_path();
			}
			free(payload);
			if (channel_send(channel_fd, AL_FRAME_READY, &ready, sizeof ready) != 0) {
				log_error("send READY");
				return;
			}
		}
		if (rc) {
			fprintf(stderr, "airlock-agent: reading the request: %s\n", strerror(-rc));
			return;
		}
		struct run_request req;
		if (type != AL_FRAME_RUN || stream != AL_STREAM_CONVERSATION ||
		    run_request_parse(payload, len, &req) != 0) {
			channel_send_error(channel_fd,
					   "malformed request (frame type %u, stream %u, %zu bytes)",
					   type, stream, len);
		} else if ((rc = run_program(channel_fd, &req, &prog, pinged)) != 0) {
			channel_send_error(channel_fd, "run failed: %s", strerror(-rc));
		}
		free(payload);
	} while (cell_frozen()); /* kept: the host saves this VM; its restores continue here */
	program_discard(&prog);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	/* SIGCHLD stays blocked: exec.c reads it from a signalfd, also for a program started ahead
	 * of the request that might end before the request comes */
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);

	if (getpid() != 1)
		fprintf(stderr, "airlock-agent: not PID 1; this program is the guest's init\n");
	sethostname("sandbox", 7);
	if (mount_all() == 0) {
		seed_tmp(TMP_SEED, "/tmp", 0);
		int pending = pending_output_create();
		if (pending != 0) /* not fatal: python then writes its output unbuffered */
			fprintf(stderr, "airlock-agent: %s: %s\n", AGENT_PENDING_OUTPUT,
				strerror(-pending));
		bring_up_loopback();
		int fd = open_channel();
		if (fd < 0)
			fprintf(stderr, "airlock-agent: no host channel (/dev/hvc0 or /dev/vport*p1): %s\n",
				strerror(-fd));
		else {
			serve_runs(fd);
			wait_for_the_host(fd);
		}
	}
	end_vm();
	return 0;
}
