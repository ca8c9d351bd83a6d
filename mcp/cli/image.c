/* airlock image build|list|prune: the guest image cache from the command line. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "sandbox.h"
#include "backend.h"

int cli_image(int argc, char **argv)
{
	static const struct option options[] = {
		{"force", no_argument, NULL, 'f'},
		{"backend", required_argument, NULL, 'b'},
		{"no-snapshots", no_argument, NULL, 'n'},
		{"dry-run", no_argument, NULL, 'd'},
		{"images", required_argument, NULL, 'i'},
		{"recipe", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	bool force = false, snapshots = true, dry_run = false;
	const char *dir = NULL, *backend = "auto", *recipe = NULL;
	int c;
	if (argc < 2) {
		fprintf(stderr, "usage: airlock image build [--force] [--recipe FILE] | "
				"airlock image list | airlock image prune [--dry-run]\n");
		return 2;
	}
	const char *action = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case 'f':
			force = true;
			break;
		case 'i':
			dir = optarg;
			break;
		case 'b':
			backend = optarg;
			break;
		case 'n':
			snapshots = false;
			break;
		case 'd':
			dry_run = true;
			break;
		case 'r':
			recipe = optarg;
			break;
		default:
			fprintf(stderr, "usage: airlock image build [--force] [--images DIR] "
					"[--backend auto|kvm|tcg] [--no-snapshots] [--recipe FILE] | "
					"airlock image list [--images DIR] | "
					"airlock image prune [--images DIR] [--dry-run]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	struct images im;
	char err[1024];
	if (images_init(&im, dir, err, sizeof err) != 0) {
		fprintf(stderr, "airlock: %s\n", err);
		return 1;
	}
	if (strcmp(action, "list") == 0)
		return images_list(&im, stdout) == 0 ? 0 : 1;
	if (strcmp(action, "prune") == 0) {
		if (images_prune(&im, dry_run, stdout, err, sizeof err) != 0) {
			fprintf(stderr, "airlock: %s\n", err);
			return 1;
		}
		return 0;
	}
	if (recipe && strcmp(action, "build") != 0) {
		fprintf(stderr, "airlock: --recipe is for `airlock image build`\n");
		return 2;
	}
	if (strcmp(action, "build") == 0) {
		/* a recipe: the image of one's own (and the stock parts it needs), else the stock one */
		if ((recipe ? images_build_recipe(&im, recipe, force, err, sizeof err)
			    : images_build(&im, force, err, sizeof err)) != 0) {
			fprintf(stderr, "airlock: %s\n", err);
			return 1;
		}
		/* the snapshots of the backend this host uses, at the default VM size */
		const struct backend *chosen;
		if (snapshots && backend_select(backend, &chosen, err, sizeof err) != 0) {
			fprintf(stderr, "airlock: no snapshots: %s\n", err);
			return 1;
		}
		if (snapshots && snapshot_ensure_all(chosen, &im, VM_DEFAULT_MEMORY_MB,
						     VM_DEFAULT_VCPUS, err, sizeof err) != 0) {
			fprintf(stderr, "airlock: %s\n", err);
			return 1;
		}
		if (recipe)
			fprintf(stderr, "airlock: image '%s' ready in %s (adds %s): use it with "
					"--image %s\n", im.image_name, im.dir, im.image_contents,
				im.image_name);
		else
			fprintf(stderr, "airlock: images ready in %s\n", im.dir);
		return 0;
	}
	fprintf(stderr, "airlock: unknown image action '%s' (build, list or prune)\n", action);
	return 2;
}
