/* Where airlock finds its companion programs (airlock-agent, airlock-vmm). */
#ifndef AIRLOCK_PATHS_H
#define AIRLOCK_PATHS_H

#include <stddef.h>

/* Looks for a program: $env_var if set; else beside this binary in the build tree
 * (<dir of airlock>/<build_relative>); else the installed AIRLOCK_LIBEXEC_DIR/<name>.
 * Returns 0 with out set, or -ENOENT (out then holds the installed path it tried). */
int locate_program(const char *env_var, const char *build_relative, const char *name, char *out,
		   size_t out_len);

#endif
