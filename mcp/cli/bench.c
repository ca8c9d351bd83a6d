/* airlock bench: the benchmark (docs/benchmarks.md). The measuring and the peers live in
 * test/perf/bench.py (standard-library Python; installed as share/airlock/bench.py); this finds
 * it and runs it against this airlock binary. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sandbox.h"

int cli_bench(int argc, char **argv)
{
	struct images im;
	char err[1024], script[PATH_MAX + 32], self[PATH_MAX];
	if (images_init(&im, NULL, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		return 1;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		fprintf(stderr, "airlock: cannot find this program: %s\n", strerror(errno));
		return 1;
	}
	self[n] = '\0';
	/* beside the recipes: test/perf/ in a source tree, the data directory's top when installed */
	snprintf(script, sizeof script, "%s/../test/perf/bench.py", im.recipe_dir);
	if (access(script, R_OK) != 0)
		snprintf(script, sizeof script, "%s/../bench.py", im.recipe_dir);
	if (access(script, R_OK) != 0) {
		fprintf(stderr, "airlock: the benchmark is not beside the recipes in %s (reinstall "
				"airlock, or set AIRLOCK_RECIPES to a source tree's images/)\n",
			im.recipe_dir);
		return 1;
	}
	const char *python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
	char *args[64];
	int k = 0;
	args[k++] = (char *)python;
	args[k++] = script;
	args[k++] = "--airlock";
	args[k++] = self;
	for (int i = 1; i < argc && k < 62; i++) /* --backend, --quick, --json FILE, --images DIR */
		args[k++] = argv[i];
	args[k] = NULL;
	execvp(python, args);
	fprintf(stderr, "airlock: cannot run %s: %s\n", python, strerror(errno));
	return 1;
}
