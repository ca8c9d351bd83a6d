/* Images of one's own (sandbox.h: images_build_recipe, images_use): a recipe (recipe.h) adds
 * packages and files to the stock base tree. The derived tree is one more cached artifact,
 * image-NAME-KEY, its key the stock base's key, derived.sh and everything the recipe says or
 * copies; its root file system and snapshots follow as the stock image's do, keyed by it. The
 * name is registered in <dir>/images/NAME (the file below), which --image NAME reads.
 *
 *     airlock-image 1
 *     key KEY            the tree: <dir>/image-NAME-KEY/root
 *     base KEY           the stock base it was built on
 *     recipe PATH        where it came from (to say how to build it again)
 *     contents TEXT      what it adds, one line (recipe.h)
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "images_internal.h"
#include "sandbox.h"

#define REGISTRY_MAGIC "airlock-image 1"

static int registry_path(const struct images *im, const char *name, char *out, size_t len)
{
	return path_printf(out, len, "%s/images/%s", im->dir, name);
}

/* Reads <dir>/images/NAME. Returns 0, -ENOENT when there is none, or -EINVAL. */
static int registry_read(const struct images *im, const char *name, struct registered_image *out)
{
	char path[PATH_MAX], line[RECIPE_CONTENTS_MAX + 64];
	memset(out, 0, sizeof *out);
	if (registry_path(im, name, path, sizeof path))
		return -ENAMETOOLONG;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	bool magic = fgets(line, sizeof line, f) && strncmp(line, REGISTRY_MAGIC "\n",
							     sizeof REGISTRY_MAGIC) == 0;
	while (magic && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		char *value = strchr(line, ' ');
		if (!value)
			continue;
		*value++ = '\0';
		if (!strcmp(line, "key"))
			snprintf(out->key, sizeof out->key, "%s", value);
		else if (!strcmp(line, "base"))
			snprintf(out->base_key, sizeof out->base_key, "%s", value);
		else if (!strcmp(line, "recipe"))
			snprintf(out->recipe, sizeof out->recipe, "%s", value);
		else if (!strcmp(line, "contents"))
			snprintf(out->contents, sizeof out->contents, "%s", value);
	}
	fclose(f);
	snprintf(out->name, sizeof out->name, "%s", name);
	return magic && strlen(out->key) == IMAGE_KEY_LEN && strlen(out->base_key) == IMAGE_KEY_LEN
		       ? 0
		       : -EINVAL;
}

static int registry_write(const struct images *im, const struct recipe *r, const char *key,
			  const char *recipe_path)
{
	char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
	if (path_printf(dir, sizeof dir, "%s/images", im->dir) ||
	    registry_path(im, r->name, path, sizeof path) ||
	    path_printf(tmp, sizeof tmp, "%s.tmp", path))
		return -ENAMETOOLONG;
	int rc = images_make_dirs(dir);
	if (rc)
		return rc;
	FILE *f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, REGISTRY_MAGIC "\nkey %s\nbase %s\nrecipe %s\ncontents %s\n", key, im->base_key,
		recipe_path, r->contents);
	rc = ferror(f) ? -EIO : 0;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

int images_registered(const struct images *im, struct registered_image *out, unsigned max)
{
	char dir[PATH_MAX];
	if (path_printf(dir, sizeof dir, "%s/images", im->dir))
		return 0;
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	unsigned found = 0;
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		if (found < max && name[0] != '.' && !strchr(name, '.') &&
		    registry_read(im, name, &out[found]) == 0)
			found++;
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	return (int)found;
}

/* The derived tree's key: the stock base, the script, the steps, and the local files' content. */
static int image_key(const struct images *im, const struct recipe *r, char out[IMAGE_KEY_LEN + 1])
{
	struct image_hash h = IMAGE_HASH_INIT;
	char script[PATH_MAX];
	image_hash_string(&h, im->base_key);
	int rc = path_printf(script, sizeof script, "%s/derived.sh", im->recipe_dir);
	if (rc == 0)
		rc = image_hash_file(&h, script);
	for (unsigned i = 0; rc == 0 && i < r->n_steps; i++)
		image_hash_string(&h, r->steps[i]);
	for (unsigned i = 0; rc == 0 && i < r->n_sources; i++) {
		char path[PATH_MAX];
		struct stat st;
		image_hash_string(&h, r->sources[i]);
		rc = path_printf(path, sizeof path, "%s/%s", r->dir, r->sources[i]);
		if (rc == 0 && lstat(path, &st) != 0)
			rc = -errno;
		if (rc == 0)
			rc = S_ISDIR(st.st_mode) ? image_hash_tree(&h, path) : image_hash_file(&h, path);
	}
	image_hash_hex(&h, out);
	return rc;
}

