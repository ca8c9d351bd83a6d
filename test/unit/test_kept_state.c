/* The kept states' store (sandbox/kept_state.c), without VMs: a committed state is found only by
 * its owner and only for the snapshot and backend it came from; a file changed or a manifest
 * edited after the commit is refused; states expire, the least recently used are evicted past
 * the cap, and a process's states go with it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "kept_state.h"

static char root[64];

static void write_file(const char *dir, const char *name, size_t size, int fill)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	for (size_t i = 0; f && i < size; i++)
		fputc(fill, f);
	if (f)
		fclose(f);
}

static const struct state_origin origin = {"python", "tcg", "/cache/snapshot-python-tcg-1", 42};

/* A state made as a VM's save would leave it: device state and pages. */
static int commit(struct state_store *st, size_t pages_bytes, char id[STATE_ID_LEN + 1])
{
	char staged[PATH_MAX], err[512];
	int64_t expires;
	if (state_stage(st, staged, err, sizeof err) != 0)
		return -1;
	write_file(staged, "state", 100, 's');
	write_file(staged, "pages", pages_bytes, 'p');
	return state_commit(st, staged, &origin, id, &expires, err, sizeof err);
}

static int open_store(struct state_store *st, const char *owner, uint64_t max_mb)
{
	char dir[PATH_MAX], err[512];
	snprintf(dir, sizeof dir, "%s/states", root);
	return state_store_open(st, dir, max_mb, 3600, owner, err, sizeof err);
}

static void a_state_is_found_by_its_owner_for_its_origin_only(void)
{
	struct state_store st, other;
	char id[STATE_ID_LEN + 1], err[512];
	struct kept_state k;
	CHECK(open_store(&st, "user:1000", 64) == 0 && open_store(&other, "mcp:1:aa", 64) == 0);
	CHECK(memcmp(st.key, other.key, sizeof st.key) == 0); /* one key per store */
	CHECK(commit(&st, 8192, id) == 0 && state_id_valid(id));
	CHECK(state_find(&st, id, &origin, &k, err, sizeof err) == 0);
	CHECK(strcmp(k.language, "python") == 0 && strstr(k.dir, id) != NULL);
	char language[16];
	CHECK(state_language(&st, id, language, sizeof language, err, sizeof err) == 0);
	CHECK(state_find(&other, id, &origin, &k, err, sizeof err) == -ENOENT);
	CHECK(strstr(err, "unknown state_id") != NULL);
	struct state_origin o = origin;
	o.backend = "kvm";
	CHECK(state_find(&st, id, &o, &k, err, sizeof err) == -EINVAL && strstr(err, "backend"));
	o = origin;
	o.snapshot_memory_ctime_ns = 43;
	CHECK(state_find(&st, id, &o, &k, err, sizeof err) == -EINVAL && strstr(err, "made again"));
	o = origin;
	o.snapshot_dir = "/cache/snapshot-python-tcg-2";
	CHECK(state_find(&st, id, &o, &k, err, sizeof err) == -EINVAL && strstr(err, "image"));
	CHECK(!state_id_valid("../../etc/passwd") && !state_id_valid("ABCDEF") &&
	      !state_id_valid("0123456789abcdef0123456789abcde"));
	CHECK(state_find(&st, "../states", &origin, &k, err, sizeof err) == -ENOENT);
}

static void what_changed_after_the_commit_is_refused(void)
{
	struct state_store st;
	char id[STATE_ID_LEN + 1], err[512], path[PATH_MAX + 64];
	struct kept_state k;
	CHECK(open_store(&st, "user:1000", 64) == 0);
	CHECK(commit(&st, 8192, id) == 0);
	snprintf(path, sizeof path, "%s/%s", st.dir, id);
	usleep(20000); /* a change time the commit did not see */
	write_file(path, "pages", 8192, 'q');
	CHECK(state_find(&st, id, &origin, &k, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "changed, truncated or replaced") != NULL);

	CHECK(commit(&st, 8192, id) == 0);
	snprintf(path, sizeof path, "%s/%s/manifest", st.dir, id);
	FILE *f = fopen(path, "r+");
	char text[4096] = "";
	size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
	text[n] = '\0';
	char *lang = strstr(text, "\"python\"");
	CHECK(lang != NULL);
	if (f && lang) {
		memcpy(lang, "\"pythoo\"", 8); /* same length: only the MAC can tell */
		rewind(f);
		fwrite(text, 1, n, f);
	}
	if (f)
		fclose(f);
	struct state_origin o = origin;
	o.language = "pythoo";
	CHECK(state_find(&st, id, &o, &k, err, sizeof err) == -EINVAL);
	CHECK(strstr(err, "MAC") != NULL);
	CHECK(commit(&st, 8192, id) == 0);
	snprintf(path, sizeof path, "%s/%s/extra", st.dir, id);
	FILE *extra = fopen(path, "w");
	if (extra)
		fclose(extra);
	CHECK(state_find(&st, id, &origin, &k, err, sizeof err) == -EINVAL);
}

