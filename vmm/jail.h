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
/* In a user namespace just made: inside_uid and inside_gid are uid and gid outside (no
 * supplementary groups). */
int jail_map_ids(uid_t inside_uid, uid_t uid, gid_t inside_gid, gid_t gid);
/* Started as root, becomes nobody (uid, gid, no groups) unless keep_root; anyone else stays who
 * they are. *uid and *gid get the user it is now. */
int jail_become_unprivileged(uid_t *uid, gid_t *gid, bool keep_root);
/* Empties the capability bounding set (what no later exec could regain). */
int jail_drop_bounding_set(void);
/* Drops every capability: bounding set, ambient, effective, permitted, inheritable. */
int jail_drop_capabilities(void);

#endif
