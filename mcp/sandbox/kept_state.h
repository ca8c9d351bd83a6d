/* Kept states: the saved VMs of calls that asked to keep their state (SPEC.md, "Kept state"),
 * on disk, each behind an unguessable id, with an owner, an expiry and a total size cap.
 *
 * A state is a directory <store>/<id>/ holding what the backend's save wrote (tcg: QEMU's device
 * state and the pages the VM changed, vmm/pages.h) and a manifest: the language, the backend, the
 * snapshot it was restored from (its directory's name and its memory file's change time: the
 * snapshot's RAM is the state's base), who owns it, when it was made and last used, and a MAC
 * (HMAC-SHA256 with the installation's key, <store>/key) over all of that and the identity of
 * each file (size, inode, change time). Nothing writes a state's files after it is made, so a
 * file changed or replaced since shows in its change time, which no one can set back: such a
 * state, or one whose manifest was edited, copied from elsewhere, or made from a snapshot that
 * has been made again since, is refused with the reason, never half-restored.
 *
 * Who may use a state is its owner string: "user:UID" for `airlock run` and for `airlock mcp
 * --state-persist` (the same user's later processes), "mcp:PID:RANDOM" for one `airlock mcp`
 * process (removed when it exits; those of a process that died are removed by the next one).
 * An id of another owner reads as unknown. States expire ttl seconds after their last use and
 * the least recently used go first when a new one would take the store past its cap.
 */
#ifndef AIRLOCK_KEPT_STATE_H
#define AIRLOCK_KEPT_STATE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define STATE_ID_LEN 32 /* hex digits of 128 random bits */
#define STATE_KEY_SIZE 32
#define STATE_OWNER_MAX 64
#define STATE_DEFAULT_MAX_MB 2048
#define STATE_DEFAULT_TTL_S 3600

struct state_store {
	char dir[PATH_MAX];
	uint8_t key[STATE_KEY_SIZE];
	uint64_t max_bytes;
	uint32_t ttl_s;
	char owner[STATE_OWNER_MAX];
};

/* Where a state comes from: what a restore of it must find unchanged. */
struct state_origin {
	const char *language;     /* a name of AL_LANGUAGES */
	const char *backend;      /* "tcg", "kvm" */
	const char *snapshot_dir; /* the snapshot it was restored from */
	int64_t snapshot_memory_ctime_ns;
};

/* Opens (creating) the store at dir, mode 0700, with its key (made once, 0600). owner as above.
 * Returns 0 or -errno with err set. */
int state_store_open(struct state_store *st, const char *dir, uint64_t max_mb, uint32_t ttl_s,
		     const char *owner, char *err, size_t err_len);
/* The owner string of this process: "user:UID", or with per_process "mcp:PID:RANDOM". */
void state_owner(bool per_process, char out[STATE_OWNER_MAX]);

/* A fresh, empty directory (0700) for a VM's save (sandbox_vm.keep_to_dir): the backend creates
 * the files in it and hands the VM process their fds. Returns 0 or -errno with err set. */
int state_stage(const struct state_store *st, char dir[PATH_MAX], char *err, size_t err_len);
/* Removes a staged directory and what is in it. */
void state_unstage(const char *dir);
/* Makes the saved staged directory a state: its manifest, a new id, and room under the cap
 * (least recently used states removed first). Returns 0 with id and *expires_at (Unix seconds)
 * set, or -errno with err saying why there is no state (the staged directory is gone then). */
int state_commit(struct state_store *st, const char *staged, const struct state_origin *origin,
		 char id[STATE_ID_LEN + 1], int64_t *expires_at, char *err, size_t err_len);

/* A state found for a restore. */
struct kept_state {
	char dir[PATH_MAX];
	char language[16];
	int64_t expires_at; /* renewed by the lookup */
};

/* Finds state id for a restore with origin's backend and snapshot (origin->language may be
 * NULL: the state's own is taken), checks its MAC and files, and renews its expiry. Returns 0,
 * -ENOENT (unknown, expired, another owner's), -EINVAL (damaged, or of another snapshot or
 * backend: err says which), or -errno; err says it in a sentence naming the id. */
int state_find(struct state_store *st, const char *id, const struct state_origin *origin,
	       struct kept_state *out, char *err, size_t err_len);
/* The language of this owner's state id, read before its snapshot is known (state_find checks
 * the rest). Returns 0, or -ENOENT with err saying so (as state_find does). */
int state_language(const struct state_store *st, const char *id, char *out, size_t out_len,
		   char *err, size_t err_len);
/* Whether id has the form of a state id (STATE_ID_LEN lowercase hex digits). */
bool state_id_valid(const char *id);
/* Prints this owner's states, one line each: id, language, size, last use, expiry. */
int state_list(const struct state_store *st, FILE *out);
/* Removes this owner's state id. Returns 0 or -ENOENT. */
int state_remove(const struct state_store *st, const char *id);
/* Removes this owner's states (an `airlock mcp` process at its exit). */
void state_remove_owned(const struct state_store *st);
/* Removes expired states, leftovers of saves that died, and the states of `airlock mcp`
 * processes that are gone. */
void state_sweep(const struct state_store *st);
/* Bytes the store's states take on disk. */
uint64_t state_store_bytes(const struct state_store *st);

#endif
