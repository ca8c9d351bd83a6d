/* airlock: the host program. Dispatches to its subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "confine.h"

static void usage(FILE *out)
{
	fprintf(out,
		"airlock %s: run untrusted code in a fresh microVM\n"
		"\n"
		"usage:\n"
		"  airlock mcp [--backend auto|kvm|tcg] [--pool N] [--max-concurrent N]\n"
		"              [--max-queued N] [--max-timeout S]\n"
		"  airlock run [--backend auto|kvm|tcg] [--lang LANGUAGE]\n"
		"              [--timeout S] [--json] [--put PATH=HOSTFILE]... [--out DIR]\n"
		"              [--cold] (--file F | CODE)\n"
		"  airlock image build [--force] [--backend auto|kvm|tcg] [--no-snapshots]\n"
		"  airlock image list\n"
		"  airlock image prune [--dry-run]\n"
		"  airlock state list | airlock state rm ID\n"
		"  airlock doctor\n"
		"  airlock bench [--backend tcg|kvm] [--quick] [--json FILE]\n"
		"\n"
		"Common options: --images DIR (image cache, default ~/.cache/airlock),\n"
		"--memory-mb N, --vcpus N, --verbose (guest boot log on stderr).\n",
		AIRLOCK_VERSION);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	/* what the MCP host left open is not for the VMs airlock starts */
	if (vm_process_close_inherited_fds() != 0)
		fprintf(stderr, "airlock: cannot mark inherited fds close-on-exec\n");
	const char *cmd = argv[1];
	if (strcmp(cmd, "mcp") == 0)
		return cli_mcp(argc - 1, argv + 1);
	if (strcmp(cmd, "run") == 0)
		return cli_run(argc - 1, argv + 1);
	if (strcmp(cmd, "image") == 0)
		return cli_image(argc - 1, argv + 1);
	if (strcmp(cmd, "state") == 0)
		return cli_state(argc - 1, argv + 1);
	if (strcmp(cmd, "doctor") == 0)
		return cli_doctor(argc - 1, argv + 1);
	if (strcmp(cmd, "bench") == 0)
		return cli_bench(argc - 1, argv + 1);
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("airlock %s\n", AIRLOCK_VERSION);
		return 0;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "airlock: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
