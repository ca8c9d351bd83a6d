/* Companion programs and data (see backend.h). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "backend.h"

int locate_program(const char *env_var, const char *build_relative, const char *name, char *out,
		   size_t out_len)
{
	if (!out || out_len == 0)
		return -EINVAL;
	const char *env = getenv(env_var);
	if (env && *env) {
		snprintf(out, out_len, "%s", env);
		return access(out, R_OK) == 0 ? 0 : -ENOENT;
	}
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			int len = snprintf(out, out_len, "%s/%s", self, build_relative);
			if (len > 0 && (size_t)len < out_len && access(out, R_OK) == 0)
				return 0;
		}
	}
	snprintf(out, out_len, "%s/%s", AIRLOCK_LIBEXEC_DIR, name);
	return access(out, R_OK) == 0 ? 0 : -ENOENT;
}

int locate_data_dir(char *out, size_t out_len)
{
	char self[PATH_MAX], here[PATH_MAX], built[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	bool in_build_tree = false;
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			in_build_tree = realpath(self, here) && realpath(AIRLOCK_BUILD_DIR "/mcp", built) &&
					strcmp(here, built) == 0;
		}
	}
	return path_printf(out, out_len, "%s", in_build_tree ? AIRLOCK_SOURCE_DIR : AIRLOCK_DATA_DIR);
}

int path_printf(char *out, size_t out_len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, out_len, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}
