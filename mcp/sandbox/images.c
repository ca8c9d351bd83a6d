/* The image cache (see sandbox.h). Keys are FNV-1a hashes of every input of a build step: its
 * script, its configuration files, and the artifacts it starts from. Each step builds into a
 * temporary directory that is renamed into place only when the step succeeds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "sandbox.h"
#include "backend.h"
#include "images_internal.h"

#define KERNEL_SOURCE "/usr/src/linux-source-6.1.tar.xz"


/* ---- recipe hashing ---- */

void image_hash_bytes(struct image_hash *h, const void *data, size_t len)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < len; i++) {
		h->h ^= p[i];
		h->h *= 0x100000001b3ULL;
	}
}

void image_hash_string(struct image_hash *h, const char *s)
{
	image_hash_bytes(h, s, strlen(s) + 1);
}

int image_hash_file(struct image_hash *h, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	const char *base = strrchr(path, '/');
	image_hash_string(h, base ? base + 1 : path); /* a renamed input is a changed recipe */
	uint8_t buf[65536];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		image_hash_bytes(h, buf, (size_t)n);
	int rc = n < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int image_hash_tree(struct image_hash *h, const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	if (n < 0)
		return -errno;
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		char path[PATH_MAX];
		struct stat st;
		if (!rc && strcmp(name, ".") && strcmp(name, "..") &&
		    path_printf(path, sizeof path, "%s/%s", dir, name) == 0 &&
		    lstat(path, &st) == 0) {
			image_hash_string(h, name);
			if (S_ISDIR(st.st_mode))
				rc = image_hash_tree(h, path);
			else
				rc = image_hash_file(h, path);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

void image_hash_hex(const struct image_hash *h, char out[IMAGE_KEY_LEN + 1])
{
	snprintf(out, IMAGE_KEY_LEN + 1, "%016llx", (unsigned long long)h->h);
}

int images_file_hash(const char *path, char out[IMAGE_KEY_LEN + 1])
{
	struct image_hash h = IMAGE_HASH_INIT;
	int rc = image_hash_file(&h, path);
	image_hash_hex(&h, out);
	return rc;
}

static int recipe_file(const struct images *im, const char *name, char *out, size_t out_len)
{
	return path_printf(out, out_len, "%s/%s", im->recipe_dir, name);
}

static int hash_recipe_files(struct image_hash *h, const struct images *im, const char *const *names)
{
	for (; *names; names++) {
		char path[PATH_MAX];
		int rc = recipe_file(im, *names, path, sizeof path);
		if (rc == 0)
			rc = image_hash_file(h, path);
		if (rc)
			return rc;
	}
	return 0;
}

static int compute_keys(struct images *im)
{
	static const char *const kernel_inputs[] = {"kernel.sh", "kernel.config", NULL};
	static const char *const base_inputs[] = {"rootfs-base.sh", "packages.txt", "node-reseed.c",
						  "python-output.c", "pending-output.h", NULL};
	struct image_hash k = IMAGE_HASH_INIT;
	int rc = hash_recipe_files(&k, im, kernel_inputs);
	/* A new linux-source package (a Debian point release) is a new recipe too. */
	struct stat st;
	if (rc == 0 && stat(KERNEL_SOURCE, &st) == 0) {
		image_hash_bytes(&k, &st.st_size, sizeof st.st_size);
		image_hash_bytes(&k, &st.st_mtime, sizeof st.st_mtime);
	}
	image_hash_hex(&k, im->kernel_key);

	struct image_hash b = IMAGE_HASH_INIT;
	if (rc == 0)
		rc = hash_recipe_files(&b, im, base_inputs);
	image_hash_hex(&b, im->base_key);

	return rc ? rc : images_rootfs_key(im, im->base_key, im->rootfs_key);
}

int images_rootfs_key(const struct images *im, const char *tree_key, char out[IMAGE_KEY_LEN + 1])
{
	static const char *const rootfs_inputs[] = {"rootfs.sh", NULL};
	struct image_hash r = IMAGE_HASH_INIT;
	image_hash_string(&r, tree_key);
	char overlay[PATH_MAX];
	int rc = hash_recipe_files(&r, im, rootfs_inputs);
	if (rc == 0)
		rc = recipe_file(im, "overlay", overlay, sizeof overlay);
	if (rc == 0)
		rc = image_hash_tree(&r, overlay);
	if (rc == 0)
		rc = image_hash_file(&r, im->agent);
	image_hash_hex(&r, out);
	return rc;
}

/* ---- locating things ---- */

int images_init(struct images *im, const char *dir_override, char *err, size_t err_len)
{
	memset(im, 0, sizeof *im);
	const char *env = getenv("AIRLOCK_IMAGES");
	const char *home = getenv("HOME");
	if (dir_override && *dir_override)
		snprintf(im->dir, sizeof im->dir, "%s", dir_override);
	else if (env && *env)
		snprintf(im->dir, sizeof im->dir, "%s", env);
	else if (home && *home)
		snprintf(im->dir, sizeof im->dir, "%s/.cache/airlock", home);
	else {
		snprintf(err, err_len, "no image directory: set HOME, AIRLOCK_IMAGES or --images");
		return -ENOENT;
	}

	const char *recipes = getenv("AIRLOCK_RECIPES");
	char data[PATH_MAX];
	if (recipes && *recipes)
		snprintf(im->recipe_dir, sizeof im->recipe_dir, "%s", recipes);
	else if (locate_data_dir(data, sizeof data) ||
		 path_printf(im->recipe_dir, sizeof im->recipe_dir, "%s/images", data)) {
		snprintf(err, err_len, "the image recipe's path is too long");
		return -ENAMETOOLONG;
	}
	if (locate_program("AIRLOCK_AGENT", "../agent/airlock-agent", "airlock-agent", im->agent,
			   sizeof im->agent) != 0) {
		snprintf(err, err_len, "airlock-agent not found (looked beside this program and in "
				       "%s; set AIRLOCK_AGENT)",
			 AIRLOCK_LIBEXEC_DIR);
		return -ENOENT;
	}
	int rc = compute_keys(im);
	if (rc) {
		snprintf(err, err_len, "cannot read the image recipe in %s: %s", im->recipe_dir,
			 strerror(-rc));
		return rc;
	}
	if (path_printf(im->kernel, sizeof im->kernel, "%s/kernel-%s/vmlinux", im->dir, im->kernel_key) ||
	    path_printf(im->base, sizeof im->base, "%s/base-%s/root", im->dir, im->base_key) ||
	    path_printf(im->rootfs, sizeof im->rootfs, "%s/rootfs-%s/rootfs.ext4", im->dir,
		  im->rootfs_key)) {
		snprintf(err, err_len, "image directory path too long: %s", im->dir);
		return -ENAMETOOLONG;
	}
	return 0;
}

bool images_ready(const struct images *im)
{
	return access(im->kernel, R_OK) == 0 && access(im->rootfs, R_OK) == 0;
}

/* ---- building ---- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int images_remove_tree(const char *path)
{
	if (access(path, F_OK) != 0)
		return 0;
	/* FTW_MOUNT: never into a file system mounted below (a build step's /proc, say) */
	return nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == 0 ? 0 : -errno;
}

/* Runs `bash script args...` with its output in log. Returns its exit status, or -errno. */
static int run_script(const char *log, char *const argv[])
{
	int log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (log_fd < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		int err = -errno;
		close(log_fd);
		return err;
	}
	if (pid == 0) {
		int null_fd = open("/dev/null", O_RDONLY);
		if (null_fd >= 0)
			dup2(null_fd, 0);
		dup2(log_fd, 1);
		dup2(log_fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(log_fd);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void print_log_tail(const char *log, char *last, size_t last_len)
{
	FILE *f = fopen(log, "r");
	if (!f)
		return;
	char lines[5][512] = {{0}};
	unsigned n = 0;
	while (fgets(lines[n % 5], sizeof lines[0], f))
		n++;
	fclose(f);
	for (unsigned i = n > 5 ? n - 5 : 0; i < n; i++)
		fprintf(stderr, "  | %s", lines[i % 5]);
	if (n) {
		snprintf(last, last_len, "%s", lines[(n - 1) % 5]);
		last[strcspn(last, "\n")] = '\0';
	}
}

int images_build_step(const struct images *im, const struct build_step *step, bool force,
		      char *err, size_t err_len)
{
	char final[PATH_MAX], tmp[PATH_MAX], log[PATH_MAX], product[PATH_MAX], script[PATH_MAX],
		old[PATH_MAX];
	if (path_printf(final, sizeof final, "%s/%s-%s", im->dir, step->name, step->key) ||
	    path_printf(tmp, sizeof tmp, "%s/.tmp-%s-%s", im->dir, step->name, step->key) ||
	    path_printf(log, sizeof log, "%s/logs/%s-%s.log", im->dir, step->name, step->key) ||
	    path_printf(product, sizeof product, "%s/%s", final, step->product) ||
	    path_printf(old, sizeof old, "%s.old", final) ||
	    path_printf(script, sizeof script, "%s/%s", im->recipe_dir, step->script)) {
		snprintf(err, err_len, "image directory path too long: %s", im->dir);
		return -ENAMETOOLONG;
	}
	if (!force && access(product, F_OK) == 0)
		return 0;

	/* bash SCRIPT ARGS..., with BUILD_STEP_OUT standing for the step's own directory */
	char *argv[BUILD_STEP_MAX_ARGS + 3] = {"bash", script};
	size_t argc = 2;
	for (const char *const *a = step->args; *a && argc < BUILD_STEP_MAX_ARGS + 2; a++)
		argv[argc++] = (char *)(strcmp(*a, BUILD_STEP_OUT) == 0 ? tmp : *a);
	argv[argc] = NULL;

	int rc = images_remove_tree(tmp);
	if (rc == 0 && mkdir(tmp, 0755) != 0)
		rc = -errno;
	if (rc) {
		snprintf(err, err_len, "cannot create %s: %s", tmp, strerror(-rc));
		return rc;
	}
	fprintf(stderr, "airlock: building %s (%s); log: %s\n", step->name, step->what, log);
	time_t started = time(NULL);
	int status = run_script(log, argv);
	if (status != 0) {
		images_remove_tree(tmp);
		char last[512] = "";
		print_log_tail(log, last, sizeof last);
		snprintf(err, err_len, "image build failed at step '%s' (%s %d%s%s); see %s",
			 step->name, status < 0 ? "error" : "exit status", status, *last ? ": " : "",
			 last, log);
		return -EIO;
	}
	/* Replace atomically: readers see the old complete directory or the new one. */
	images_remove_tree(old);
	if (access(final, F_OK) == 0 && rename(final, old) != 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, final) != 0)
		rc = -errno;
	images_remove_tree(old);
	if (rc) {
		images_remove_tree(tmp);
		snprintf(err, err_len, "cannot move %s into place: %s", tmp, strerror(-rc));
		return rc;
	}
	fprintf(stderr, "airlock: %s built in %lds\n", step->name, (long)(time(NULL) - started));
	return 0;
}

int images_make_dirs(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s", dir);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -errno;
}

int images_lock(const struct images *im, char *err, size_t err_len)
{
	char lock_path[PATH_MAX];
	if (path_printf(lock_path, sizeof lock_path, "%s/.lock", im->dir)) {
		snprintf(err, err_len, "image directory path too long: %s", im->dir);
		return -ENAMETOOLONG;
	}
	int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lock < 0 || flock(lock, LOCK_EX) != 0) {
		int rc = -errno;
		snprintf(err, err_len, "cannot lock %s: %s", lock_path, strerror(errno));
		if (lock >= 0)
			close(lock);
		return rc;
	}
	return lock;
}

/* The stock kernel's and base tree's steps into s. Returns 0 or -ENAMETOOLONG. */
static int stock_steps(const struct images *im, struct stock_steps *s)
{
	if (path_printf(s->work, sizeof s->work, "%s/work", im->dir))
		return -ENAMETOOLONG;
	s->kernel_args[0] = BUILD_STEP_OUT;
	s->kernel_args[1] = s->work;
	s->kernel_args[2] = NULL;
	s->base_args[0] = BUILD_STEP_OUT;
	s->base_args[1] = NULL;
	s->kernel = (struct build_step){"kernel", im->kernel_key,
					"Linux 6.1 from linux-source-6.1, ~4 min on 2 cores",
					"vmlinux", "kernel.sh", s->kernel_args};
	s->base = (struct build_step){"base", im->base_key,
				      "Debian bookworm packages via debootstrap, ~2 min", "root",
				      "rootfs-base.sh", s->base_args};
	return 0;
}

int images_begin_build(const struct images *im, struct stock_steps *stock, char *err,
		       size_t err_len)
{
	char logs[PATH_MAX];
	if (path_printf(logs, sizeof logs, "%s/logs", im->dir) || stock_steps(im, stock)) {
		snprintf(err, err_len, "image directory path too long: %s", im->dir);
		return -ENAMETOOLONG;
	}
	int rc = images_make_dirs(logs);
	if (rc) {
		snprintf(err, err_len, "cannot create %s: %s", logs, strerror(-rc));
		return rc;
	}
	/* One builder at a time; a second airlock waits, then finds the work done. */
	return images_lock(im, err, err_len);
}

int images_build(const struct images *im, bool force, char *err, size_t err_len)
{
	struct stock_steps stock;
	int lock = images_begin_build(im, &stock, err, err_len);
	if (lock < 0)
		return lock;
	const char *rootfs_args[] = {im->base, im->agent, BUILD_STEP_OUT, NULL};
	const struct build_step rootfs = {"rootfs", im->rootfs_key,
					  "root file system image with the agent, ~5 s",
					  "rootfs.ext4", "rootfs.sh", rootfs_args};
	/* The base is only the root file system's input: not needed once that is built, nor for
	 * a derived image, whose own tree (im->base) stands in for it and is built only from its
	 * recipe (images_build_recipe()). */
	bool rootfs_built = !force && access(im->rootfs, R_OK) == 0;
	bool derived = im->image_name[0] != '\0';
	int rc = 0;
	if (derived && !rootfs_built && access(im->base, F_OK) != 0) {
		snprintf(err, err_len, "the tree of image '%s' (%s) is gone: build it again with "
				       "`airlock image build --recipe FILE`", im->image_name, im->base);
		rc = -ENOENT;
	}
	/* (a derived image's --force rebuilds its own parts, not the stock kernel) */
	if (rc == 0)
		rc = images_build_step(im, &stock.kernel, force && !derived, err, err_len);
	if (rc == 0 && !rootfs_built && !derived)
		rc = images_build_step(im, &stock.base, force, err, err_len);
	if (rc == 0)
		rc = images_build_step(im, &rootfs, force, err, err_len);
	close(lock);
	return rc;
}

/* ---- listing ---- */

static uint64_t tree_bytes;

static int add_entry_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	tree_bytes += (uint64_t)st->st_blocks * 512;
	return 0;
}

int images_snapshot_dir(const struct images *im, const struct snapshot_recipe *r, char *out,
			size_t out_len)
{
	struct image_hash h = IMAGE_HASH_INIT;
	char number[32];
	image_hash_string(&h, im->kernel_key);
	image_hash_string(&h, im->rootfs_key);
	image_hash_string(&h, r->backend);
	image_hash_string(&h, r->language);
	snprintf(number, sizeof number, "%u/%u", r->memory_mb, r->vcpus);
	image_hash_string(&h, number);
	/* the program that writes and reads the state: QEMU's stream and ours are versioned by it */
	struct stat st;
	if (stat(r->program, &st) != 0)
		return -errno;
	snprintf(number, sizeof number, "%lld/%lld", (long long)st.st_size,
		 (long long)st.st_mtime);
	image_hash_string(&h, r->program);
	image_hash_string(&h, number);
	char key[IMAGE_KEY_LEN + 1];
	image_hash_hex(&h, key);
	return path_printf(out, out_len, "%s/snapshot-%s-%s-%s", im->dir, r->language, r->backend, key);
}

/* The keys the current recipes use: the stock kernel, base and root file system, and each
 * image of one's own built on that base, its tree and its root file system. Older recipes'
 * artifacts are what `airlock image prune` removes. */
struct current_keys {
	char key[3 + 2 * IMAGES_MAX_REGISTERED][IMAGE_KEY_LEN + 1];
	unsigned n;
};

static void current_keys(const struct images *im, struct current_keys *c)
{
	c->n = 0;
	snprintf(c->key[c->n++], IMAGE_KEY_LEN + 1, "%s", im->kernel_key);
	snprintf(c->key[c->n++], IMAGE_KEY_LEN + 1, "%s", im->base_key);
	if (images_rootfs_key(im, im->base_key, c->key[c->n]) == 0)
		c->n++;
	struct registered_image *reg = calloc(IMAGES_MAX_REGISTERED, sizeof *reg);
	int n = reg ? images_registered(im, reg, IMAGES_MAX_REGISTERED) : 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(reg[i].base_key, im->base_key) != 0)
			continue;
		snprintf(c->key[c->n++], IMAGE_KEY_LEN + 1, "%s", reg[i].key);
		if (images_rootfs_key(im, reg[i].key, c->key[c->n]) == 0)
			c->n++;
	}
	free(reg);
}

