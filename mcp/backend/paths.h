/* Where airlock finds its companion programs (airlock-agent, airlock-vmm) and its data (the
 * image recipes, the benchmark). */
#ifndef AIRLOCK_PATHS_H
#define AIRLOCK_PATHS_H

#include <stddef.h>

/* Looks for a program: $env_var if set; else beside this binary in the build tree
 * (<dir of airlock>/<build_relative>); else the installed AIRLOCK_LIBEXEC_DIR/<name>.
 * Returns 0 with out set, or -ENOENT (out then holds the installed path it tried). */
int locate_program(const char *env_var, const char *build_relative, const char *name, char *out,
		   size_t out_len);

/* Where airlock's data lives: the source tree (AIRLOCK_SOURCE_DIR) for the airlock of its build
 * tree, the installed AIRLOCK_DATA_DIR for any other. Writes the directory to out: 0, or
 * -ENAMETOOLONG. */
int locate_data_dir(char *out, size_t out_len);

/* snprintf for paths: -ENAMETOOLONG instead of a silently cut path, 0 when it fits. */
int path_printf(char *out, size_t out_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
