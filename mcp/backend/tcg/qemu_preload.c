/* Preloaded into every jailed QEMU (LD_PRELOAD, tcg.c): four things QEMU 7.2 cannot
 * be told on its command line.
 *
 * Not dumpable, from its first instruction on: airlock-vmm makes itself undumpable (vmm/jail.c);
 * for QEMU this constructor does.
 *
 * A full log fails a write instead of killing QEMU: its serial log is bounded (RLIMIT_FSIZE),
 * and a write past that would raise SIGXFSZ, whose default ends the process.
 *
 * The snapshot's RAM file read-only. The RAM file is shared by every VM of the snapshot, each
 * mapping it private (copy-on-write). QEMU 7.2 opens it read-write all the same (its read-only
 * option makes the guest's RAM a ROM; QEMU 8.2 added rom=off for this case), so a guest that took
 * QEMU over could write it and every later VM would restore what it wrote. With this, QEMU's only
 * fd to the file is read-only. This alone stops no one who makes the syscall directly: what does
 * is that QEMU cannot open the file for writing at all (its fd lies on a read-only mount,
 * confine.h); this is what lets QEMU start under that rule. A private mapping needs no more
 * than read access; the writes QEMU would make to the file itself (punching holes when RAM is
 * discarded, extending an empty file) do not happen in a restore, and would fail instead of
 * corrupting the snapshot.
 *
 * Only an open of exactly the path in AIRLOCK_READONLY_RAM for reading and writing (without
 * O_CREAT) is changed, to reading only; everything else goes to the kernel as asked. QEMU calls
 * open64, the fortified __open64_2 and openat64 (nm -D); the other names are the same functions
 * under glibc's aliases.
 *
 * Kept state (vmm/pages.h): only the pages a VM changed since its restore are kept, and QEMU's
 * migration cannot write just those. So a VM that may be kept is started with its RAM file
 * share=on, which makes the migration skip RAM (x-ignore-shared): the stream is device state
 * only. AIRLOCK_PRIVATE_RAM=1 turns that shared mapping of the RAM file into a private one here,
 * as a restore's is, and at QEMU's exit (its `quit` after the stream is complete, the VM
 * stopped) AIRLOCK_PAGES_OUT=FD receives the mapping's private pages (/proc/self/pagemap); the
 * file-size limit, kept low for the log while the VM runs, is raised to its hard limit for that
 * (tcg.c sets both). A failed write ends QEMU with status 1: no state. Restoring a kept state,
 * AIRLOCK_PAGES_IN=FD holds the pages to copy over the RAM right after it is mapped, before
 * anything runs; a file that does not fit makes the mapping fail, and QEMU with it.
 */
/* Each name is defined here under its own symbol: with 64-bit offsets requested, glibc's header
 * would give open the symbol open64 (the same function on x86_64). */
#undef _FILE_OFFSET_BITS
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pages.h"

#define EXPORT __attribute__((visibility("default")))

static const char *readonly_path;
static int ram_fd = -1;            /* the RAM file, as opened through readonly_path */
static int private_ram;            /* AIRLOCK_PRIVATE_RAM: its shared mapping made private */
static int pages_in = -1, pages_out = -1, pagemap = -1;
static uint8_t *ram;               /* the RAM file's mapping, once made */
static uint64_t ram_size;

static int fd_from_env(const char *name)
{
	const char *value = getenv(name);
	if (!value || !*value)
		return -1;
	char *end;
	long fd = strtol(value, &end, 10);
	return *end == '\0' && fd >= 0 && fd < 1024 ? (int)fd : -1;
}

__attribute__((constructor)) static void start(void)
{
	pages_out = fd_from_env("AIRLOCK_PAGES_OUT");
	/* first: QEMU's seccomp filter comes later, and an undumpable process's /proc files are
	 * root's, which QEMU as the VM's uid may not open */
	if (pages_out >= 0)
		pagemap = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/pagemap",
				       O_RDONLY | O_CLOEXEC, 0);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGXFSZ, SIG_IGN);
	readonly_path = getenv("AIRLOCK_READONLY_RAM");
	const char *private = getenv("AIRLOCK_PRIVATE_RAM");
	private_ram = private && !strcmp(private, "1");
	pages_in = fd_from_env("AIRLOCK_PAGES_IN");
}

