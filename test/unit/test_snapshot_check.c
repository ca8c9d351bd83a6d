/* The host's snapshot check (mcp/sandbox/snapshot_cache.c): a whole snapshot passes; a missing, truncated,
 * altered or mismatched one is refused with -EINVAL (or -ENOENT when there is none), so that it is
 * made again instead of being half-loaded. No VM: the files are written here. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "proto.h"
#include "sandbox.h"

static char dir[] = "/tmp/airlock-test-snapshot-XXXXXX";
static struct images im;
static struct snapshot_spec spec;

static void write_file(const char *name, const char *content, size_t len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		CHECK(fwrite(content, 1, len, f) == len);
		fclose(f);
	}
}

/* A whole snapshot: 64 KiB of memory, a small state file, the manifest that describes them
 * (version 2, or the given version without the TSC rate that version 2 added), with the line
 * protocol (its agent's wire protocol: "protocol N\n", or "" for none). */
static void make_snapshot(int version, const char *protocol)
{
	char path[512], hash[IMAGE_KEY_LEN + 1], manifest[1024];
	static const char state[] = "device state that stands in for QEMU's stream";
	write_file("state", state, sizeof state - 1);
	snprintf(path, sizeof path, "%s/memory", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, 65536) == 0);
	close(fd);
	struct stat st;
	CHECK(stat(path, &st) == 0);
	long long ctime_ns = (long long)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
	char facts[128];
	snprintf(facts, sizeof facts, "guest_tsc_khz 2599998\nmemory_ctime_ns %lld\n", ctime_ns);
	snprintf(path, sizeof path, "%s/state", dir);
	CHECK(images_file_hash(path, hash) == 0);
	int n = snprintf(manifest, sizeof manifest,
			 "airlock-snapshot %d\nlanguage python\nbackend tcg\nkernel %s\nrootfs %s\n"
			 "memory_mb 512\nmemory_size 65536\nstate_size %zu\nstate_hash %s\n%s%s",
			 version, im.kernel_key, im.rootfs_key, sizeof state - 1, hash,
			 version == 2 ? facts : "", protocol);
	write_file("manifest", manifest, (size_t)n);
}

static void make_version(int version)
{
	char protocol[32];
	snprintf(protocol, sizeof protocol, "protocol %u\n", AL_PROTO_VERSION);
	make_snapshot(version, protocol);
}

static void make_whole(void)
{
	make_version(2);
}

static int check(void)
{
	char why[512];
	return snapshot_check(&spec, dir, NULL, why, sizeof why);
}

static void whole_snapshot_passes(void)
{
	make_whole();
	CHECK(check() == 0);
	char why[512];
	struct snapshot_facts facts = {0, 0};
	CHECK(snapshot_check(&spec, dir, &facts, why, sizeof why) == 0);
	CHECK(facts.guest_tsc_khz == 2599998); /* what a restore tells the guest's kernel */
	CHECK(facts.memory_ctime_ns > 0);
	CHECK(snapshot_memory_unchanged(dir, facts.memory_ctime_ns, why, sizeof why) == 0);
}

/* A VM that broke out into QEMU 7.2 could write the memory file it maps (sandbox.h): once
 * written, even with its size and its modification time put back, the snapshot is refused. */
static void written_memory_is_refused(void)
{
	make_whole();
	char why[512], path[512];
	struct snapshot_facts facts;
	CHECK(snapshot_check(&spec, dir, &facts, why, sizeof why) == 0);
	snprintf(path, sizeof path, "%s/memory", dir);
	struct stat before;
	CHECK(stat(path, &before) == 0);
	usleep(10000); /* a coarse file system clock still moves */
	int fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, "\x90", 1, 4096) == 1);
	struct timespec times[2] = {before.st_atim, before.st_mtim};
	CHECK(futimens(fd, times) == 0);
	close(fd);
	CHECK(snapshot_memory_unchanged(dir, facts.memory_ctime_ns, why, sizeof why) == -EINVAL);
	CHECK(strstr(why, "written") != NULL);
	CHECK(check() == -EINVAL);
}

