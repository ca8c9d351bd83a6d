/* Kept states on disk (kept_state.h): the store, its manifests and their MAC, expiry and the
 * size cap. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "kept_state.h"

#define MANIFEST_VERSION 1
#define MANIFEST_MAX_BYTES 65536
#define STATE_MAX_FILES 4
#define STAGE_PREFIX ".new-"
#define MAC_SIZE 32

struct state_file {
	char name[32];
	uint64_t size, inode, blocks;
	int64_t ctime_ns;
};

/* A manifest as read, or about to be written. */
struct manifest {
	char id[STATE_ID_LEN + 1];
	char language[16], backend[16], snapshot[256], owner[STATE_OWNER_MAX];
	int64_t snapshot_ctime_ns, created, last_used_ms, expires_at;
	struct state_file files[STATE_MAX_FILES];
	size_t n_files;
	char mac[2 * MAC_SIZE + 1];
};

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* Last uses in milliseconds: two uses within a second still have an order (eviction). */
static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hex(const uint8_t *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * n] = '\0';
}

bool state_id_valid(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++)
		if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
			return false;
	return n == STATE_ID_LEN;
}

void state_owner(bool per_process, char out[STATE_OWNER_MAX])
{
	if (!per_process) {
		snprintf(out, STATE_OWNER_MAX, "user:%u", (unsigned)getuid());
		return;
	}
	uint8_t r[8] = {0};
	char h[17];
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		memcpy(r, &(int64_t){now_s()}, sizeof r);
	hex(r, sizeof r, h);
	snprintf(out, STATE_OWNER_MAX, "mcp:%d:%s", (int)getpid(), h);
}

static int ensure_key(struct state_store *st, char *err, size_t err_len)
{
	char path[PATH_MAX];
	if (path_printf(path, sizeof path, "%s/key", st->dir) != 0)
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		/* made once: under a temporary name, then linked in (a racing process keeps its own
		 * only if it linked first) */
		char tmp[PATH_MAX];
		uint8_t key[STATE_KEY_SIZE];
		if (path_printf(tmp, sizeof tmp, "%s/key.%d", st->dir, (int)getpid()) != 0 ||
		    getrandom(key, sizeof key, 0) != (ssize_t)sizeof key)
			return -EIO;
		int w = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int ok = w >= 0 && write(w, key, sizeof key) == (ssize_t)sizeof key && fsync(w) == 0;
		if (w >= 0)
			close(w);
		if (ok)
			(void)link(tmp, path);
		unlink(tmp);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	}
	ssize_t n = fd >= 0 ? read(fd, st->key, sizeof st->key) : -1;
	int rc = n == (ssize_t)sizeof st->key ? 0 : -EIO;
	if (fd >= 0)
		close(fd);
	if (rc)
		snprintf(err, err_len, "cannot read the kept states' key %s", path);
	return rc;
}

int state_store_open(struct state_store *st, const char *dir, uint64_t max_mb, uint32_t ttl_s,
		     const char *owner, char *err, size_t err_len)
{
	memset(st, 0, sizeof *st);
	if (path_printf(st->dir, sizeof st->dir, "%s", dir) != 0) {
		snprintf(err, err_len, "--state-dir: path too long");
		return -ENAMETOOLONG;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		int rc = -errno;
		snprintf(err, err_len, "cannot create the kept states' directory %s: %s", dir,
			 strerror(errno));
		return rc;
	}
	st->max_bytes = max_mb << 20;
	st->ttl_s = ttl_s;
	snprintf(st->owner, sizeof st->owner, "%s", owner);
	return ensure_key(st, err, err_len);
}

/* ---- files and manifests ---- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static void remove_tree(const char *dir)
{
	(void)nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* The regular files of a state directory but its manifest, sorted by name. */
static int list_files(const char *dir, struct state_file *files, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	*n = 0;
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || !strncmp(e->d_name, "manifest", 8))
			continue;
		struct stat s;
		if (fstatat(dirfd(d), e->d_name, &s, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(s.st_mode) || *n == STATE_MAX_FILES ||
		    strlen(e->d_name) >= sizeof files->name) {
			rc = -EINVAL;
			break;
		}
		struct state_file *f = &files[(*n)++];
		snprintf(f->name, sizeof f->name, "%s", e->d_name);
		f->size = (uint64_t)s.st_size;
		f->inode = (uint64_t)s.st_ino;
		f->blocks = (uint64_t)s.st_blocks * 512;
		f->ctime_ns = (int64_t)s.st_ctim.tv_sec * 1000000000 + s.st_ctim.tv_nsec;
	}
	closedir(d);
	for (size_t i = 0; rc == 0 && i < *n; i++) /* readdir's order is no order */
		for (size_t j = i + 1; j < *n; j++)
			if (strcmp(files[j].name, files[i].name) < 0) {
				struct state_file t = files[i];
				files[i] = files[j];
				files[j] = t;
			}
	return rc;
}