/* At QEMU's exit: the kept state's pages (see above). */
__attribute__((destructor)) static void finish(void)
{
	if (pages_out < 0 || !ram)
		return;
	struct rlimit fsize;
	if (getrlimit(RLIMIT_FSIZE, &fsize) == 0) {
		fsize.rlim_cur = fsize.rlim_max;
		(void)setrlimit(RLIMIT_FSIZE, &fsize);
	}
	int rc = pagemap < 0 ? -EACCES : pages_write(pages_out, pagemap, ram, ram_size, NULL);
	if (rc == 0 && fsync(pages_out) != 0)
		rc = -errno;
	if (rc) {
		char line[160];
		int n = snprintf(line, sizeof line,
				 "airlock (QEMU): cannot write the kept state's pages: %s\n",
				 pagemap < 0 ? "no /proc/self/pagemap" : strerror(-rc));
		(void)!write(2, line, n > 0 ? (size_t)n : 0);
		_exit(1);
	}
}

static int open_file(int dirfd, const char *path, int flags, mode_t mode)
{
	int is_ram = readonly_path && path && strcmp(path, readonly_path) == 0;
	if (is_ram && (flags & O_ACCMODE) == O_RDWR && !(flags & O_CREAT))
		flags = (flags & ~O_ACCMODE) | O_RDONLY;
	int fd = (int)syscall(SYS_openat, dirfd, path, flags, mode);
	if (is_ram && fd >= 0)
		ram_fd = fd;
	return fd;
}

/* The RAM file's mapping: private where it was asked shared (AIRLOCK_PRIVATE_RAM), and a kept
 * state's pages copied over it (AIRLOCK_PAGES_IN). */
static void *map(void *addr, size_t len, int prot, int flags, int fd, off_t offset)
{
	int is_ram = fd >= 0 && fd == ram_fd && offset == 0;
	if (is_ram && private_ram && (flags & MAP_TYPE) != MAP_PRIVATE) /* shared, or validated */
		flags = (flags & ~MAP_TYPE & ~MAP_SYNC) | MAP_PRIVATE;
	void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, offset);
	if (!is_ram || p == MAP_FAILED)
		return p;
	ram = p;
	ram_size = len;
	if (pages_in >= 0) {
		int rc = pages_apply(pages_in, p, len);
		close(pages_in);
		pages_in = -1;
		if (rc) {
			munmap(p, len);
			ram = NULL;
			errno = -rc;
			return MAP_FAILED;
		}
	}
	return p;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset)
{
	return map(addr, len, prot, flags, fd, offset);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t offset)
{
	return map(addr, len, prot, flags, fd, offset);
}

/* The mode argument exists only with O_CREAT or O_TMPFILE (open(2)). */
#define MODE_ARGUMENT(flags, last, mode)                                                           \
	do {                                                                                       \
		if ((flags) & (O_CREAT | O_TMPFILE)) {                                             \
			va_list ap;                                                                \
			va_start(ap, last);                                                        \
			mode = va_arg(ap, mode_t);                                                 \
			va_end(ap);                                                                \
		}                                                                                  \
	} while (0)

EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	MODE_ARGUMENT(flags, flags, mode);
	return open_file(AT_FDCWD, path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	MODE_ARGUMENT(flags, flags, mode);
	return open_file(AT_FDCWD, path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	MODE_ARGUMENT(flags, flags, mode);
	return open_file(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	MODE_ARGUMENT(flags, flags, mode);
	return open_file(dirfd, path, flags, mode);
}

/* glibc's fortified forms, called where the flags are not known at compile time: they exist to
 * fail on O_CREAT without a mode, which cannot be passed here */
EXPORT int __open_2(const char *path, int flags)
{
	return open_file(AT_FDCWD, path, flags, 0);
}

EXPORT int __open64_2(const char *path, int flags)
{
	return open_file(AT_FDCWD, path, flags, 0);
}
