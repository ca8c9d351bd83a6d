/* The kvm backend: airlock-vmm, our own KVM monitor, one process per VM. Used only where this
 * host's KVM can really run a guest (host_kvm_usable). */
#include <errno.h>
#include <stdio.h>

#include "launcher.h"
#include "paths.h"

static int vmm_path(char *out, size_t out_len)
{
	return locate_program("AIRLOCK_VMM", "../vmm/airlock-vmm", "airlock-vmm", out, out_len);
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
	snprintf(why, why_len, "airlock-vmm on KVM (%s)", kvm_why);
	return 0;
}

static int kvm_command(const struct vm_spec *s, struct argv_list *a)
{
	char path[4096];
	if (vmm_path(path, sizeof path) != 0)
		return -ENOENT;
	int rc = 0;
	rc |= argv_push(a, "%s", path);
	if (s->restore) {
		rc |= argv_push(a, "--restore=%s", s->snapshot_dir);
	} else {
		rc |= argv_push(a, "--kernel=%s", s->kernel);
		rc |= argv_push(a, "--memory-mb=%u", s->memory_mb);
		rc |= argv_push(a, "--vcpus=%u", s->vcpus);
	}
	rc |= argv_push(a, "--rootfs=%s", s->rootfs);
	rc |= argv_push(a, "--channel-fd=%d", s->channel_fd);
	rc |= argv_push(a, "--serial-log=%s", s->serial_log);
	if (launcher_unconfined())
		rc |= argv_push(a, "--unconfined");
	else if (s->run_as_uid && s->run_as_gid)
		/* airlock is root: the VM's own user outside (airlock-vmm refuses it otherwise) */
		rc |= argv_push(a, "--run-as=%u:%u", s->run_as_uid, s->run_as_gid);
	if (s->warm_language && !s->restore) {
		/* the snapshot is taken on SIGUSR2, once the host has seen READY */
		rc |= argv_push(a, "--cmdline-extra=airlock.warm=%s", s->warm_language);
		rc |= argv_push(a, "--snapshot-to=%s", s->snapshot_dir);
	}
	return rc ? -ENOMEM : 0;
}

const struct launcher launcher_kvm = {
	.name = "kvm",
	.probe = kvm_probe,
	.command = kvm_command,
	.program = vmm_path,
};