static void states_expire_and_the_least_recently_used_go_first(void)
{
	struct state_store st;
	char a[STATE_ID_LEN + 1], b[STATE_ID_LEN + 1], c[STATE_ID_LEN + 1], err[512];
	char path[PATH_MAX + 64];
	struct kept_state k;
	CHECK(open_store(&st, "user:7", 1) == 0); /* 1 MiB */
	state_remove_owned(&st);
	CHECK(commit(&st, 400 << 10, a) == 0);
	usleep(5000);
	CHECK(commit(&st, 400 << 10, b) == 0);
	usleep(5000);
	CHECK(state_find(&st, a, &origin, &k, err, sizeof err) == 0); /* a is now the newer */
	usleep(5000);
	CHECK(commit(&st, 400 << 10, c) == 0);
	snprintf(path, sizeof path, "%s/%s", st.dir, b);
	CHECK(access(path, F_OK) != 0); /* b, least recently used, made room */
	snprintf(path, sizeof path, "%s/%s", st.dir, a);
	CHECK(access(path, F_OK) == 0);
	char big[STATE_ID_LEN + 1];
	CHECK(commit(&st, 2 << 20, big) == -EFBIG); /* alone past the cap */
	CHECK(state_store_bytes(&st) <= 1 << 20);

	st.ttl_s = 0; /* renewed by the find below to expire at once */
	CHECK(state_find(&st, a, &origin, &k, err, sizeof err) == 0);
	sleep(1);
	CHECK(state_find(&st, a, &origin, &k, err, sizeof err) == -ENOENT);
	CHECK(strstr(err, "has expired") != NULL && access(path, F_OK) != 0);
}

static void a_process_s_states_go_with_it(void)
{
	struct state_store mine, dead, user;
	char id[STATE_ID_LEN + 1], gone[STATE_ID_LEN + 1], kept[STATE_ID_LEN + 1];
	char path[PATH_MAX + 64], owner[STATE_OWNER_MAX];
	state_owner(true, owner);
	CHECK(strncmp(owner, "mcp:", 4) == 0);
	CHECK(open_store(&mine, owner, 64) == 0 && open_store(&dead, "mcp:2147483646:ff", 64) == 0 &&
	      open_store(&user, "user:1000", 64) == 0);
	CHECK(commit(&mine, 4096, id) == 0 && commit(&dead, 4096, gone) == 0 &&
	      commit(&user, 4096, kept) == 0);
	state_sweep(&user); /* the dead process's go; a live one's stay */
	snprintf(path, sizeof path, "%s/%s", user.dir, gone);
	CHECK(access(path, F_OK) != 0);
	snprintf(path, sizeof path, "%s/%s", user.dir, id);
	CHECK(access(path, F_OK) == 0);
	state_remove_owned(&mine);
	CHECK(access(path, F_OK) != 0);
	snprintf(path, sizeof path, "%s/%s", user.dir, kept);
	CHECK(access(path, F_OK) == 0 && state_remove(&user, kept) == 0 && access(path, F_OK) != 0);
	CHECK(state_remove(&user, kept) == -ENOENT);
	struct stat s;
	snprintf(path, sizeof path, "%s/key", user.dir);
	CHECK(stat(path, &s) == 0 && (s.st_mode & 0777) == 0600);
	CHECK(stat(user.dir, &s) == 0 && (s.st_mode & 0777) == 0700);
}

int main(void)
{
	snprintf(root, sizeof root, "/tmp/airlock-test-states-XXXXXX");
	if (!mkdtemp(root))
		return 1;
	TEST(a_state_is_found_by_its_owner_for_its_origin_only);
	TEST(what_changed_after_the_commit_is_refused);
	TEST(states_expire_and_the_least_recently_used_go_first);
	TEST(a_process_s_states_go_with_it);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	if (system(cmd) != 0)
		return 1;
	return TEST_EXIT_STATUS();
}
