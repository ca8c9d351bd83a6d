/* airlock doctor: what this host can run, one line per check, and which backend `auto` picks.
 * The kvm line comes from the backend's probe, which builds airlock-vmm's jail once with no VM
 * (airlock-vmm --jail-check): where it cannot be built, the line gives airlock-vmm's reason and
 * fix, the same words a VM's failure would end with. Exits 1 when no backend can run a guest.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sandbox.h"
#include "backend.h"

static void report(const char *verdict, const char *what, const char *detail)
{
	printf("%-5s %-10s %s\n", verdict, what, detail);
}

static bool read_first_line(const char *path, char *out, size_t out_len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	bool ok = fgets(out, (int)out_len, f) != NULL;
	fclose(f);
	if (ok)
		out[strcspn(out, "\n")] = '\0';
	return ok;
}

static void check_cgroups(void)
{
	char controllers[512];
	if (read_first_line("/sys/fs/cgroup/cgroup.controllers", controllers, sizeof controllers)) {
		char detail[700];
		snprintf(detail, sizeof detail, "cgroup v2 (controllers: %s): a group per VM with "
			 "memory, pids and cpu limits where the server's group can delegate them",
			 controllers[0] ? controllers : "none");
		report("ok", "cgroups", detail);
	} else if (access("/sys/fs/cgroup/memory", F_OK) == 0) {
		report("ok", "cgroups", "cgroup v1: a group per VM in the memory, pids and cpu "
					"hierarchies");
	} else {
		report("warn", "cgroups", "no cgroup file system: VMs run without cgroup limits");
	}
}

static void check_namespaces(void)
{
	char value[64];
	if (read_first_line("/proc/sys/user/max_user_namespaces", value, sizeof value) &&
	    atol(value) == 0) {
		report("warn", "namespaces", "user namespaces disabled (user.max_user_namespaces=0)");
		return;
	}
	if (read_first_line("/proc/sys/kernel/unprivileged_userns_clone", value, sizeof value) &&
	    atol(value) == 0) {
		report("warn", "namespaces",
		       geteuid() == 0 ? "unprivileged user namespaces disabled: QEMU (tcg) runs as "
					"root outside, not nobody (kernel.unprivileged_userns_clone=1 "
					"fixes it)"
				      : "unprivileged user namespaces disabled");
		return;
	}
	report("ok", "namespaces", "user, mount, pid, net, ipc and uts namespaces available");
}

static void check_images(void)
{
	struct images im;
	char err[1024];
	if (images_init(&im, NULL, err, sizeof err) != 0) {
		report("no", "images", err);
		return;
	}
	char detail[PATH_MAX + 128];
	if (images_ready(&im)) {
		snprintf(detail, sizeof detail, "kernel-%s, rootfs-%s in %s", im.kernel_key,
			 im.rootfs_key, im.dir);
		report("ok", "images", detail);
		return;
	}
	snprintf(detail, sizeof detail,
		 "not built for the current recipe in %s: `airlock image build` (or first use)",
		 im.dir);
	report("warn", "images", detail);
	if (access("/usr/sbin/debootstrap", X_OK) != 0)
		report("no", "debootstrap", "missing: apt-get install debootstrap");
	if (access("/usr/src/linux-source-6.1.tar.xz", R_OK) != 0)
		report("no", "kernel-src", "missing: apt-get install linux-source-6.1");
	if (geteuid() != 0)
		report("warn", "root", "building the root file system (debootstrap) needs root");
}

int cli_doctor(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	char why[512];
	bool kvm = host_kvm_usable(why, sizeof why);
	report(kvm ? "ok" : "no", "kvm-host", why);
	const struct backend *chosen = NULL;
	for (const struct backend *const *b = backends; *b; b++) {
		bool ok = (*b)->probe(why, sizeof why) == 0;
		report(ok ? "ok" : "no", (*b)->name, why);
	}

	check_images();
	check_cgroups();
	check_namespaces();

	if (backend_select("auto", &chosen, why, sizeof why) == 0) {
		char detail[600];
		snprintf(detail, sizeof detail, "%s (%s)", chosen->name,
			 chosen == backends[0] ? "the first choice, and it can run here"
					       : "the first choices cannot run here (their lines "
						 "above say why); this one can");
		report("->", "auto", detail);
		return 0;
	}
	report("no", "auto", "no backend can run a guest on this host");
	return 1;
}