/* Version 1 (before guest_tsc_khz) restored with today's command line would not load. */
static void older_manifest_is_refused(void)
{
	make_version(1);
	CHECK(check() == -EINVAL);
}

/* Its memory holds the agent that was running: one speaking another wire protocol must not be
 * restored, and a manifest from before the line has an agent that spoke 1. */
static void an_agent_of_another_protocol_is_refused(void)
{
	char why[512];
	const char *old =
	    "it was made by an agent speaking wire protocol 1 (this airlock speaks 3)";
	make_snapshot(2, "");
	CHECK(snapshot_check(&spec, dir, NULL, why, sizeof why) == -EINVAL);
	CHECK(strstr(why, old) != NULL);
	make_snapshot(2, "protocol 1\n");
	CHECK(snapshot_check(&spec, dir, NULL, why, sizeof why) == -EINVAL);
	CHECK(strstr(why, "wire protocol 1 (this airlock speaks 3)") != NULL);
	make_snapshot(2, "protocol 2\n");
	CHECK(snapshot_check(&spec, dir, NULL, why, sizeof why) == -EINVAL);
	CHECK(strstr(why, "wire protocol 2 (this airlock speaks 3)") != NULL);
	make_snapshot(2, "protocol 4\n");
	CHECK(snapshot_check(&spec, dir, NULL, why, sizeof why) == -EINVAL);
	CHECK(strstr(why, "wire protocol 4 (this airlock speaks 3)") != NULL);
	make_snapshot(2, "protocol 3\n");
	CHECK(check() == 0);
}

static void missing_manifest_is_no_snapshot(void)
{
	make_whole();
	char path[512];
	snprintf(path, sizeof path, "%s/manifest", dir);
	unlink(path);
	CHECK(check() == -ENOENT);
}

static void altered_state_is_refused(void)
{
	make_whole();
	write_file("state", "device state that stands in for QEMU's streaM", 45);
	CHECK(check() == -EINVAL);
}

static void truncated_files_are_refused(void)
{
	char path[512];
	make_whole();
	snprintf(path, sizeof path, "%s/memory", dir);
	CHECK(truncate(path, 4096) == 0);
	CHECK(check() == -EINVAL);
	make_whole();
	snprintf(path, sizeof path, "%s/state", dir);
	CHECK(truncate(path, 10) == 0);
	CHECK(check() == -EINVAL);
}

static void other_images_or_language_are_refused(void)
{
	make_whole();
	spec.language = "bash";
	CHECK(check() == -EINVAL);
	spec.language = "python";
	char saved[IMAGE_KEY_LEN + 1];
	memcpy(saved, im.rootfs_key, sizeof saved);
	memcpy(im.rootfs_key, "0123456789abcdef", sizeof saved);
	CHECK(check() == -EINVAL);
	memcpy(im.rootfs_key, saved, sizeof saved);
	CHECK(check() == 0);
}

static void garbage_manifest_is_refused(void)
{
	make_whole();
	write_file("manifest", "\x01\x02 nonsense\nstate_size -5\n", 24);
	CHECK(check() == -EINVAL);
	write_file("manifest", "", 0);
	CHECK(check() == -EINVAL);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	memcpy(im.kernel_key, "00000000000000aa", IMAGE_KEY_LEN + 1);
	memcpy(im.rootfs_key, "00000000000000bb", IMAGE_KEY_LEN + 1);
	spec = (struct snapshot_spec){.images = &im, .language = "python", .memory_mb = 512};
	TEST(whole_snapshot_passes);
	TEST(older_manifest_is_refused);
	TEST(an_agent_of_another_protocol_is_refused);
	TEST(written_memory_is_refused);
	TEST(missing_manifest_is_no_snapshot);
	TEST(altered_state_is_refused);
	TEST(truncated_files_are_refused);
	TEST(other_images_or_language_are_refused);
	TEST(garbage_manifest_is_refused);
	const char *names[] = {"manifest", "memory", "state"};
	for (size_t i = 0; i < 3; i++) {
		char path[512];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
	return TEST_EXIT_STATUS();
}