/* The MAC of everything in m that does not change with use. */
static int manifest_mac(const struct state_store *st, const struct manifest *m,
			char out[2 * MAC_SIZE + 1])
{
	char text[4096];
	int len = snprintf(text, sizeof text, "airlock kept state %d\n%s\n%s\n%s\n%s\n%lld\n%s\n%lld\n",
			   MANIFEST_VERSION, m->id, m->language, m->backend, m->snapshot,
			   (long long)m->snapshot_ctime_ns, m->owner, (long long)m->created);
	for (size_t i = 0; i < m->n_files && len > 0 && (size_t)len < sizeof text; i++) {
		const struct state_file *f = &m->files[i];
		len += snprintf(text + len, sizeof text - (size_t)len, "%s %llu %llu %lld\n", f->name,
				(unsigned long long)f->size, (unsigned long long)f->inode,
				(long long)f->ctime_ns);
	}
	if (len <= 0 || (size_t)len >= sizeof text)
		return -ENAMETOOLONG;
	uint8_t mac[MAC_SIZE];
	size_t mac_len = 0;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, st->key, sizeof st->key, (uint8_t *)text,
		       (size_t)len, mac, sizeof mac, &mac_len) ||
	    mac_len != MAC_SIZE)
		return -EIO;
	hex(mac, sizeof mac, out);
	return 0;
}

static int write_manifest(const char *dir, const struct manifest *m)
{
	json_t *files = json_array();
	for (size_t i = 0; files && i < m->n_files; i++) {
		const struct state_file *f = &m->files[i];
		json_array_append_new(files, json_pack("{s:s, s:I, s:I, s:I}", "name", f->name, "size",
						       (json_int_t)f->size, "inode",
						       (json_int_t)f->inode, "ctime_ns",
						       (json_int_t)f->ctime_ns));
	}
	json_t *j = json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:o, s:s}",
			      "version", MANIFEST_VERSION, "id", m->id, "language", m->language,
			      "backend", m->backend, "snapshot", m->snapshot,
			      "snapshot_memory_ctime_ns", (json_int_t)m->snapshot_ctime_ns, "owner",
			      m->owner, "created", (json_int_t)m->created, "last_used_ms",
			      (json_int_t)m->last_used_ms, "expires_at", (json_int_t)m->expires_at,
			      "files", files, "mac", m->mac);
	if (!j)
		return -ENOMEM;
	char tmp[PATH_MAX], path[PATH_MAX];
	int rc = path_printf(tmp, sizeof tmp, "%s/manifest.%d", dir, (int)getpid()) |
		 path_printf(path, sizeof path, "%s/manifest", dir);
	if (rc == 0 && json_dump_file(j, tmp, JSON_COMPACT) != 0)
		rc = -EIO;
	json_decref(j);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

