/* Just enough of QEMU's machine protocol (QMP: JSON lines on a socket) for snapshots of the tcg
 * backend: saving a running VM's device state to a migration stream, and loading it back.
 */
#ifndef AIRLOCK_QMP_H
#define AIRLOCK_QMP_H

#include <stddef.h>

/* The commands that make a VM started with `-incoming defer` load its state from the migration
 * stream on fd_number (in QEMU's process) and run. They may be written all at once, before
 * QEMU's greeting: the monitor reads them in order. */
int qmp_restore_commands(int fd_number, char *out, size_t out_len);

/* Blocking: saves the VM's device state (RAM is the shared memory file) into state_fd (ours,
 * passed to QEMU over the socket), waiting at most timeout_ms, then tells QEMU to quit. Returns 0,
 * or -errno with err saying what QEMU answered. */
int qmp_save_and_quit(int qmp_fd, int state_fd, int timeout_ms, char *err, size_t err_len);

#endif
