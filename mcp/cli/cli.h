/* The `airlock` command: main.c picks the subcommand; each returns the process exit status. */
#ifndef AIRLOCK_CLI_H
#define AIRLOCK_CLI_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "sandbox.h"

int cli_mcp(int argc, char **argv);    /* airlock mcp    (mcp.c) */
int cli_run(int argc, char **argv);    /* airlock run    (run.c) */
int cli_image(int argc, char **argv);  /* airlock image  (image.c) */
int cli_doctor(int argc, char **argv); /* airlock doctor (doctor.c) */
int cli_bench(int argc, char **argv);  /* airlock bench  (bench.c) */

/* airlock run --out DIR (run_out_dir.c): writes the returned files under dir; skipped, when not
 * NULL, gets a {path, reason} for each file not written. */
void run_save_output_files(const char *dir, const struct file_list *files, json_t *skipped);
/* write(2) until all of data is written. Returns 0 or -errno. */
int run_write_all(int fd, const void *data, size_t len);

/* airlock run --dir PATH (run_dir.c): packs the tree under path, then the --put files put (which
 * win over a file of the same name), into a ustar archive for /work (malloc'd *tar, *tar_len).
 * Symbolic links are never followed out of path; what is left out is said on warn, a line each.
 * Returns 0, or -errno with err naming path: -EFBIG when the archive would pass max_bytes,
 * -E2BIG past max_entries files, directories and links, before anything past them is read. */
int run_dir_pack(const char *path, const struct file_list *put, size_t max_bytes,
		 size_t max_entries, FILE *warn, uint8_t **tar, size_t *tar_len, char *err,
		 size_t err_len);
/* airlock run --repo URL --command CMD (run_dir.c): bash code (malloc'd *code) that clones url
 * into /work/repo and runs cmd there as `bash -c` would, both quoted. Returns 0, or -EINVAL with
 * err set when url is not an http:// or https:// URL without spaces or control characters. */
int run_repo_code(const char *url, const char *cmd, char **code, char *err, size_t err_len);

/* Exit status for a failure of airlock itself (as timeout(1) uses 125). */
#define EXIT_SANDBOX_FAILURE 125

#endif