static int copy_field(json_t *j, const char *key, char *out, size_t out_len)
{
	const char *s = json_string_value(json_object_get(j, key));
	if (!s || strlen(s) >= out_len)
		return -EINVAL;
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int int_field(json_t *j, const char *key, int64_t *out)
{
	json_t *v = json_object_get(j, key);
	if (!json_is_integer(v))
		return -EINVAL;
	*out = (int64_t)json_integer_value(v);
	return 0;
}

/* Reads dir's manifest (untrusted until its MAC is checked). Returns 0 or -EINVAL. */
static int read_manifest(const char *dir, struct manifest *m)
{
	char path[PATH_MAX];
	memset(m, 0, sizeof *m);
	if (path_printf(path, sizeof path, "%s/manifest", dir) != 0)
		return -EINVAL;
	json_error_t jerr;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return errno == ENOENT ? -ENOENT : -EINVAL;
	int64_t version = 0;
	int rc = int_field(j, "version", &version);
	rc |= copy_field(j, "id", m->id, sizeof m->id);
	rc |= copy_field(j, "language", m->language, sizeof m->language);
	rc |= copy_field(j, "backend", m->backend, sizeof m->backend);
	rc |= copy_field(j, "snapshot", m->snapshot, sizeof m->snapshot);
	rc |= copy_field(j, "owner", m->owner, sizeof m->owner);
	rc |= copy_field(j, "mac", m->mac, sizeof m->mac);
	rc |= int_field(j, "snapshot_memory_ctime_ns", &m->snapshot_ctime_ns);
	rc |= int_field(j, "created", &m->created);
	rc |= int_field(j, "last_used_ms", &m->last_used_ms);
	rc |= int_field(j, "expires_at", &m->expires_at);
	json_t *files = json_object_get(j, "files");
	if (!json_is_array(files) || json_array_size(files) > STATE_MAX_FILES)
		rc = -EINVAL;
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f)
	{
		if (rc)
			break;
		struct state_file *sf = &m->files[m->n_files++];
		int64_t size = 0, inode = 0;
		rc |= copy_field(f, "name", sf->name, sizeof sf->name);
		rc |= int_field(f, "size", &size) | int_field(f, "inode", &inode);
		rc |= int_field(f, "ctime_ns", &sf->ctime_ns);
		sf->size = (uint64_t)size;
		sf->inode = (uint64_t)inode;
	}
	json_decref(j);
	return rc || version != MANIFEST_VERSION ? -EINVAL : 0;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* ---- staging and committing ---- */

int state_stage(const struct state_store *st, char dir[PATH_MAX], char *err, size_t err_len)
{
	errno = 0;
	if (path_printf(dir, PATH_MAX, "%s/" STAGE_PREFIX "XXXXXX", st->dir) != 0 || !mkdtemp(dir)) {
		int rc = errno ? -errno : -ENAMETOOLONG;
		snprintf(err, err_len, "cannot make a directory for the state in %s: %s", st->dir,
			 strerror(-rc));
		return rc;
	}
	return 0;
}

void state_unstage(const char *dir)
{
	remove_tree(dir);
}

struct entry {
	char id[STATE_ID_LEN + 1];
	int64_t last_used_ms;
	uint64_t bytes;
};

static uint64_t dir_bytes(const char *dir)
{
	struct state_file files[STATE_MAX_FILES];
	size_t n = 0;
	uint64_t total = 0;
	if (list_files(dir, files, &n) == 0)
		for (size_t i = 0; i < n; i++)
			total += files[i].blocks;
	return total;
}

/* Every committed state of the store (any owner) with its last use and size. */
static int list_states(const struct state_store *st, struct entry **out, size_t *n)
{
	DIR *d = opendir(st->dir);
	if (!d)
		return -errno;
	size_t cap = 16;
	*n = 0;
	*out = malloc(cap * sizeof **out);
	struct dirent *e;
	while (*out && (e = readdir(d)) != NULL) {
		if (!state_id_valid(e->d_name))
			continue;
		char path[PATH_MAX];
		struct manifest m;
		if (path_printf(path, sizeof path, "%s/%s", st->dir, e->d_name) != 0)
			continue;
		if (*n == cap) {
			struct entry *grown = realloc(*out, 2 * cap * sizeof **out);
			if (!grown)
				break;
			*out = grown;
			cap *= 2;
		}
		struct entry *x = &(*out)[*n];
		memcpy(x->id, e->d_name, sizeof x->id); /* valid: exactly STATE_ID_LEN digits */
		x->last_used_ms = read_manifest(path, &m) == 0 ? m.last_used_ms : 0;
		x->bytes = dir_bytes(path);
		(*n)++;
	}
	closedir(d);
	return *out ? 0 : -ENOMEM;
}

static int remove_state_dir(const struct state_store *st, const char *id)
{
	char path[PATH_MAX], doomed[PATH_MAX];
	if (path_printf(path, sizeof path, "%s/%s", st->dir, id) != 0 ||
	    path_printf(doomed, sizeof doomed, "%s/" STAGE_PREFIX "gone-%s", st->dir, id) != 0)
		return -ENAMETOOLONG;
	/* out of sight at once (a rename), then removed */
	if (rename(path, doomed) != 0)
		return -errno;
	remove_tree(doomed);
	return 0;
}

/* Least recently used first, until the store with `adding` more bytes fits its cap. */
static void make_room(const struct state_store *st, uint64_t adding, const char *keep_id)
{
	struct entry *all;
	size_t n;
	if (list_states(st, &all, &n) != 0)
		return;
	uint64_t total = adding;
	for (size_t i = 0; i < n; i++)
		total += all[i].bytes;
	while (total > st->max_bytes) {
		size_t oldest = n;
		for (size_t i = 0; i < n; i++)
			if (all[i].bytes && strcmp(all[i].id, keep_id) &&
			    (oldest == n || all[i].last_used_ms < all[oldest].last_used_ms))
				oldest = i;
		if (oldest == n)
			break;
		if (remove_state_dir(st, all[oldest].id) == 0)
			total -= all[oldest].bytes;
		all[oldest].bytes = 0;
	}
	free(all);
}

int state_commit(struct state_store *st, const char *staged, const struct state_origin *origin,
		 char id[STATE_ID_LEN + 1], int64_t *expires_at, char *err, size_t err_len)
{
	struct manifest m = {0};
	uint8_t r[STATE_ID_LEN / 2];
	int rc = getrandom(r, sizeof r, 0) == (ssize_t)sizeof r ? 0 : -EIO;
	if (rc == 0) {
		hex(r, sizeof r, m.id);
		rc = list_files(staged, m.files, &m.n_files);
	}
	if (rc == 0 && m.n_files == 0)
		rc = -EINVAL;
	uint64_t bytes = 0;
	for (size_t i = 0; rc == 0 && i < m.n_files; i++)
		bytes += m.files[i].blocks;
	if (rc) {
		snprintf(err, err_len, "the saved state is incomplete");
	} else if (bytes > st->max_bytes) {
		rc = -EFBIG;
		snprintf(err, err_len, "the state takes %llu MiB, more than --state-max-mb (%llu)",
			 (unsigned long long)(bytes >> 20), (unsigned long long)(st->max_bytes >> 20));
	}
	if (rc) {
		remove_tree(staged);
		return rc;
	}
	snprintf(m.language, sizeof m.language, "%s", origin->language);
	snprintf(m.backend, sizeof m.backend, "%s", origin->backend);
	snprintf(m.snapshot, sizeof m.snapshot, "%s", base_name(origin->snapshot_dir));
	snprintf(m.owner, sizeof m.owner, "%s", st->owner);
	m.snapshot_ctime_ns = origin->snapshot_memory_ctime_ns;
	m.created = now_s();
	m.last_used_ms = now_ms();
	m.expires_at = m.created + st->ttl_s;
	char path[PATH_MAX];
	if ((rc = manifest_mac(st, &m, m.mac)) == 0 && (rc = write_manifest(staged, &m)) == 0 &&
	    (rc = path_printf(path, sizeof path, "%s/%s", st->dir, m.id)) == 0 &&
	    rename(staged, path) != 0)
		rc = -errno;
	if (rc) {
		snprintf(err, err_len, "cannot write the state's manifest in %s: %s", st->dir,
			 strerror(-rc));
		remove_tree(staged);
		return rc;
	}
	make_room(st, 0, m.id);
	memcpy(id, m.id, sizeof m.id);
	*expires_at = m.expires_at;
	return 0;
}

/* ---- finding, listing, removing ---- */

/* Why dir's state, read into m, may not be restored for origin, or NULL. */
static const char *refusal(const struct state_store *st, const char *dir, const struct manifest *m,
			   const struct state_origin *origin)
{
	char mac[2 * MAC_SIZE + 1];
	struct state_file files[STATE_MAX_FILES];
	size_t n = 0;
	if (manifest_mac(st, m, mac) != 0 || strcmp(mac, m->mac) != 0)
		return "its manifest does not carry this installation's MAC (edited, or made elsewhere)";
	if (list_files(dir, files, &n) != 0 || n != m->n_files)
		return "its files are not the ones it was saved with";
	for (size_t i = 0; i < n; i++) {
		const struct state_file *a = &files[i], *b = &m->files[i];
		if (strcmp(a->name, b->name) || a->size != b->size || a->inode != b->inode ||
		    a->ctime_ns != b->ctime_ns)
			return "a file of it was changed, truncated or replaced after it was saved";
	}
	if (strcmp(m->backend, origin->backend) != 0)
		return "it was made by another backend";
	if (origin->language && strcmp(m->language, origin->language) != 0)
		return "it is another language's state";
	if (strcmp(m->snapshot, base_name(origin->snapshot_dir)) != 0)
		return "it was made from another image or snapshot (an image rebuilt since?)";
	if (m->snapshot_ctime_ns != origin->snapshot_memory_ctime_ns)
		return "its snapshot has been made again since it was saved";
	return NULL;
}

/* Reads this owner's state id into m (its directory into dir). Returns 0, -ENOENT with err
 * set, or -EINVAL for a manifest that cannot be read (refusal() then says why). */
static int open_state(const struct state_store *st, const char *id, char dir[PATH_MAX],
		      struct manifest *m, char *err, size_t err_len)
{
	int rc = -ENOENT;
	if (state_id_valid(id) && path_printf(dir, PATH_MAX, "%s/%s", st->dir, id) == 0)
		rc = read_manifest(dir, m);
	if (rc == -EINVAL) {
		snprintf(err, err_len, "state_id '%s' cannot be restored: its manifest is damaged", id);
		return rc;
	}
	if (rc || strcmp(m->owner, st->owner) != 0 || strcmp(m->id, id) != 0) {
		snprintf(err, err_len,
			 "unknown state_id '%.40s' (never kept here, or expired, evicted, removed, or "
			 "another owner's)",
			 id);
		return -ENOENT;
	}
	return 0;
}

int state_language(const struct state_store *st, const char *id, char *out, size_t out_len,
		   char *err, size_t err_len)
{
	char dir[PATH_MAX];
	struct manifest m;
	int rc = open_state(st, id, dir, &m, err, err_len);
	if (rc == 0)
		snprintf(out, out_len, "%s", m.language);
	return rc;
}

int state_find(struct state_store *st, const char *id, const struct state_origin *origin,
	       struct kept_state *out, char *err, size_t err_len)
{
	struct manifest m;
	int rc = open_state(st, id, out->dir, &m, err, err_len);
	if (rc)
		return rc;
	if (m.expires_at <= now_s()) {
		remove_state_dir(st, id);
		snprintf(err, err_len, "state_id '%s' has expired (kept states live %u s after their "
				       "last use)",
			 id, st->ttl_s);
		return -ENOENT;
	}
	const char *why = refusal(st, out->dir, &m, origin);
	if (why) {
		snprintf(err, err_len, "state_id '%s' cannot be restored: %s", id, why);
		return -EINVAL;
	}
	m.last_used_ms = now_ms();
	m.expires_at = now_s() + st->ttl_s;
	(void)write_manifest(out->dir, &m); /* the renewal; the MAC covers none of it */
	snprintf(out->language, sizeof out->language, "%s", m.language);
	out->expires_at = m.expires_at;
	return 0;
}

int state_list(const struct state_store *st, FILE *out)
{
	struct entry *all;
	size_t n;
	int rc = list_states(st, &all, &n);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		char path[PATH_MAX];
		struct manifest m;
		if (path_printf(path, sizeof path, "%s/%s", st->dir, all[i].id) != 0 ||
		    read_manifest(path, &m) != 0 || strcmp(m.owner, st->owner) != 0)
			continue;
		char used[32], expires[32];
		time_t u = (time_t)(m.last_used_ms / 1000), x = (time_t)m.expires_at;
		strftime(used, sizeof used, "%Y-%m-%dT%H:%M:%SZ", gmtime(&u));
		strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", gmtime(&x));
		fprintf(out, "%s  %-10s  %6.1f MiB  used %s  expires %s%s\n", m.id, m.language,
			(double)all[i].bytes / (1 << 20), used, expires,
			m.expires_at <= now_s() ? " (expired)" : "");
	}
	free(all);
	return 0;
}

