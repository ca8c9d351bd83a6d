/* The operator's allowlist and the address classes no name may lead to (egress.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress.h"

bool egress_ip_literal(const char *text, char *out, size_t out_len, bool *odd)
{
	struct in_addr v4;
	struct in6_addr v6;
	*odd = false;
	if (inet_pton(AF_INET, text, &v4) == 1)
		return inet_ntop(AF_INET, &v4, out, (socklen_t)out_len) != NULL;
	if (inet_pton(AF_INET6, text, &v6) == 1)
		return inet_ntop(AF_INET6, &v6, out, (socklen_t)out_len) != NULL;
	/* what inet_aton (and so getaddrinfo) would take as an address: numbers and dots only,
	 * or hex parts */
	if (inet_aton(text, &v4) != 0)
		*odd = true;
	return false;
}

/* A DNS name as the allowlist takes it: letters, digits, '-', '.', '_'; no empty label. */
static bool name_ok(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > EGRESS_MAX_HOST || s[0] == '.' || s[len - 1] == '.' ||
	    strstr(s, ".."))
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_')
			return false;
	return true;
}

static int parse_port(const char *text, uint16_t *port)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || *end || end == text || v < 1 || v > 65535 || text[0] == '+' || text[0] == '-')
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int egress_rule_parse(const char *pattern, struct egress_rule *rule, char *err, size_t err_len)
{
	char host[EGRESS_MAX_HOST + 2];
	*rule = (struct egress_rule){0};
	const char *port_text = NULL;
	if (pattern[0] == '[') { /* [v6] or [v6]:port */
		const char *close = strchr(pattern, ']');
		if (!close || (size_t)(close - pattern - 1) >= sizeof host ||
		    (close[1] && close[1] != ':')) {
			snprintf(err, err_len, "--allow-host %s: an IPv6 address is written [ADDR] or "
				 "[ADDR]:PORT", pattern);
			return -EINVAL;
		}
		memcpy(host, pattern + 1, (size_t)(close - pattern - 1));
		host[close - pattern - 1] = '\0';
		port_text = close[1] ? close + 2 : NULL;
	} else {
		const char *colon = strchr(pattern, ':');
		if (colon && strchr(colon + 1, ':')) {
			snprintf(err, err_len, "--allow-host %s: write an IPv6 address as [ADDR]",
				 pattern);
			return -EINVAL;
		}
		size_t len = colon ? (size_t)(colon - pattern) : strlen(pattern);
		if (len >= sizeof host) {
			snprintf(err, err_len, "--allow-host: the host name is too long");
			return -EINVAL;
		}
		memcpy(host, pattern, len);
		host[len] = '\0';
		port_text = colon ? colon + 1 : NULL;
	}
	if (port_text && parse_port(port_text, &rule->port) != 0) {
		snprintf(err, err_len, "--allow-host %s: the port must be 1 to 65535", pattern);
		return -EINVAL;
	}
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	bool odd = false;
	if (egress_ip_literal(host, rule->host, sizeof rule->host, &odd)) {
		rule->ip_literal = true;
		return 0;
	}
	if (odd || pattern[0] == '[') {
		snprintf(err, err_len, "--allow-host %s: not an IP address in the usual form", pattern);
		return -EINVAL;
	}
	const char *name = host;
	if (strncmp(host, "*.", 2) == 0) {
		rule->wildcard = true;
		name = host + 2;
	}
	if (!name_ok(name) || strchr(name, '*')) {
		snprintf(err, err_len, "--allow-host %s: expected HOST, HOST:PORT, *.DOMAIN or an IP "
			 "address ([ADDR] for IPv6)", pattern);
		return -EINVAL;
	}
	snprintf(rule->host, sizeof rule->host, "%s", name);
	return 0;
}

int egress_policy_add(struct egress_rule **list, size_t *n, const char *pattern, char *err,
		      size_t err_len)
{
	struct egress_rule rule;
	int rc = egress_rule_parse(pattern, &rule, err, err_len);
	if (rc)
		return rc;
	struct egress_rule *grown = realloc(*list, (*n + 1) * sizeof *grown);
	if (!grown) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	grown[(*n)++] = rule;
	*list = grown;
	return 0;
}

void egress_policy_free(struct egress_policy *p)
{
	free(p->allow);
	free(p->install);
	*p = (struct egress_policy){0};
}

