/* Starting a VM process: the backend prepares it, the sandbox spawns it with the host channel
 * and its log, in a cgroup and under a uid of its own; a restored VM is asked PING; and, making
 * a snapshot, the backend saves it once its agent is READY.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sandbox_internal.h"

/* The VM's own cgroup (confine.h), right after the spawn. A VM that cannot have one still runs;
 * that is said once. */
static void enter_cgroup(struct sandbox *sb)
{
	static bool warned;
	int rc = vm_cgroup_enter(&sb->cgroup, sb->process.pid, (uint64_t)sb->vm.memory_mb << 20,
				 sb->vm.vcpus);
	if (rc && !warned) {
		warned = true;
		fprintf(stderr, "airlock: a VM runs without its cgroup limits: %s\n", strerror(-rc));
	}
}

int sandbox_spawn_vm(struct sandbox *sb, int vm_fd, int log_fd, char *err, size_t err_len)
{
	bool making = sb->mode == VM_MAKE_SNAPSHOT;
	struct vm_spec spec = {
		.mode = sb->mode,
		.kernel = sb->vm.kernel,
		.rootfs = sb->vm.rootfs,
		.memory_mb = sb->vm.memory_mb,
		.vcpus = sb->vm.vcpus,
		.language = sb->mode == VM_BOOT ? NULL : sb->vm.snapshot_language,
		.snapshot_dir = sb->vm.snapshot_dir,
		.guest_tsc_khz = sb->vm.guest_tsc_khz,
		.kept_state_dir = sb->mode == VM_RESTORE ? sb->vm.kept_state_dir : NULL,
		.keep_to_dir = sb->mode == VM_RESTORE ? sb->vm.keep_to_dir : NULL,
	};
	/* The VM that makes a snapshot runs no user code and writes the snapshot as airlock's
	 * user; every other gets a uid of its own. */
	int rc = making ? 0 : vm_identity_take(&sb->identity);
	if (rc) {
		snprintf(err, err_len, "cannot reserve a uid of its own for the VM: %s",
			 strerror(-rc));
		return rc;
	}
	spec.run_as_uid = sb->identity.uid;
	struct vm_launch *launch = &sb->launch;
	if ((rc = sb->vm.backend->prepare(&spec, launch, err, err_len)) != 0)
		return rc;
	/* the log airlock opened (the VM's own uid could not open it by name); fds the VM does
	 * not use are left closed */
	launch->fds[VM_FD_LOG] = launch->fds[VM_FD_LOG + 1] = log_fd;
	launch->fds[VM_FD_CHANNEL] = vm_fd;
	uv_stdio_container_t stdio[VM_FDS_MAX];
	int count = 0;
	for (int i = 0; i < VM_FDS_MAX; i++) {
		stdio[i] = launch->fds[i] < 0 ? (uv_stdio_container_t){.flags = UV_IGNORE}
					      : (uv_stdio_container_t){.flags = UV_INHERIT_FD,
								       .data.fd = launch->fds[i]};
		count = launch->fds[i] >= 0 ? i + 1 : count;
	}
	uv_process_options_t options = {
		.exit_cb = sandbox_on_process_exit,
		.file = launch->argv.items[0],
		.args = launch->argv.items,
		.stdio_count = count,
		.stdio = stdio,
		.env = (char **)vm_environment(), /* not airlock's: it may hold the host's secrets */
		.flags = UV_PROCESS_DETACHED, /* its own session and process group: see kill_vm */
	};
	sb->process.data = sb;
	sb->process_handle = true;
	rc = uv_spawn(sb->loop, &sb->process, &options);
	if (rc)
		snprintf(err, err_len, "cannot start %s: %s", launch->argv.items[0], uv_strerror(rc));
	else if (!making)
		enter_cgroup(sb);
	/* what the VM holds now is its own: ours go, but for the control socket and save file */
	launch->fds[VM_FD_LOG] = launch->fds[VM_FD_LOG + 1] = launch->fds[VM_FD_CHANNEL] = -1;
	for (int i = VM_FD_CHANNEL + 1; i < VM_FDS_MAX; i++)
		if (launch->fds[i] >= 0) {
			close(launch->fds[i]);
			launch->fds[i] = -1;
		}
	argv_free(&launch->argv);
	return rc;
}

static void on_ping_written(uv_write_t *req, int status)
{
	struct sandbox *sb = req->data;
	if (status < 0 && status != UV_ECANCELED)
		sandbox_fail(sb, -EIO, "cannot reach the restored guest: %s", uv_strerror(status));
}

/* A restored guest's READY is in its snapshot; PING asks for a fresh one, and makes the guest
 * unique (fresh entropy, the clock) while it waits in the pool. */
int sandbox_send_ping(struct sandbox *sb)
{
	_Static_assert(sizeof sb->ping == AL_FRAME_HEADER_SIZE + sizeof(struct al_ping),
		       "the PING frame is sent as it lies in memory");
	sb->ping.header =
		frame_header(AL_FRAME_PING, AL_STREAM_CONVERSATION, sizeof(struct al_ping));
	if (getrandom(sb->ping.ping.entropy, sizeof sb->ping.ping.entropy, 0) !=
	    sizeof sb->ping.ping.entropy)
		return -errno;
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	sb->ping.ping.wall_clock_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec;
	uv_buf_t buf = uv_buf_init((char *)&sb->ping, sizeof sb->ping);
	sb->ping_req.data = sb;
	return uv_write(&sb->ping_req, (uv_stream_t *)&sb->channel, &buf, 1, on_ping_written);
}

/* Making a snapshot: what the VM program says on its control socket goes to the backend. */
static void on_control(uv_poll_t *poll, int status, int events)
{
	struct sandbox *sb = poll->data;
	(void)events;
	char buf[4096], err[512];
	ssize_t n = status < 0 ? -1 : read(sb->launch.control_fd, buf, sizeof buf);
	if (n < 0 && status == 0 && errno == EINTR)
		return;
	if (n <= 0) { /* the program closed it (quitting) or it failed: its end tells the rest */
		uv_poll_stop(poll);
		return;
	}
	if (sb->vm.backend->save_progress(&sb->launch, buf, (size_t)n, err, sizeof err) != 0)
		sandbox_fail(sb, -EIO, "%s (log: %s)", err, sb->serial_log);
}

void sandbox_start_save(struct sandbox *sb)
{
	char err[512];
	if (sb->vm.backend->save(&sb->launch, sb->process.pid, err, sizeof err) != 0) {
		sandbox_fail(sb, -EIO, "%s", err);
		return;
	}
	if (sb->launch.control_fd < 0 || !sb->vm.backend->save_progress)
		return;
	int rc = uv_poll_init(sb->loop, &sb->control, sb->launch.control_fd);
	if (rc == 0) {
		sb->control.data = sb;
		sb->control_watched = true;
		sb->open_handles++;
		rc = uv_poll_start(&sb->control, UV_READABLE, on_control);
	}
	if (rc)
		sandbox_fail(sb, -EIO, "cannot watch the VM program's control socket: %s",
			     uv_strerror(rc));
}
