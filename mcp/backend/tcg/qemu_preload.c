/* Preloaded into every jailed QEMU (LD_PRELOAD, tcg.c): three things QEMU 7.2 cannot
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
 */
/* Each name is defined here under its own symbol: with 64-bit offsets requested, glibc's header
 * would give open the symbol open64 (the same function on x86_64). */
#undef _FILE_OFFSET_BITS
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static const char *readonly_path;

__attribute__((constructor)) static void start(void)
{
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGXFSZ, SIG_IGN);
	readonly_path = getenv("AIRLOCK_READONLY_RAM");
}

static int open_file(int dirfd, const char *path, int flags, mode_t mode)
{
	if (readonly_path && path && (flags & O_ACCMODE) == O_RDWR && !(flags & O_CREAT) &&
	    strcmp(path, readonly_path) == 0)
		flags = (flags & ~O_ACCMODE) | O_RDONLY;
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
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
