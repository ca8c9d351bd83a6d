/* Just enough of QEMU's machine protocol (QMP: JSON lines on a socket) for snapshots of the tcg
 * backend: saving a running VM's device state to a migration stream, and loading it back. The
 * save runs on the sandbox's event loop: commands go out at once, and what QEMU says back is fed
 * in as it arrives.
 */
#ifndef AIRLOCK_QMP_H
#define AIRLOCK_QMP_H

#include <stdbool.h>
#include <stddef.h>

/* The commands that make a VM started with `-incoming defer` load its state from the migration
 * stream on fd_number (in QEMU's process) and run. They may be written all at once, before
 * QEMU's greeting: the monitor reads them in order. */
int qmp_restore_commands(int fd_number, char *out, size_t out_len);

struct qmp_save;

/* Starts saving the VM's device state (its RAM is the shared memory file) into state_fd (ours,
 * passed to QEMU over the socket); restored: the VM was restored (qmp_restore_commands set its
 * monitor up), as when its state is kept. Returns 0 with *out set (the caller frees it), or -errno with
 * err set. */
int qmp_save_start(int qmp_fd, int state_fd, bool restored, struct qmp_save **out, char *err,
		   size_t err_len);
/* Feeds what QEMU wrote on the socket. Once the stream is complete QEMU is told to quit, and
 * ends with status 0. Returns 0 to go on, or -EIO with err saying what QEMU answered. */
int qmp_save_progress(struct qmp_save *save, const char *data, size_t len, char *err,
		      size_t err_len);

#endif