static bool rule_matches(const struct egress_rule *r, const char *host, uint16_t port)
{
	if (r->port ? port != r->port : port != 443 && port != 80)
		return false;
	if (!r->wildcard)
		return strcmp(host, r->host) == 0;
	size_t hl = strlen(host), rl = strlen(r->host);
	return hl > rl + 1 && host[hl - rl - 1] == '.' && strcmp(host + hl - rl, r->host) == 0;
}

bool egress_rules_match(const struct egress_rule *rules, size_t n, const char *host,
			uint16_t port, bool *literal)
{
	for (size_t i = 0; i < n; i++) {
		if (rule_matches(&rules[i], host, port)) {
			*literal = rules[i].ip_literal;
			return true;
		}
	}
	return false;
}

void egress_rules_describe(const struct egress_rule *rules, size_t n, char *out, size_t out_len)
{
	size_t used = 0;
	if (out_len)
		out[0] = '\0';
	for (size_t i = 0; i < n && used < out_len; i++) {
		const struct egress_rule *r = &rules[i];
		bool v6 = r->ip_literal && strchr(r->host, ':');
		char port[16] = "";
		if (r->port)
			snprintf(port, sizeof port, ":%u", r->port);
		int w = snprintf(out + used, out_len - used, "%s%s%s%s%s%s", i ? ", " : "",
				 r->wildcard ? "*." : "", v6 && r->port ? "[" : "", r->host,
				 v6 && r->port ? "]" : "", port);
		used += w > 0 ? (size_t)w : 0;
	}
}

static const char *ipv4_refusal(uint32_t a) /* host byte order */
{
	uint8_t b0 = (uint8_t)(a >> 24), b1 = (uint8_t)(a >> 16);
	if (a == 0xA9FEA9FEu /* 169.254.169.254 */ || a == 0x646464C8u /* 100.100.100.200 */)
		return "cloud metadata";
	if (b0 == 0)
		return "unspecified (0.0.0.0/8)";
	if (b0 == 127)
		return "loopback";
	if (b0 == 10 || (b0 == 172 && (b1 & 0xF0) == 16) || (b0 == 192 && b1 == 168))
		return "private (RFC 1918)";
	if (b0 == 169 && b1 == 254)
		return "link-local";
	if (b0 == 100 && (b1 & 0xC0) == 64)
		return "shared address space (CGNAT, 100.64.0.0/10)";
	if (b0 == 192 && b1 == 0 && (uint8_t)(a >> 8) == 0)
		return "IETF protocol assignments (192.0.0.0/24)";
	if (b0 == 198 && (b1 & 0xFE) == 18)
		return "benchmarking (198.18.0.0/15)";
	if ((b0 & 0xF0) == 224)
		return "multicast";
	if ((b0 & 0xF0) == 240)
		return "reserved (240.0.0.0/4, broadcast)";
	return NULL;
}

const char *egress_address_refusal(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
		return ipv4_refusal(ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr));
	if (addr->sa_family != AF_INET6)
		return "not an internet address";
	const uint8_t *b = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
	static const uint8_t zeros[16];
	uint32_t tail;
	memcpy(&tail, b + 12, 4);
	tail = ntohl(tail);
	if (memcmp(b, zeros, 15) == 0 && b[15] == 0)
		return "unspecified";
	if (memcmp(b, zeros, 15) == 0 && b[15] == 1)
		return "loopback";
	/* ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64) */
	if ((memcmp(b, zeros, 10) == 0 && b[10] == 0xff && b[11] == 0xff) ||
	    memcmp(b, zeros, 12) == 0 ||
	    (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && memcmp(b + 4, zeros, 8) == 0)) {
		const char *why = ipv4_refusal(tail);
		return why ? why : NULL;
	}
	if (b[0] == 0x20 && b[1] == 0x02) { /* 6to4: 2002:a.b.c.d::/48 */
		uint32_t v4 = (uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 8 | b[5];
		const char *why = ipv4_refusal(v4);
		if (why)
			return why;
	}
	if (b[0] == 0xfd && b[1] == 0x00 && b[2] == 0x0e && b[3] == 0xc2 && tail == 0x254)
		return "cloud metadata";
	if (b[0] == 0xfe && (b[1] & 0xC0) == 0x80)
		return "link-local";
	if ((b[0] & 0xFE) == 0xfc)
		return "unique local (private)";
	if (b[0] == 0xff)
		return "multicast";
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
		return "documentation (2001:db8::/32)";
	if (b[0] == 0x01 && b[1] == 0x00 && memcmp(b + 2, zeros, 6) == 0)
		return "discard (100::/64)";
	return NULL;
}
