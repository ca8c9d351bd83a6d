/* The files a VM reads and must never write (its kernel, its root disk, its snapshot's state and
 * memory), opened so that no process holding one can write it: not by writing the fd, not by
 * reopening /proc/self/fd/N for writing, not by changing its mode, whoever owns the file. A
 * file's owner can otherwise do all of that past any read-only bind of the file's path (the
 * normal desktop deployment, where airlock, its images and QEMU are one user's).
 *
 * Each file is opened once per airlock process, by a short-lived child, from a read-only bind
 * mount of it that the child makes in a mount namespace of its own (and, when not root, a user
 * namespace of its own): the open file keeps that mount, so every later open of it, through
 * /proc/self/fd too, meets EROFS, and so does chmod. Where no namespace can be made, the file is
 * copied into a sealed memfd instead (no write, grow or shrink, for anyone). Each VM then gets
 * a fresh open of that file (an offset of its own).
 */
#ifndef AIRLOCK_READONLY_FILES_H
#define AIRLOCK_READONLY_FILES_H

/* Opens path for reading as above. Returns the new fd (close-on-exec) or -errno. */
int readonly_open(const char *path);

/* How the files are made read-only in this process: "a read-only mount", "a sealed memfd", or
 * NULL before the first readonly_open. */
const char *readonly_method(void);

/* Tests only: makes the next opens skip the namespace and take the sealed copy. */
void readonly_force_sealed_copy(void);

#endif
