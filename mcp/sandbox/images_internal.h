/* The image cache's own header: images.c (the stock image: hashing, build steps, the cache's
 * lock, listing and pruning) shares these with derived_image.c (images of one's own, from a
 * recipe). Nothing outside sandbox/ includes it.
 */
#ifndef AIRLOCK_IMAGES_INTERNAL_H
#define AIRLOCK_IMAGES_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox.h"

/* Keys are 64-bit FNV-1a hashes of every input of a build step. */
struct image_hash {
	uint64_t h;
};
#define IMAGE_HASH_INIT {0xcbf29ce484222325ULL}
void image_hash_bytes(struct image_hash *h, const void *data, size_t len);
void image_hash_string(struct image_hash *h, const char *s);
/* A file's name and content. Returns 0 or -errno. */
int image_hash_file(struct image_hash *h, const char *path);
/* Every file under dir, in sorted order, with its name. Returns 0 or -errno. */
int image_hash_tree(struct image_hash *h, const char *dir);
void image_hash_hex(const struct image_hash *h, char out[IMAGE_KEY_LEN + 1]);

/* The root file system's key for a tree of key tree_key (the stock base's or a derived
 * image's): the tree, rootfs.sh, the overlay and the agent. Returns 0 or -errno. */
int images_rootfs_key(const struct images *im, const char *tree_key, char out[IMAGE_KEY_LEN + 1]);

/* One step of a build: `bash <recipe_dir>/SCRIPT ARGS...` into <dir>/.tmp-NAME-KEY, renamed to
 * <dir>/NAME-KEY when it succeeds (and PRODUCT is in it); an argument BUILD_STEP_OUT stands for
 * that directory. Its output goes to <dir>/logs/NAME-KEY.log. */
#define BUILD_STEP_OUT "@out"
#define BUILD_STEP_MAX_ARGS (RECIPE_MAX_STEPS + 8)
struct build_step {
	const char *name;    /* kernel, base, rootfs, image-NAME */
	const char *key;
	const char *what;    /* for the progress line */
	const char *product; /* path inside the step's directory that proves it is built */
	const char *script;  /* in the recipe directory (images/) */
	const char *const *args;
};
/* Builds step unless it is built (or when force). Returns 0, or -errno with err naming the step,
 * the last line of its log and the log. A failed step leaves nothing behind. */
int images_build_step(const struct images *im, const struct build_step *step, bool force,
		      char *err, size_t err_len);

/* The stock kernel's and base tree's steps, with the storage their arguments need. */
struct stock_steps {
	char work[PATH_MAX]; /* the kernel's work directory */
	const char *kernel_args[3], *base_args[2];
	struct build_step kernel, base;
};
/* Fills stock for im, makes the log directory and takes the cache's lock (images_lock()).
 * Returns the lock's fd, or -errno with err set. */
int images_begin_build(const struct images *im, struct stock_steps *stock, char *err,
		       size_t err_len);

/* Takes the cache's lock (<dir>/.lock), waiting for whoever holds it: one builder or pruner at a
 * time. Returns its fd (closing it lets go), or -errno with err set. */
int images_lock(const struct images *im, char *err, size_t err_len);
/* mkdir -p. Returns 0 or -errno. */
int images_make_dirs(const char *dir);
/* rm -rf, never crossing into a file system mounted below. Returns 0 or -errno. */
int images_remove_tree(const char *path);

/* An image of one's own as <dir>/images/NAME registers it (derived_image.c). */
struct registered_image {
	char name[RECIPE_NAME_MAX + 1];
	char key[IMAGE_KEY_LEN + 1];      /* its tree: image-NAME-KEY */
	char base_key[IMAGE_KEY_LEN + 1]; /* the stock base it was built on */
	char recipe[PATH_MAX];
	char contents[RECIPE_CONTENTS_MAX];
};
#define IMAGES_MAX_REGISTERED 64
/* Every registered image (at most max), in name order. Returns how many. */
int images_registered(const struct images *im, struct registered_image *out, unsigned max);

#endif