static bool is_current_key(const struct current_keys *c, const char *key)
{
	for (unsigned i = 0; i < c->n; i++)
		if (!strcmp(c->key[i], key))
			return true;
	return false;
}

/* A snapshot is current when it was made from a current root file system (its manifest says
 * which). */
static bool snapshot_is_current(const struct current_keys *c, const char *dir)
{
	char path[PATH_MAX], line[256];
	if (path_printf(path, sizeof path, "%s/manifest", dir) != 0)
		return false;
	FILE *f = fopen(path, "r");
	bool current = false;
	while (f && !current && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		current = strncmp(line, "rootfs ", 7) == 0 && is_current_key(c, line + 7);
	}
	if (f)
		fclose(f);
	return current;
}

/* Whether the artifact name (at path) is one a current recipe uses. */
static bool artifact_is_current(const struct current_keys *c, const char *name, const char *path)
{
	if (!strncmp(name, "snapshot-", 9))
		return snapshot_is_current(c, path);
	return is_current_key(c, strrchr(name, '-') + 1);
}

/* Whether name is an artifact of some recipe of ours: kernel-KEY, base-KEY, rootfs-KEY,
 * image-NAME-KEY, snapshot-LANG-BACKEND-KEY. (Others share the directory: the KVM test
 * host's, test/kvmhost.) */
