/* Backend selection, and what every backend shares: the argv helper, the launch record, what
 * the host offers (KVM, the TSC rate). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "backend.h"
#include "confine.h"

int argv_push(struct argv_list *argv, const char *fmt, ...)
{
	if (argv->len + 2 > argv->cap) {
		size_t cap = argv->cap ? argv->cap * 2 : 32;
		char **items = realloc(argv->items, cap * sizeof *items);
		if (!items)
			return -ENOMEM;
		argv->items = items;
		argv->cap = cap;
	}
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&argv->items[argv->len], fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	argv->items[++argv->len] = NULL;
	return 0;
}

void argv_free(struct argv_list *argv)
{
	for (size_t i = 0; i < argv->len; i++)
		free(argv->items[i]);
	free(argv->items);
	memset(argv, 0, sizeof *argv);
}

static bool path_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

bool host_kvm_usable(char *why, size_t why_len)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	close(fd);
	/* kvm_pvm is software virtualization without VT-x/AMD-V: guest ring 0 is interpreted and
	 * Linux stops on instructions it cannot emulate, so no Linux guest runs on it. */
	if (path_exists("/sys/module/kvm_pvm")) {
		snprintf(why, why_len,
			 "/dev/kvm is kvm_pvm (software virtualization, no VT-x/AMD-V): it cannot "
			 "run a Linux guest");
		return false;
	}
	if (path_exists("/sys/module/kvm_intel") || path_exists("/sys/module/kvm_amd")) {
		snprintf(why, why_len, "/dev/kvm is backed by %s",
			 path_exists("/sys/module/kvm_intel") ? "kvm_intel" : "kvm_amd");
		return true;
	}
	snprintf(why, why_len, "/dev/kvm opens but neither kvm_intel nor kvm_amd is loaded");
	return false;
}

#define TSC_MEASURE_NS 10000000 /* 10 ms: the rate to about 1e-5, once per process */

static int64_t monotonic_raw_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

unsigned host_tsc_khz(void)
{
#if defined(__x86_64__)
	static unsigned khz; /* measured once: every VM this process boots is told the same */
	if (khz)
		return khz;
	int64_t t0 = monotonic_raw_ns(), t1;
	uint64_t c0 = __rdtsc();
	while ((t1 = monotonic_raw_ns()) - t0 < TSC_MEASURE_NS)
		;
	uint64_t c1 = __rdtsc();
	uint64_t rate = (c1 - c0) * 1000000 / (uint64_t)(t1 - t0); /* cycles per ms = kHz */
	/* a TSC that stands still or runs beyond 10 GHz is no clock to give a guest */
	khz = rate >= 100000 && rate <= 10000000 ? (unsigned)rate : 0;
	return khz;
#else
	return 0;
#endif
}

const struct backend *const backends[] = {&backend_kvm, &backend_tcg, NULL};

int backend_select(const char *name, const struct backend **out, char *why, size_t why_len)
{
	bool any = strcmp(name, "auto") == 0;
	char tried[1024] = "";
	size_t used = 0;
	int rc = -ENODEV;
	for (const struct backend *const *b = backends; *b; b++) {
		if (!any && strcmp(name, (*b)->name) != 0)
			continue;
		rc = (*b)->probe(why, why_len);
		if (rc == 0) {
			*out = *b;
			return 0;
		}
		int n = snprintf(tried + used, sizeof tried - used, "%s%s: %s", used ? "; " : "",
				 (*b)->name, why);
		used = n > 0 && (size_t)n < sizeof tried - used ? used + (size_t)n : used;
		if (!any) { /* one backend asked for: its words, and the way out */
			snprintf(why + strlen(why), why_len - strlen(why), "%s",
				 *b == backends[0] ? " (--backend tcg runs without KVM)" : "");
			return rc;
		}
	}
	if (any)
		snprintf(why, why_len, "%s", tried);
	else
		snprintf(why, why_len, "unknown backend '%s' (use auto, kvm or tcg)", name);
	return any ? rc : -EINVAL;
}

void vm_launch_init(struct vm_launch *launch)
{
	memset(launch, 0, sizeof *launch);
	for (int i = 0; i < VM_FDS_MAX; i++)
		launch->fds[i] = -1;
	launch->control_fd = -1;
	launch->save_fd = -1;
}

void vm_launch_free(struct vm_launch *launch)
{
	argv_free(&launch->argv);
	for (int i = VM_FD_CHANNEL + 1; i < VM_FDS_MAX; i++) /* the backend's; the sandbox's are its own */
		if (launch->fds[i] >= 0)
			close(launch->fds[i]);
	int own[] = {launch->control_fd, launch->save_fd};
	for (int i = 0; i < 2; i++)
		if (own[i] >= 0)
			close(own[i]);
	free(launch->backend_state);
	vm_launch_init(launch);
}

int kept_files_open(const struct vm_spec *s, struct kept_files *f, char *err, size_t err_len)
{
	*f = (struct kept_files){-1, -1, -1, -1};
	static const char *const names[] = {"state", "pages"};
	int *in[] = {&f->state_in, &f->pages_in}, *out[] = {&f->state_out, &f->pages_out};
	char path[4096 + 8];
	int rc = 0;
	for (int i = 0; rc == 0 && s->kept_state_dir && i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", s->kept_state_dir, names[i]);
		if ((*in[i] = readonly_open_once(path)) < 0) {
			rc = *in[i];
			snprintf(err, err_len, "cannot open the kept state's %s: %s", path,
				 strerror(-rc));
		}
	}
	for (int i = 0; rc == 0 && s->keep_to_dir && i < 2; i++) {
		snprintf(path, sizeof path, "%s/%s", s->keep_to_dir, names[i]);
		if ((*out[i] = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
			rc = -errno;
			snprintf(err, err_len, "cannot create %s: %s", path, strerror(-rc));
		}
	}
	if (rc) {
		int all[] = {f->state_in, f->pages_in, f->state_out, f->pages_out};
		for (int i = 0; i < 4; i++)
			if (all[i] >= 0)
				close(all[i]);
		*f = (struct kept_files){-1, -1, -1, -1};
	}
	return rc;
}
