/* The operator's policy flags, shared by `airlock mcp` and `airlock run`: what a program may
 * reach (--allow-host), where packages come from (--pip-index, --npm-registry, --install-host),
 * an extra CA (--ca-file), and the advisory pre-scan (--scan, --deny-imports). A malformed flag
 * is an error at start, never a surprise at the first call.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define MAX_CA_FILE (1u << 19) /* a bundle of a few hundred certificates at most */

/* The host (and port) of an index URL, as an allowlist pattern: "host:port". */
static int url_host_pattern(const char *flag, const char *url, char *out, size_t out_len)
{
	const char *rest = NULL;
	uint16_t default_port = 0;
	if (strncmp(url, "https://", 8) == 0) {
		rest = url + 8;
		default_port = 443;
	} else if (strncmp(url, "http://", 7) == 0) {
		rest = url + 7;
		default_port = 80;
	}
	size_t len = rest ? strcspn(rest, "/?#") : 0;
	if (!rest || len == 0 || len >= out_len - 8 || memchr(rest, '@', len) ||
	    strpbrk(url, " '\"\n\t\\")) {
		fprintf(stderr, "airlock: %s wants an http:// or https:// URL without user "
			"information or quotes, got '%s'\n", flag, url);
		return -EINVAL;
	}
	memcpy(out, rest, len);
	out[len] = '\0';
	bool has_port = out[0] == '[' ? strstr(out, "]:") != NULL : strchr(out, ':') != NULL;
	if (!has_port)
		snprintf(out + len, out_len - len, ":%u", default_port);
	return 0;
}

static int read_ca_file(const char *path, struct sandbox_policy *p)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > MAX_CA_FILE) {
		fprintf(stderr, "airlock: --ca-file %s: %s\n", path,
			fd < 0 ? strerror(errno) : "not a regular file of 1 byte to 512 KiB");
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	char *pem = malloc((size_t)st.st_size + 1);
	ssize_t n = pem ? read(fd, pem, (size_t)st.st_size) : -1;
	close(fd);
	if (n != st.st_size || !strstr(pem, "-----BEGIN CERTIFICATE-----")) {
		fprintf(stderr, "airlock: --ca-file %s: not a PEM certificate file\n", path);
		free(pem);
		return -EINVAL;
	}
	pem[n] = '\0';
	free((char *)p->ca_pem);
	p->ca_pem = pem;
	p->ca_len = (size_t)n;
	return 0;
}

static bool module_list_ok(const char *list)
{
	for (const char *c = list; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("._,", *c))
			return false;
	return list[0] != '\0';
}

int policy_option(int opt, const char *arg, struct sandbox_policy *p)
{
	char err[512], pattern[300];
	int rc = 0;
	switch (opt) {
	case POLICY_OPT_ALLOW_HOST:
		rc = egress_policy_add(&p->egress.allow, &p->egress.n_allow, arg, err, sizeof err);
		break;
	case POLICY_OPT_INSTALL_HOST:
		rc = egress_policy_add(&p->egress.install, &p->egress.n_install, arg, err,
				       sizeof err);
		break;
	case POLICY_OPT_PIP_INDEX:
	case POLICY_OPT_NPM_REGISTRY: {
		const char *flag = opt == POLICY_OPT_PIP_INDEX ? "--pip-index" : "--npm-registry";
		if (url_host_pattern(flag, arg, pattern, sizeof pattern) != 0)
			return -EINVAL;
		rc = egress_policy_add(&p->egress.install, &p->egress.n_install, pattern, err,
				       sizeof err);
		if (opt == POLICY_OPT_PIP_INDEX)
			p->pip_index = arg;
		else
			p->npm_registry = arg;
		break;
	}
	case POLICY_OPT_CA_FILE:
		return read_ca_file(arg, p);
	case POLICY_OPT_SCAN:
		if (strcmp(arg, "off") == 0)
			p->scan = SCAN_OFF;
		else if (strcmp(arg, "warn") == 0)
			p->scan = SCAN_WARN;
		else if (strcmp(arg, "deny") == 0)
			p->scan = SCAN_DENY;
		else {
			fprintf(stderr, "airlock: --scan wants off, warn or deny, got '%s'\n", arg);
			return -EINVAL;
		}
		p->scan_given = true;
		return 0;
	case POLICY_OPT_DENY_IMPORTS:
		if (!module_list_ok(arg)) {
			fprintf(stderr, "airlock: --deny-imports wants module names separated by "
				"commas, got '%s'\n", arg);
			return -EINVAL;
		}
		p->deny_imports = arg;
		return 0;
	default:
		return -EINVAL;
	}
	if (rc)
		fprintf(stderr, "airlock: %s\n", err);
	return rc;
}

int policy_finish(struct sandbox_policy *p)
{
	if (p->deny_imports && !p->scan_given)
		p->scan = SCAN_DENY; /* naming modules to deny means refusing programs that use them */
	return 0;
}

void policy_free(struct sandbox_policy *p)
{
	egress_policy_free(&p->egress);
	free((char *)p->ca_pem);
	*p = (struct sandbox_policy){0};
}