static bool is_artifact(const char *name)
{
	static const char *const kinds[] = {"kernel-", "base-", "rootfs-", "image-", "snapshot-"};
	const char *dash = strrchr(name, '-');
	bool ours = false;
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		ours |= strncmp(name, kinds[i], strlen(kinds[i])) == 0;
	return ours && dash && strlen(dash + 1) == IMAGE_KEY_LEN;
}

static uint64_t size_of_tree(const char *path)
{
	tree_bytes = 0;
	nftw(path, add_entry_size, 32, FTW_PHYS);
	return tree_bytes;
}

/* The names of images built on an older stock base: their trees go with the base. Returns how
 * many could not be removed. */
static unsigned prune_registrations(const struct images *im, bool dry_run, FILE *out)
{
	struct registered_image *reg = calloc(IMAGES_MAX_REGISTERED, sizeof *reg);
	int n = reg ? images_registered(im, reg, IMAGES_MAX_REGISTERED) : 0;
	unsigned failed = 0;
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX];
		if (!strcmp(reg[i].base_key, im->base_key) ||
		    path_printf(path, sizeof path, "%s/images/%s", im->dir, reg[i].name))
			continue;
		int rc = dry_run || unlink(path) == 0 ? 0 : -errno;
		fprintf(out, "%s image name %s (built on base-%s; its recipe: %s)%s%s\n",
			dry_run ? "would remove" : "removed", reg[i].name, reg[i].base_key,
			reg[i].recipe, rc ? ": " : "", rc ? strerror(-rc) : "");
		failed += rc != 0;
	}
	free(reg);
	return failed;
}

