/* The `airlock` subcommands other than the MCP server. Each returns the process exit status. */
#ifndef AIRLOCK_CLI_H
#define AIRLOCK_CLI_H

int cli_mcp(int argc, char **argv);    /* airlock mcp    (cli_mcp.c) */
int cli_run(int argc, char **argv);    /* airlock run    (cli_run.c) */
int cli_image(int argc, char **argv);  /* airlock image  (cli_image.c) */
int cli_doctor(int argc, char **argv); /* airlock doctor (cli_doctor.c) */
int cli_bench(int argc, char **argv);  /* airlock bench  (cli_bench.c) */

/* Exit status for a failure of airlock itself (as timeout(1) uses 125). */
#define EXIT_SANDBOX_FAILURE 125

#endif