int state_remove(const struct state_store *st, const char *id)
{
	char path[PATH_MAX];
	struct manifest m;
	if (!state_id_valid(id) || path_printf(path, sizeof path, "%s/%s", st->dir, id) != 0 ||
	    read_manifest(path, &m) != 0 || strcmp(m.owner, st->owner) != 0)
		return -ENOENT;
	return remove_state_dir(st, id);
}

/* Whether an "mcp:PID:RANDOM" owner's process is gone. */
static bool owner_gone(const char *owner)
{
	int pid;
	if (sscanf(owner, "mcp:%d:", &pid) != 1 || pid <= 0)
		return false;
	return kill(pid, 0) != 0 && errno == ESRCH;
}

static void remove_matching(const struct state_store *st, bool owned_only)
{
	DIR *d = opendir(st->dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];
		if (path_printf(path, sizeof path, "%s/%s", st->dir, e->d_name) != 0)
			continue;
		if (!owned_only && !strncmp(e->d_name, STAGE_PREFIX, strlen(STAGE_PREFIX))) {
			/* a save that died, or a removal cut short: left over after an hour */
			struct stat s;
			if (stat(path, &s) == 0 && s.st_mtime + 3600 < now_s())
				remove_tree(path);
			continue;
		}
		struct manifest m;
		if (!state_id_valid(e->d_name) || read_manifest(path, &m) != 0)
			continue;
		bool doomed = owned_only ? !strcmp(m.owner, st->owner)
					 : m.expires_at <= now_s() || owner_gone(m.owner);
		if (doomed)
			remove_state_dir(st, e->d_name);
	}
	closedir(d);
}

void state_remove_owned(const struct state_store *st)
{
	remove_matching(st, true);
}

void state_sweep(const struct state_store *st)
{
	remove_matching(st, false);
}

uint64_t state_store_bytes(const struct state_store *st)
{
	struct entry *all;
	size_t n;
	uint64_t total = 0;
	if (list_states(st, &all, &n) != 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		total += all[i].bytes;
	free(all);
	return total;
}