int images_prune(const struct images *im, bool dry_run, FILE *out, char *err, size_t err_len)
{
	/* no build may be under way: its .tmp- directory would look abandoned */
	int lock = images_lock(im, err, err_len);
	if (lock < 0)
		return lock;
	struct current_keys *current = malloc(sizeof *current);
	if (!current) {
		close(lock);
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	current_keys(im, current);
	struct dirent **names;
	int n = scandir(im->dir, &names, NULL, alphasort);
	uint64_t freed = 0;
	unsigned removed = 0, failed = 0;
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		char path[PATH_MAX];
		/* a build step that died half-way (the lock keeps out one under way) */
		bool abandoned = !strncmp(name, ".tmp-", 5);
		if ((abandoned || is_artifact(name)) &&
		    path_printf(path, sizeof path, "%s/%s", im->dir, name) == 0 &&
		    (abandoned || !artifact_is_current(current, name, path))) {
			uint64_t bytes = size_of_tree(path);
			int rc = dry_run ? 0 : images_remove_tree(path);
			fprintf(out, "%s %-40s %8.1f MiB%s%s\n", dry_run ? "would remove" : "removed",
				name, (double)bytes / (1 << 20), rc ? ": " : "",
				rc ? strerror(-rc) : "");
			if (rc == 0) {
				freed += bytes;
				removed++;
			} else {
				failed++;
			}
		}
		free(names[i]);
	}
	if (n >= 0)
		free(names);
	free(current);
	failed += prune_registrations(im, dry_run, out);
	close(lock);
	fprintf(out, "%s %u artifacts of older recipes, %.1f MiB; kept the current recipe's "
		     "(kernel-%s base-%s rootfs-%s and its snapshots) and the images of one's "
		     "own built on it\n",
		dry_run ? "would remove" : "removed", removed, (double)freed / (1 << 20),
		im->kernel_key, im->base_key, im->rootfs_key);
	if (failed) {
		snprintf(err, err_len, "%u artifacts could not be removed", failed);
		return -EIO;
	}
	return 0;
}

