/* Snapshots: a VM booted once per language, its interpreter started and waiting for code,
 * paused and saved, so that every later VM is restored instead of booted (no kernel boot, no
 * interpreter start). One directory per snapshot in the image cache, keyed like the images:
 *
 *     snapshot-LANG-BACKEND-KEY/
 *         memory     guest RAM (sparse); restores map it privately, copy-on-write
 *         state      everything else: QEMU's migration stream (tcg) or airlock-vmm's state
 *                    file (kvm, format documented in vmm/snapshot.c)
 *         manifest   what it was made from, and the sizes and hash that prove it is whole
 *
 * A snapshot that is missing, truncated, corrupt or made for other images is refused by
 * snapshot_check() and made again by snapshot_ensure(); it is never half-loaded.
 *
 * The memory file is what every later VM starts from, so no VM may write it: airlock-vmm opens it
 * read-only, and QEMU does too, though 7.2 would open it read-write even to map it private
 * (qemu_preload.c), as a user who may not write it or under a jail that binds it read-only
 * (backend/tcg/tcg.c). Should it be written all the same (by anything on the host), the write cannot
 * be undone without being seen: it changes the file's ctime, which the manifest records, so the
 * snapshot is refused from then on, and a VM restored from it runs no request once it changed.
 */
#ifndef AIRLOCK_SNAPSHOT_CACHE_H
#define AIRLOCK_SNAPSHOT_CACHE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "images.h"
#include "backend.h"

/* boot + importing numpy, pandas and matplotlib under emulation on a loaded host (about 10 s on
 * tcg here, 16 s in the KVM test host): a boot that has not answered in 3 minutes never will */
#define SNAPSHOT_MAKE_TIMEOUT_MS 180000

struct snapshot_spec {
	const struct backend *backend;
	const struct images *images;
	const char *language; /* a name of AL_LANGUAGES (agent/proto.h) */
	unsigned memory_mb, vcpus;
	uint32_t timeout_ms; /* boot + interpreter start + save */
};

/* The snapshot's directory for spec. Returns 0 or -errno. */
int snapshot_locate(const struct snapshot_spec *spec, char *dir, size_t dir_len);
/* What a restore needs to know of a checked snapshot. */
struct snapshot_facts {
	unsigned guest_tsc_khz;  /* what its kernel was told (vm_spec): a restore must say the same */
	int64_t memory_ctime_ns; /* the memory file's change time when the snapshot was made */
};

/* Whether dir holds a whole snapshot made from the current images. Returns 0 with *facts set
 * (unless NULL), -ENOENT when there is none, or -EINVAL when it is damaged or mismatched; why
 * says what is wrong. */
int snapshot_check(const struct snapshot_spec *spec, const char *dir,
		   struct snapshot_facts *facts, char *why, size_t why_len);
/* Whether dir's memory file still has the change time memory_ctime_ns (snapshot_facts): 0, or
 * -EINVAL with why saying it was written since (or is gone). A stat, cheap enough per request. */
int snapshot_memory_unchanged(const char *dir, int64_t memory_ctime_ns, char *why,
			      size_t why_len);
/* Makes the snapshot: boots, waits for READY, saves, checks, and moves it into place. Blocking
 * (it runs an event loop of its own); progress and failures on stderr too. Returns 0 or -errno with err set. */
int snapshot_make(const struct snapshot_spec *spec, const char *dir, char *err, size_t err_len);
/* Checks the snapshot and (re)makes it when it is missing or damaged. Returns 0 with dir set, or
 * -errno with err set. */
int snapshot_ensure(const struct snapshot_spec *spec, char *dir, size_t dir_len, char *err,
		    size_t err_len);

/* snapshot_ensure() for every language. Returns 0 or -errno with err set. */
int snapshot_ensure_all(const struct backend *backend, const struct images *images,
			unsigned memory_mb, unsigned vcpus, char *err, size_t err_len);

#endif
