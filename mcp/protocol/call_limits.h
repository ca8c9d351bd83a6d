/* What one call may use, defined once: execute_code (execute.c), airlock run (cli/run.c) and the
 * tool's description (tools.c) read these. The guest's own sizes are in agent/proto.h
 * (AL_GUEST_TMPFS_MB); the VM's memory is the server's --memory-mb (backend.h's default). */
#ifndef AIRLOCK_CALL_LIMITS_H
#define AIRLOCK_CALL_LIMITS_H

#define CALL_DEFAULT_TIMEOUT_S 30.0
#define CALL_OUTPUT_CAP (1u << 20)    /* stdout and stderr, each: the rest is read and dropped */
#define CALL_OUT_FILES_CAP (1u << 20) /* files under /work/out returned, in all */

#endif
