/* egress/: the host's end of egress (agent/proto.h, "Egress streams"; docs/egress.md). The
 * guest has no network device: a program's HTTP(S) goes to the agent's proxy on guest loopback,
 * which carries each connection here as a stream. This part alone decides where it may go: the
 * operator's allowlist (policy.c), the proxy request read with Debian's http-parser
 * (request.c), the name resolved on the host and its addresses checked, then the connection
 * made and spliced on the VM's event loop within per-VM limits (egress.c). It parses no TLS: a
 * CONNECT's target is the name. Depends on libuv, http-parser and agent/proto.h only.
 */
#ifndef AIRLOCK_EGRESS_H
#define AIRLOCK_EGRESS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

/* ---- limits, per VM ---- */

#define EGRESS_MAX_OPEN 32          /* connections at once; more get a 403 saying so */
#define EGRESS_MAX_ATTEMPTS 1024    /* connections in one run */
#define EGRESS_MAX_LOGGED 256       /* attempts listed in the result (the rest are counted) */
#define EGRESS_MAX_BYTES (1ull << 30) /* each way, all connections together */
#define EGRESS_CONNECT_TIMEOUT_MS 10000 /* resolving and connecting */
#define EGRESS_MAX_REQUEST_HEAD 16384   /* a proxy request's line and headers */
#define EGRESS_MAX_HOST 253

/* ---- policy.c: the operator's allowlist ---- */

/* One --allow-host PATTERN: "host", "host:port", "*.domain" (any name below domain, not domain
 * itself), "[v6]:port"; an IP literal allows that address even where its class is refused. */
struct egress_rule {
	char host[EGRESS_MAX_HOST + 1]; /* lower case; without "*." for a wildcard */
	bool wildcard;
	bool ip_literal; /* host is an IPv4 or IPv6 address, in inet_ntop's form */
	uint16_t port;   /* 0: 443 and 80 */
};

struct egress_policy {
	struct egress_rule *allow; /* --allow-host */
	size_t n_allow;
	struct egress_rule *install; /* reachable only while packages install (--pip-index's and
				      * --npm-registry's hosts, --install-host) */
	size_t n_install;
};

/* Parses a pattern. Returns 0, or -EINVAL with err saying what is wrong with it. */
int egress_rule_parse(const char *pattern, struct egress_rule *rule, char *err, size_t err_len);
/* Adds a rule to a list (realloc'd). Returns 0 or -ENOMEM / -EINVAL (err set). */
int egress_policy_add(struct egress_rule **list, size_t *n, const char *pattern, char *err,
		      size_t err_len);
void egress_policy_free(struct egress_policy *p);
/* Whether host:port (host lower case, an IP literal in inet_ntop's form) matches a rule of the
 * list; *literal says the matching rule names that IP literal. */
bool egress_rules_match(const struct egress_rule *rules, size_t n, const char *host,
			uint16_t port, bool *literal);
/* "host, host:port, *.domain" for the tool's description (cut to fit). */
void egress_rules_describe(const struct egress_rule *rules, size_t n, char *out, size_t out_len);
/* Why an address may not be reached unless named as an IP literal ("loopback", "private",
 * "link-local", "cloud metadata", ...), or NULL for an ordinary public address. IPv4-mapped,
 * -compatible, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they carry. */
const char *egress_address_refusal(const struct sockaddr *addr);
/* Canonical form of an IP literal (inet_ntop's), or false when text is not one. Forms that
 * resolvers accept but inet_pton does not ("127.1", "0x7f.0.0.1", "2130706433") are reported
 * through *odd: they are refused, never resolved. */
bool egress_ip_literal(const char *text, char *out, size_t out_len, bool *odd);

/* ---- request.c: the proxy request, read with http-parser ---- */

enum egress_request_kind { EGRESS_CONNECT, EGRESS_PLAIN_HTTP };

struct egress_request {
	enum egress_request_kind kind;
	char host[EGRESS_MAX_HOST + 1]; /* lower case; an IP literal without brackets */
	uint16_t port;
	/* plain HTTP: the request as it goes upstream (origin-form target, hop-by-hop headers
	 * dropped, "Connection: close"), malloc'd */
	char *upstream_head;
	size_t upstream_head_len;
};

/* Parses a complete request head (up to and including the empty line). Returns 0, or a status
 * code for the refusal (400, 405, 431) with why saying what is wrong. */
int egress_request_parse(const char *head, size_t len, struct egress_request *req, char *why,
			 size_t why_len);
void egress_request_free(struct egress_request *req);
/* The length of the head at the start of buf (through "\r\n\r\n"), or 0 when it is not complete
 * yet. */
size_t egress_request_head_length(const uint8_t *buf, size_t len);
/* An HTTP error page from airlock: status, the reason phrase, and a body that says airlock's
 * policy refused host and why. malloc'd into *out. Returns 0 or -ENOMEM. */
int egress_error_page(int status, const char *host, uint16_t port, const char *why, char **out,
		      size_t *out_len);

/* ---- egress.c: one VM's connections ---- */

/* An attempt, as the result lists it. */
struct egress_attempt {
	char host[EGRESS_MAX_HOST + 1];
	uint16_t port;
	bool allowed;
	char reason[160]; /* why it was refused or failed; empty when it went through */
	uint64_t bytes_sent, bytes_received; /* upstream, as the guest's program sees them */
};

/* How egress sends a frame to the guest (the sandbox's channel). Returns 0 or -errno. */
typedef int (*egress_send_fn)(void *ctx, uint32_t type, uint32_t stream, const void *payload,
			      size_t len);

struct egress;

/* Starts serving one VM's egress streams. Returns 0 or -ENOMEM. */
int egress_new(uv_loop_t *loop, const struct egress_policy *policy, bool installing,
	       egress_send_fn send, void *send_ctx, struct egress **out);
/* The guest's frames on egress streams: OPEN, DATA, CREDIT, CLOSE. The frame decoder checked
 * the header (type, length) and DATA's credit. Returns 0, or -EPROTO with *why set when the
 * guest broke the protocol (its VM is ended). */
int egress_guest_frame(struct egress *e, uint32_t type, uint32_t stream, const uint8_t *payload,
		       size_t len, const char **why);
/* The install step ended: hosts allowed only for it are closed and refused from now on. */
void egress_install_done(struct egress *e);
/* The attempts so far (and how many more there were than are listed). */
const struct egress_attempt *egress_attempts(const struct egress *e, size_t *n, size_t *unlisted);
/* Closes every connection; closed(ctx) runs once all handles are closed and e is freed. */
void egress_close(struct egress *e, void (*closed)(void *ctx), void *ctx);

#endif
