/* An image recipe: what a derived image adds to airlock's stock one (`airlock image build
 * --recipe FILE`; the format is docs/images.md). Parsing only checks and normalizes; the build
 * is images_build_recipe() (images.c) running images/derived.sh with the steps made here.
 *
 *     name   science                 the image's name: --image science
 *     apt    jq figlet               Debian bookworm packages
 *     pip    tabulate==0.9.0         Python requirements, wheels only, from one of:
 *     pip-wheels wheels/             ... a folder of wheels beside the recipe
 *     pip-index  https://host/simple ... or an index
 *     npm    is-number@7.0.0 ./x.tgz npm package specs (a ./file is beside the recipe)
 *     npm-registry https://host/     (npm's default registry without it)
 *     copy   data/ /opt/data         a file or folder beside the recipe, to a path in the image
 */
#ifndef AIRLOCK_RECIPE_H
#define AIRLOCK_RECIPE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define RECIPE_NAME_MAX 32
#define RECIPE_MAX_BYTES (16u << 10)
#define RECIPE_MAX_STEPS 64
#define RECIPE_MAX_SOURCES 64
#define RECIPE_CONTENTS_MAX 1024

struct recipe {
	char name[RECIPE_NAME_MAX + 1];
	char dir[PATH_MAX]; /* the recipe file's folder: local sources are relative to it */
	/* The build, one step per string, in the order derived.sh runs them:
	 *   "apt PKG..."  "pip wheels DIR REQ..." or "pip index URL REQ..."
	 *   "npm REGISTRY|- SPEC..."  "copy SRC DEST"
	 * Every word is free of blanks and quotes (checked), so the script splits them safely. */
	char *steps[RECIPE_MAX_STEPS];
	unsigned n_steps;
	/* Local inputs (relative to dir): their content is part of the image's key. */
	char *sources[RECIPE_MAX_SOURCES];
	unsigned n_sources;
	/* What the image adds, for the tool description: "Debian packages: jq; files: /opt/data" */
	char contents[RECIPE_CONTENTS_MAX];
};

/* Reads and checks the recipe file at path. Returns 0, or -errno with err naming the line and
 * what is wrong with it; r is then empty (recipe_free() is still safe). */
int recipe_read(struct recipe *r, const char *path, char *err, size_t err_len);
/* The same from text (len bytes) whose local sources are relative to dir; a source that does not
 * exist is an error only when check_sources is set (the fuzz target and unit tests need none). */
int recipe_parse(struct recipe *r, const char *text, size_t len, const char *dir,
		 int check_sources, char *err, size_t err_len);
void recipe_free(struct recipe *r);
/* Whether s is an image name a recipe may give (and --image may ask for): a-z first, then a-z,
 * 0-9 or '-', at most RECIPE_NAME_MAX. */
bool recipe_name_valid(const char *s);

#endif