/* The stock kernel and base tree, then the derived tree, under the cache's lock. */
static int build_tree(const struct images *im, const struct recipe *r, const char *key,
		      bool force, char *err, size_t err_len)
{
	struct stock_steps stock;
	int lock = images_begin_build(im, &stock, err, err_len);
	if (lock < 0)
		return lock;
	char step_name[64];
	snprintf(step_name, sizeof step_name, "image-%s", r->name);
	const char *image_args[BUILD_STEP_MAX_ARGS + 1] = {im->base, r->dir, BUILD_STEP_OUT};
	for (unsigned i = 0; i < r->n_steps; i++)
		image_args[3 + i] = r->steps[i];
	const struct build_step image = {step_name, key, "the stock tree and what the recipe adds",
					 "root", "derived.sh", image_args};
	int rc = images_build_step(im, &stock.kernel, false, err, err_len);
	if (rc == 0)
		rc = images_build_step(im, &stock.base, false, err, err_len);
	if (rc == 0)
		rc = images_build_step(im, &image, force, err, err_len);
	close(lock);
	return rc;
}

int images_build_recipe(struct images *im, const char *recipe_path, bool force, char *err,
			size_t err_len)
{
	if (im->image_name[0]) {
		snprintf(err, err_len, "a recipe builds on the stock image, not on image '%s'",
			 im->image_name);
		return -EINVAL;
	}
	struct recipe r;
	char key[IMAGE_KEY_LEN + 1], resolved[PATH_MAX];
	int rc = recipe_read(&r, recipe_path, err, err_len);
	if (rc)
		return rc;
	rc = image_key(im, &r, key);
	if (rc)
		snprintf(err, err_len, "cannot read what the recipe %s uses: %s", recipe_path,
			 strerror(-rc));
	if (rc == 0)
		rc = build_tree(im, &r, key, force, err, err_len);
	if (rc == 0 && !realpath(recipe_path, resolved))
		snprintf(resolved, sizeof resolved, "%s", recipe_path);
	if (rc == 0 && (rc = registry_write(im, &r, key, resolved)) != 0)
		snprintf(err, err_len, "cannot register image '%s' in %s/images: %s", r.name,
			 im->dir, strerror(-rc));
	char name[RECIPE_NAME_MAX + 1];
	snprintf(name, sizeof name, "%s", r.name);
	recipe_free(&r);
	if (rc == 0)
		rc = images_use(im, name, err, err_len);
	/* its root file system with the agent, as the stock one's (force: the tree is new) */
	if (rc == 0)
		rc = images_build(im, force, err, err_len);
	return rc;
}

int images_use(struct images *im, const char *name, char *err, size_t err_len)
{
	struct registered_image reg;
	int rc = recipe_name_valid(name) ? registry_read(im, name, &reg) : -ENOENT;
	if (rc == -ENOENT) {
		snprintf(err, err_len, "no image '%s' in %s: build it with `airlock image build "
				       "--recipe FILE` (`airlock image list` shows those built)",
			 name, im->dir);
		return rc;
	}
	if (rc) {
		snprintf(err, err_len, "image '%s': %s/images/%s is unreadable (%s): build it again",
			 name, im->dir, name, strerror(-rc));
		return rc;
	}
	if (strcmp(reg.base_key, im->base_key) != 0) {
		snprintf(err, err_len, "image '%s' was built on another stock image (base-%s, now "
				       "base-%s): build it again with `airlock image build --recipe %s`",
			 name, reg.base_key, im->base_key, reg.recipe);
		return -ESTALE;
	}
	char rootfs_key[IMAGE_KEY_LEN + 1];
	rc = images_rootfs_key(im, reg.key, rootfs_key);
	if (rc == 0 &&
	    (path_printf(im->base, sizeof im->base, "%s/image-%s-%s/root", im->dir, name, reg.key) ||
	     path_printf(im->rootfs, sizeof im->rootfs, "%s/rootfs-%s/rootfs.ext4", im->dir,
			 rootfs_key)))
		rc = -ENAMETOOLONG;
	if (rc) {
		snprintf(err, err_len, "image '%s': %s", name, strerror(-rc));
		return rc;
	}
	snprintf(im->rootfs_key, sizeof im->rootfs_key, "%s", rootfs_key);
	snprintf(im->image_name, sizeof im->image_name, "%s", name);
	snprintf(im->image_contents, sizeof im->image_contents, "%s", reg.contents);
	return 0;
}
