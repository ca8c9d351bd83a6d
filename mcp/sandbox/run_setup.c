/* What a RUN sets up before the program (agent/proto.h, setup records), from the operator's
 * policy and the call's packages: the proxy's environment, the extra CA, the install step and
 * the pre-scan step. The guest runs exactly these commands; nothing of the call reaches a
 * command line unchecked (sandbox_packages_check).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox_internal.h"

#define PROXY_URL "http://127.0.0.1:3128"
_Static_assert(AL_EGRESS_PROXY_PORT == 3128, "PROXY_URL names the agent's port");
#define CA_BUNDLE "/run/airlock/ca-bundle.pem" /* agent.h: SETUP_CA_BUNDLE */
#define CA_EXTRA "/run/airlock/ca-extra.pem"   /* agent.h: SETUP_CA_EXTRA */
#define PRESCAN "/usr/lib/airlock/prescan.py"

static bool pip_requirement_ok(const char *r)
{
	/* a name first (letters, digits), then extras, specifiers and markers: no URL ("@" or
	 * "://"), no option, no path, no line break */
	if (!isalnum((unsigned char)r[0]) || strstr(r, "://") || strchr(r, '@'))
		return false;
	for (const char *p = r; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.[],<>=!~ ;'\"()*+", *p))
			return false;
	return true;
}

static bool npm_spec_ok(const char *s)
{
	/* [@scope/]name[@version-or-range-or-tag]: no URL, path, git or alias spec */
	const char *p = s;
	if (*p == '@') {
		const char *slash = strchr(p, '/');
		if (!slash || slash == p + 1)
			return false;
		p = slash + 1;
	}
	if (!*p || *p == '.' || *p == '_' || strstr(s, "://") || strstr(s, "npm:") ||
	    strstr(s, "git") == s || strstr(s, "file:") || strstr(s, "link:"))
		return false;
	const char *at = strchr(p, '@');
	for (const char *q = p; *q && q != at; q++)
		if (!islower((unsigned char)*q) && !isdigit((unsigned char)*q) && !strchr("-._~", *q))
			return false;
	for (const char *q = at ? at + 1 : ""; *q; q++)
		if (!isalnum((unsigned char)*q) && !strchr("-._~^<>= |*+", *q))
			return false;
	return true;
}

int sandbox_packages_check(const struct sandbox_policy *policy, enum al_language language,
			   const char *const *packages, size_t n, char *err, size_t err_len)
{
	if (n == 0)
		return 0;
	const char *index = NULL, *flag = NULL;
	if (language == AL_LANG_PYTHON) {
		index = policy ? policy->pip_index : NULL;
		flag = "--pip-index";
	} else if (language == AL_LANG_JAVASCRIPT) {
		index = policy ? policy->npm_registry : NULL;
		flag = "--npm-registry";
	} else {
		snprintf(err, err_len, "packages: only python (pip) and javascript (npm) install "
			 "packages, not %s", sandbox_language_name(language));
		return -EINVAL;
	}
	if (!index) {
		snprintf(err, err_len, "packages: this airlock has no package index for %s "
			 "(the operator starts it with %s URL)", sandbox_language_name(language), flag);
		return -EINVAL;
	}
	if (n > SANDBOX_MAX_PACKAGES) {
		snprintf(err, err_len, "packages: at most %d", SANDBOX_MAX_PACKAGES);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *p = packages[i];
		bool ok = strlen(p) <= SANDBOX_MAX_PACKAGE_LEN &&
			  (language == AL_LANG_PYTHON ? pip_requirement_ok(p) : npm_spec_ok(p));
		if (!ok) {
			snprintf(err, err_len, "packages[%zu]: \"%.80s\" is not a %s", i, p,
				 language == AL_LANG_PYTHON
				     ? "pip requirement (NAME[extras] with version specifiers; no "
				       "URL, path or option)"
				     : "npm package spec (NAME or NAME@VERSION; no URL, path or git)");
			return -EINVAL;
		}
	}
	return 0;
}

struct records {
	uint8_t *data;
	size_t len, cap;
	int error;
};

static void put(struct records *r, uint32_t kind, const void *a, size_t a_len, const void *b,
		size_t b_len)
{
	struct al_setup_record rec = {.kind = kind, .length = (uint32_t)(a_len + b_len)};
	size_t need = r->len + sizeof rec + a_len + b_len;
	if (r->error)
		return;
	if (need > AL_SETUP_MAX_LEN) {
		r->error = -E2BIG;
		return;
	}
	if (need > r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(r->data, cap);
		if (!p) {
			r->error = -ENOMEM;
			return;
		}
		r->data = p;
		r->cap = cap;
	}
	memcpy(r->data + r->len, &rec, sizeof rec);
	r->len += sizeof rec;
	if (a_len)
		memcpy(r->data + r->len, a, a_len);
	r->len += a_len;
	if (b_len)
		memcpy(r->data + r->len, b, b_len);
	r->len += b_len;
}

static void put_env(struct records *r, const char *name, const char *value)
{
	char entry[512];
	int n = snprintf(entry, sizeof entry, "%s=%s", name, value);
	if (n < 0 || (size_t)n >= sizeof entry || strchr(value, '\'') || strchr(value, '\n')) {
		r->error = r->error ? r->error : -EINVAL;
		return;
	}
	put(r, AL_SETUP_ENV, entry, (size_t)n, NULL, 0);
}

/* A step: its command header and argv, NUL-terminated strings. */
static void put_step(struct records *r, uint32_t kind, uint32_t fail_status,
		     const char *const *argv, size_t argc)
{
	size_t len = 0;
	for (size_t i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	char *args = malloc(len ? len : 1);
	if (!args) {
		r->error = -ENOMEM;
		return;
	}
	size_t at = 0;
	for (size_t i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]) + 1;
		memcpy(args + at, argv[i], n);
		at += n;
	}
	struct al_step_command cmd = {.kind = kind, .fail_status = fail_status};
	put(r, AL_SETUP_STEP, &cmd, sizeof cmd, args, len);
	free(args);
}

