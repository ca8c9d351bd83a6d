/* The `airlock` command: main.c picks the subcommand; each returns the process exit status. */
#ifndef AIRLOCK_CLI_H
#define AIRLOCK_CLI_H

#include <jansson.h>
#include <stddef.h>

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

/* Exit status for a failure of airlock itself (as timeout(1) uses 125). */
#define EXIT_SANDBOX_FAILURE 125

#endif
