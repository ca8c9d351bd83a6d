/* A QEMU taken over, for the tests only: preloaded into QEMU together with airlock's own preload
 * (mcp/backend/tcg/qemu_preload.c, linked in beside this file) in place of it, it tries, before QEMU's
 * main() runs, every way it can think of to change the VM's files through what it holds: each
 * fd it inherited, the file each names, and /proc/self/fd/N. It prints one line per operation
 * that got through ("qemu-attack: WROTE ...") and a summary; test/security/test_vm_processes.py
 * then checks that nothing in the image cache changed.
 *
 * The fds left alone: stdio (its log, writable by design) and sockets (its channel and QMP).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int tried, got_through;

/* Straight to the kernel: airlock's preload, linked in beside, turns one read-write open into a
 * read-only one, and an attacker would not ask it. */
static int raw_open(const char *path, int flags)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, 0);
}

static void report(const char *what, int fd, const char *target, int ok)
{
	tried++;
	if (ok) {
		got_through++;
		fprintf(stderr, "qemu-attack: WROTE %s on fd %d (%s)\n", what, fd, target);
	}
}

/* Every change through an fd open for writing (the byte written back is the one read). */
static void attack_writable(int fd, int origin, const char *target, const char *how)
{
	char byte;
	char what[96];
	if (pread(fd, &byte, 1, 0) == 1) {
		snprintf(what, sizeof what, "pwrite via %s", how);
		report(what, origin, target, pwrite(fd, &byte, 1, 0) == 1);
	}
	snprintf(what, sizeof what, "fallocate (punch hole) via %s", how);
	report(what, origin, target,
	       fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 4096) == 0);
	void *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	snprintf(what, sizeof what, "shared writable mapping via %s", how);
	if (map != MAP_FAILED) {
		((volatile char *)map)[0] = ((volatile char *)map)[0]; /* same byte, but a write */
		msync(map, 4096, MS_SYNC);
		munmap(map, 4096);
	}
	report(what, origin, target, map != MAP_FAILED);
}

static void attack_fd(int fd)
{
	char link[64], target[4096] = "";
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof target - 1);
	if (n > 0)
		target[n] = '\0';
	struct stat st;
	if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
		return;
	/* through the fd itself */
	char byte;
	if (pread(fd, &byte, 1, 0) == 1)
		report("write", fd, target, pwrite(fd, &byte, 1, 0) == 1);
	report("ftruncate to its own size", fd, target, ftruncate(fd, st.st_size) == 0);
	report("fchmod", fd, target, fchmod(fd, st.st_mode & 07777) == 0);
	report("fchown", fd, target, fchown(fd, st.st_uid, st.st_gid) == 0);
	attack_writable(fd, fd, target, "the fd");
	/* reopened through /proc/self/fd, and by the name it points to */
	/* by name only where the name is this very file (a detached mount's shows as "/") */
	struct stat named;
	bool same = target[0] == '/' && stat(target, &named) == 0 && named.st_dev == st.st_dev &&
		    named.st_ino == st.st_ino;
	const char *names[] = {link, same ? target : NULL};
	for (int i = 0; i < 2; i++) {
		if (!names[i])
			continue;
		int flags[] = {O_RDWR, O_WRONLY | O_APPEND};
		for (int f = 0; f < 2; f++) {
			int w = raw_open(names[i], flags[f] | O_CLOEXEC);
			report(i ? "reopen by name" : "reopen through /proc/self/fd", fd, target,
			       w >= 0);
			if (w >= 0) {
				attack_writable(w, fd, target, names[i]);
				close(w);
			}
		}
		report(i ? "chmod by name" : "chmod through /proc/self/fd", fd, target,
		       chmod(names[i], st.st_mode & 07777) == 0);
		report(i ? "truncate by name" : "truncate through /proc/self/fd", fd, target,
		       truncate(names[i], st.st_size) == 0);
	}
}

__attribute__((constructor)) static void attack(void)
{
	for (int fd = 3; fd < 256; fd++)
		attack_fd(fd);
	fprintf(stderr, "qemu-attack: %d attempts, %d got through\n", tried, got_through);
}