static void put_install(struct records *r, const struct sandbox_request *req)
{
	const struct sandbox_policy *p = req->policy;
	const char *argv[SANDBOX_MAX_PACKAGES + 24];
	size_t n = 0;
	/* pip's --trusted-host takes the index's host[:port] */
	char trusted_host_buf[300];
	const char *trusted_host = NULL;
	if (p->pip_index && strncmp(p->pip_index, "http://", 7) == 0) {
		size_t len = strcspn(p->pip_index + 7, "/?#");
		if (len > 0 && len < sizeof trusted_host_buf) {
			memcpy(trusted_host_buf, p->pip_index + 7, len);
			trusted_host_buf[len] = '\0';
			trusted_host = trusted_host_buf;
		}
	}
	if (req->language == AL_LANG_PYTHON) {
		/* --user into PYTHONUSERBASE (the call's /work), not --target: a --target install
		 * sees none of the image's packages and downloads numpy again for a wheel that
		 * needs it; --user counts them as satisfied. Debian marks its python externally
		 * managed, hence --break-system-packages (nothing of the system is written). */
		const char *head[] = {"/usr/bin/python3", "-m", "pip", "install", "--user",
				      "--break-system-packages", "--only-binary=:all:",
				      "--no-cache-dir", "--disable-pip-version-check", "--no-input",
				      "--progress-bar", "off", "--index-url", p->pip_index};
		for (size_t i = 0; i < sizeof head / sizeof *head; i++)
			argv[n++] = head[i];
		/* the operator named this index: an http:// one is trusted as given */
		if (strncmp(p->pip_index, "http://", 7) == 0 && trusted_host) {
			argv[n++] = "--trusted-host";
			argv[n++] = trusted_host;
		}
		argv[n++] = "--";
	} else {
		const char *head[] = {"/usr/bin/npm", "install", "--ignore-scripts", "--no-audit",
				      "--no-fund", "--no-update-notifier", "--no-package-lock",
				      "--no-save", "--registry", p->npm_registry, "--prefix",
				      SANDBOX_NODE_PACKAGES, "--"};
		for (size_t i = 0; i < sizeof head / sizeof *head; i++)
			argv[n++] = head[i];
	}
	for (size_t i = 0; i < req->n_packages; i++)
		argv[n++] = req->packages[i];
	put_step(r, AL_STEP_INSTALL, 0, argv, n);
}

