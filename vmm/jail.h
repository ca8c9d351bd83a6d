/* What jail.c and jail_supervisor.c share: the steps both the VM process and its supervisor take.
 * Each returns 0 or -errno, logged with what failed. */
#ifndef AIRLOCK_VMM_JAIL_H
#define AIRLOCK_VMM_JAIL_H

#include <stdbool.h>
#include <sys/types.h>

#define JAIL_OUTSIDE_UID 65534 /* nobody */
#define JAIL_OUTSIDE_GID 65534 /* nogroup */

/* Logs "jail: WHAT: strerror(errno)" and returns -errno. */
int jail_failed(const char *what);
/* Writes text to a /proc file such as uid_map, whole. */
int jail_write_proc_file(const char *path, const char *text);
/* Started as root, becomes nobody (uid, gid, no groups) unless keep_root; anyone else stays who
 * they are. *uid and *gid get the user it is now. */
int jail_become_unprivileged(uid_t *uid, gid_t *gid, bool keep_root);
/* Empties the capability bounding set (what no later exec could regain). */
int jail_drop_bounding_set(void);
/* Drops every capability: bounding set, ambient, effective, permitted, inheritable. */
int jail_drop_capabilities(void);

#endif
