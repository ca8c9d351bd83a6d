/* What jail.c and jail_supervisor.c share: who the VM and its supervisor are outside, and the
 * steps both take. Each step returns 0 or -errno, logged with what failed. */
#ifndef AIRLOCK_VMM_JAIL_H
#define AIRLOCK_VMM_JAIL_H

#include <stdbool.h>
#include <sys/types.h>

#define JAIL_NOBODY_UID 65534 /* nobody: a root start without --run-as */
#define JAIL_NOBODY_GID 65534 /* nogroup */

/* Who the VM process and its supervisor are outside once confined (jail_identity_choose). */
struct jail_identity {
	/* Started as root: the VM's user namespace is made while it is still root, so that root
	 * owns it (no other user holds a capability in it), and the supervisor, still root too,
	 * writes its id maps; only then does either become uid:gid. Never dumpable meanwhile. */
	bool from_root;
	uid_t uid;
	gid_t gid;
};

/* run_as: --run-as's "UID:GID" or NULL. Started as root: that uid and gid, else nobody, else
 * (writes_snapshot, image builds that run no user code) root itself. Started as anyone else:
 * that user; --run-as is refused there (-EPERM, logged). */
int jail_identity_choose(const char *run_as, bool writes_snapshot, struct jail_identity *out);

/* Logs "jail: WHAT: strerror(errno)" and returns -errno. */
int jail_failed(const char *what);
/* The same with ": WHY" after it, when WHY is not NULL: the cause and its fix, on the one line
 * that ends the log (airlock shows it; `airlock doctor` runs the same steps). */
int jail_refused(const char *what, const char *why);
/* Why unshare failed with err, and the fix, as far as it can be told; NULL where unknown. */
const char *jail_unshare_refused_because(int err);
/* Writes pid's id maps ("self" or a number): inside_uid and inside_gid are uid and gid outside
 * (no supplementary groups: setgroups denied). */
int jail_map_ids(const char *pid, uid_t inside_uid, uid_t uid, gid_t inside_gid, gid_t gid);
/* Sets real, effective and saved gid and uid (no supplementary groups where allowed), then
 * makes the process undumpable again (a change of credentials resets it to fs.suid_dumpable)
 * and asks for its parent-death signal again (the change cleared it). */
int jail_switch_ids(uid_t uid, gid_t gid, bool drop_groups);
/* Empties the capability bounding set (what no later exec could regain). */
int jail_drop_bounding_set(void);
/* Drops every capability: bounding set, ambient, effective, permitted, inheritable. */
int jail_drop_capabilities(void);

/* The VM side of the supervisor's help (jail_supervisor.c), started as root: asks the
 * supervisor, still root outside, to write the id maps of the user namespace the VM has just
 * made. Returns 0 once they are written, or -errno (logged). */
int jail_request_id_maps(void);

#endif