static void put_scan(struct records *r, const struct sandbox_request *req)
{
	const struct sandbox_policy *p = req->policy;
	const char *argv[12];
	size_t n = 0;
	argv[n++] = "/usr/bin/python3";
	argv[n++] = "-I";
	argv[n++] = "-S";
	argv[n++] = PRESCAN;
	argv[n++] = "--language";
	argv[n++] = sandbox_language_name(req->language);
	argv[n++] = "--mode";
	argv[n++] = p->scan == SCAN_DENY ? "deny" : "warn";
	if (p->deny_imports && p->deny_imports[0]) {
		argv[n++] = "--deny-imports";
		argv[n++] = p->deny_imports;
	}
	/* the agent appends the program's path: a scan step reads the program */
	put_step(r, AL_STEP_SCAN, 3, argv, n);
}

bool sandbox_request_has_egress(const struct sandbox_request *req)
{
	const struct sandbox_policy *p = req->policy;
	return p && (p->egress.n_allow > 0 || req->n_packages > 0);
}

int sandbox_build_setup(const struct sandbox_request *req, uint8_t **out, size_t *out_len)
{
	struct records r = {0};
	const struct sandbox_policy *p = req->policy;
	*out = NULL;
	*out_len = 0;
	if (!p)
		return 0;
	if (sandbox_request_has_egress(req)) {
		static const char *const proxy_vars[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
							 "https_proxy"};
		for (size_t i = 0; i < 4; i++)
			put_env(&r, proxy_vars[i], PROXY_URL);
		put_env(&r, "NO_PROXY", "localhost,127.0.0.1,::1");
		put_env(&r, "no_proxy", "localhost,127.0.0.1,::1");
		/* Node 18 reads no proxy variable itself: the image's preload does it */
		if (req->language == AL_LANG_JAVASCRIPT)
			put_env(&r, "NODE_OPTIONS", "--require /usr/lib/airlock/node-proxy.js");
	}
	if (p->ca_pem) {
		put(&r, AL_SETUP_CA, p->ca_pem, p->ca_len, NULL, 0);
		static const char *const bundle_vars[] = {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
							  "CURL_CA_BUNDLE", "GIT_SSL_CAINFO",
							  "PIP_CERT", "npm_config_cafile"};
		for (size_t i = 0; i < sizeof bundle_vars / sizeof *bundle_vars; i++)
			put_env(&r, bundle_vars[i], CA_BUNDLE);
		put_env(&r, "NODE_EXTRA_CA_CERTS", CA_EXTRA);
	}
	if (req->n_packages > 0) {
		if (req->language == AL_LANG_PYTHON) {
			put_env(&r, "PYTHONUSERBASE", SANDBOX_PYTHON_PACKAGES);
			/* the waiting interpreter computed its user site at start: name it */
			put_env(&r, "PYTHONPATH", SANDBOX_PYTHON_USER_SITE);
		}
		else {
			/* the call's packages first, then the image's own (agent/program.c) */
			put_env(&r, "NODE_PATH", SANDBOX_NODE_PACKAGES "/node_modules:"
						 "/usr/local/lib/node_modules");
			put_env(&r, "npm_config_cache", "/tmp/.npm");
		}
	}
	if (p->scan != SCAN_OFF)
		put_scan(&r, req); /* first: a refused program installs nothing */
	if (req->n_packages > 0)
		put_install(&r, req);
	if (r.error) {
		free(r.data);
		return r.error;
	}
	*out = r.data;
	*out_len = r.len;
	return 0;
}