/* The images of one's own: each name, whether it can be used, and what it adds. */
static void list_registered(const struct images *im, FILE *out)
{
	struct registered_image *reg = calloc(IMAGES_MAX_REGISTERED, sizeof *reg);
	int n = reg ? images_registered(im, reg, IMAGES_MAX_REGISTERED) : 0;
	if (n > 0)
		fprintf(out, "images of one's own (--image NAME):\n");
	for (int i = 0; i < n; i++) {
		struct images use = *im;
		char why[512];
		const char *state = "ready";
		if (images_use(&use, reg[i].name, why, sizeof why) != 0)
			state = "stale (built on an older stock image: build it again)";
		else if (!images_ready(&use))
			state = "its root file system is not built (the first use builds it)";
		fprintf(out, "  %-20s image-%s-%s  %s; adds %s; recipe %s\n", reg[i].name,
			reg[i].name, reg[i].key, state, reg[i].contents, reg[i].recipe);
	}
	free(reg);
}

int images_list(const struct images *im, FILE *out)
{
	fprintf(out, "image directory: %s\n", im->dir);
	fprintf(out, "current recipe:  kernel-%s base-%s rootfs-%s\n", im->kernel_key,
		im->base_key, im->rootfs_key);
	struct dirent **names;
	int n = scandir(im->dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(out, "(nothing built yet: run `airlock image build`)\n");
		return 0;
	}
	struct current_keys *current = malloc(sizeof *current);
	if (current)
		current_keys(im, current);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		char path[PATH_MAX];
		if (current && is_artifact(name) &&
		    path_printf(path, sizeof path, "%s/%s", im->dir, name) == 0)
			fprintf(out, "%-40s %8.1f MiB  %s\n", name,
				(double)size_of_tree(path) / (1 << 20),
				artifact_is_current(current, name, path)
					? "current"
					: "stale (an older recipe: `airlock image prune`)");
		free(names[i]);
	}
	free(names);
	free(current);
	list_registered(im, out);
	fprintf(out, "ready: %s\n", images_ready(im) ? "yes" : "no (run `airlock image build`)");
	return 0;
}
