/* The image cache: guest kernel and root file system, built by the scripts in images/ and kept
 * under one directory (default ~/.cache/airlock, or $AIRLOCK_IMAGES, or --images DIR), each
 * artifact in a directory named after a hash of its recipe. An unchanged recipe is never
 * rebuilt; a failed build leaves nothing behind but its log.
 */
#ifndef AIRLOCK_IMAGES_H
#define AIRLOCK_IMAGES_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

#define IMAGE_KEY_LEN 16 /* hex digits of a 64-bit recipe hash */

struct images {
	char dir[PATH_MAX];        /* the cache */
	char recipe_dir[PATH_MAX]; /* images/: build scripts, kernel config, package list */
	char agent[PATH_MAX];      /* the airlock-agent binary installed as the guest's init */
	char kernel_key[IMAGE_KEY_LEN + 1];
	char base_key[IMAGE_KEY_LEN + 1];
	char rootfs_key[IMAGE_KEY_LEN + 1];
	char kernel[PATH_MAX]; /* <dir>/kernel-<key>/vmlinux */
	char base[PATH_MAX];   /* <dir>/base-<key>/root: Debian packages, before the agent */
	char rootfs[PATH_MAX]; /* <dir>/rootfs-<key>/rootfs.ext4 */
};

/* Resolves the cache directory (dir_override may be NULL), the recipe and the agent, and hashes
 * the recipes. Returns 0 or -errno with err saying what is missing. */
int images_init(struct images *im, const char *dir_override, char *err, size_t err_len);
/* Whether the kernel and root file system of the current recipe are built. */
bool images_ready(const struct images *im);
/* Builds whatever of the current recipe is missing (everything when force), with a progress line
 * on stderr for each step. Returns 0 or -errno with err naming the failed step and its log. */
int images_build(const struct images *im, bool force, char *err, size_t err_len);
/* What a snapshot depends on besides the images (see snapshot_cache.h). */
struct snapshot_recipe {
	const char *backend;  /* "tcg" or "kvm" */
	const char *program;  /* the VM program (qemu-system-x86_64, airlock-vmm), full path */
	const char *language; /* a name of AL_LANGUAGES (agent/proto.h) */
	unsigned memory_mb, vcpus;
};

/* Where the snapshot of recipe r for the current images lives: <dir>/snapshot-LANG-BACKEND-KEY.
 * Returns 0 or -errno. */
int images_snapshot_dir(const struct images *im, const struct snapshot_recipe *r, char *out,
			size_t out_len);
/* The 64-bit FNV-1a hash of a file's name and content, as hex. Returns 0 or -errno. */
int images_file_hash(const char *path, char out[IMAGE_KEY_LEN + 1]);
/* Prints what the cache holds: one line per artifact with its size and whether it is current. */
int images_list(const struct images *im, FILE *out);

#endif
