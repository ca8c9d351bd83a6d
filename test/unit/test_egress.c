/* The host's egress rules without a VM (mcp/egress): allowlist patterns, the address classes no
 * name may lead to (IPv4 and IPv6, mapped forms included), and the proxy request as http-parser
 * reads it. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "egress.h"

static const char *refusal_of(const char *text)
{
	struct sockaddr_storage ss = {0};
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		return "(not an address)";
	return egress_address_refusal((struct sockaddr *)&ss);
}

static void refused_ipv4_classes(void)
{
	const char *refused[] = {"127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1",
				 "172.31.255.255", "192.168.1.1", "169.254.169.254", "169.254.1.1",
				 "100.64.0.1", "100.127.255.254", "100.100.100.200", "0.0.0.0",
				 "0.1.2.3", "224.0.0.1", "239.255.255.250", "240.0.0.1",
				 "255.255.255.255", "192.0.0.192", "198.18.0.1"};
	for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
		const char *why = refusal_of(refused[i]);
		if (!why)
			fprintf(stderr, "not refused: %s\n", refused[i]);
		CHECK(why != NULL);
	}
	CHECK(strcmp(refusal_of("169.254.169.254"), "cloud metadata") == 0);
	CHECK(strcmp(refusal_of("127.0.0.1"), "loopback") == 0);
}

static void ordinary_addresses_pass(void)
{
	const char *ok[] = {"93.184.216.34", "8.8.8.8", "172.32.0.1", "172.15.255.255",
			    "100.128.0.1", "192.169.0.1", "2606:4700::1111", "2a00:1450::1"};
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		const char *why = refusal_of(ok[i]);
		if (why)
			fprintf(stderr, "refused: %s (%s)\n", ok[i], why);
		CHECK(why == NULL);
	}
}

static void refused_ipv6_classes_and_mapped_forms(void)
{
	const char *refused[] = {"::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
				 "fd00:ec2::254", "2001:db8::1", "::ffff:127.0.0.1",
				 "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
				 "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:c0a8:101::1", "100::1"};
	for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
		const char *why = refusal_of(refused[i]);
		if (!why)
			fprintf(stderr, "not refused: %s\n", refused[i]);
		CHECK(why != NULL);
	}
	CHECK(strcmp(refusal_of("::ffff:169.254.169.254"), "cloud metadata") == 0);
	CHECK(refusal_of("::ffff:93.184.216.34") == NULL); /* a public IPv4 address, mapped */
}

static void odd_ip_forms_are_flagged(void)
{
	char out[64];
	bool odd;
	CHECK(egress_ip_literal("127.0.0.1", out, sizeof out, &odd) && !odd);
	CHECK(egress_ip_literal("::FFFF:7f00:1", out, sizeof out, &odd) &&
	      strcmp(out, "::ffff:127.0.0.1") == 0);
	const char *forms[] = {"127.1", "0x7f.0.0.1", "2130706433", "017700000001", "0x7f000001"};
	for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
		CHECK(!egress_ip_literal(forms[i], out, sizeof out, &odd));
		CHECK(odd);
	}
	CHECK(!egress_ip_literal("example.com", out, sizeof out, &odd) && !odd);
}

static bool matches(const char *pattern, const char *host, uint16_t port)
{
	struct egress_rule rule;
	char err[256];
	bool literal;
	if (egress_rule_parse(pattern, &rule, err, sizeof err) != 0)
		return false;
	return egress_rules_match(&rule, 1, host, port, &literal);
}

static void patterns_match_names_and_ports(void)
{
	CHECK(matches("api.example.com", "api.example.com", 443));
	CHECK(matches("api.example.com", "api.example.com", 80));
	CHECK(!matches("api.example.com", "api.example.com", 8080));
	CHECK(matches("API.Example.com:8443", "api.example.com", 8443));
	CHECK(!matches("api.example.com:8443", "api.example.com", 443));
	CHECK(matches("*.example.com", "a.b.example.com", 443));
	CHECK(!matches("*.example.com", "example.com", 443));
	CHECK(!matches("*.example.com", "badexample.com", 443));
	CHECK(!matches("example.com", "example.com.evil.org", 443));
	CHECK(matches("[::1]:8080", "::1", 8080));
	CHECK(matches("10.0.0.5", "10.0.0.5", 80));
}

static void malformed_patterns_are_refused(void)
{
	const char *bad[] = {"", "host:", "host:0", "host:65536", "host:-1", "a b", "*", "*.",
			     "a..b", ".a", "a.", "*.*.com", "foo*.com", "1.2.3", "[::1", "[x]:1",
			     "a:b:c", "host:+80", "0x7f.1"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct egress_rule rule;
		char err[256] = "";
		int rc = egress_rule_parse(bad[i], &rule, err, sizeof err);
		if (rc == 0)
			fprintf(stderr, "accepted: '%s'\n", bad[i]);
		CHECK(rc != 0 && strstr(err, "--allow-host") != NULL);
	}
}

static int parse(const char *head, struct egress_request *req, char *why)
{
	return egress_request_parse(head, strlen(head), req, why, 200);
}

static void connect_and_absolute_requests_are_read(void)
{
	struct egress_request req;
	char why[200];
	CHECK(parse("CONNECT Example.COM:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", &req,
		    why) == 0);
	CHECK(req.kind == EGRESS_CONNECT && strcmp(req.host, "example.com") == 0 &&
	      req.port == 443);
	egress_request_free(&req);
	/* undici names the proxy in CONNECT's Host */
	CHECK(parse("CONNECT a.test:443 HTTP/1.1\r\nhost: 127.0.0.1:3128\r\n\r\n", &req, why) == 0);
	egress_request_free(&req);
	CHECK(parse("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n", &req, why) == 0);
	CHECK(strcmp(req.host, "::1") == 0 && req.port == 8443);
	egress_request_free(&req);
	CHECK(parse("POST http://h.test:8080/a/b?c=d HTTP/1.1\r\nHost: h.test:8080\r\n"
		    "Proxy-Connection: keep-alive\r\nConnection: keep-alive\r\nX-Y: z\r\n"
		    "Content-Length: 3\r\n\r\n",
		    &req, why) == 0);
	CHECK(req.kind == EGRESS_PLAIN_HTTP && req.port == 8080);
	CHECK(strncmp(req.upstream_head, "POST /a/b?c=d HTTP/1.1\r\n", 24) == 0);
	CHECK(strstr(req.upstream_head, "X-Y: z\r\n") && strstr(req.upstream_head, "Host: h.test:8080"));
	CHECK(!strstr(req.upstream_head, "keep-alive"));
	CHECK(strstr(req.upstream_head, "Connection: close\r\n\r\n") != NULL);
	egress_request_free(&req);
	CHECK(parse("GET http://h.test HTTP/1.0\r\n\r\n", &req, why) == 0); /* no Host: added */
	CHECK(strstr(req.upstream_head, "GET / HTTP/1.0\r\nHost: h.test\r\n") != NULL);
	egress_request_free(&req);
}

static void odd_requests_are_refused(void)
{
	struct egress_request req;
	char why[200];
	const char *bad[] = {
	    "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
	    "GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
	    "GET http://a.test:81/ HTTP/1.1\r\nHost: a.test\r\n\r\n", /* Host says port 80 */
	    "CONNECT a.test:443 HTTP/1.1\r\nHost: b.test:443\r\n\r\n",
	    "CONNECT a.test:443 HTTP/1.1\r\nHost: 127.0.0.1:3129\r\n\r\n",
	    "GET http://a.test/ HTTP/1.1\r\nHost: 127.0.0.1:3128\r\n\r\n", /* only CONNECT */
	    "GET /path HTTP/1.1\r\nHost: a.test\r\n\r\n",
	    "GET https://a.test/ HTTP/1.1\r\n\r\n",
	    "GET ftp://a.test/ HTTP/1.1\r\n\r\n",
	    "GET http://user:pw@a.test/ HTTP/1.1\r\n\r\n",
	    "CONNECT a.test HTTP/1.1\r\n\r\n",
	    "CONNECT a.test:0 HTTP/1.1\r\n\r\n",
	    "GET http://a%2etest/ HTTP/1.1\r\n\r\n",
	    "GET http://a..test/ HTTP/1.1\r\n\r\n",
	    "NONSENSE\r\n\r\n",
	    "GET http://a.test/ HTTP/1.1\r\nBad Header\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		int status = parse(bad[i], &req, why);
		if (status == 0)
			fprintf(stderr, "accepted: %s\n", bad[i]);
		CHECK(status >= 400);
		egress_request_free(&req);
	}
}

static void error_pages_say_who_refused_and_why(void)
{
	char *page;
	size_t len;
	CHECK(egress_error_page(403, "x.test", 443, "not in the allowlist", &page, &len) == 0);
	CHECK(strncmp(page, "HTTP/1.1 403 Forbidden\r\n", 24) == 0);
	CHECK(strstr(page, "\r\n\r\nairlock's policy refused host x.test port 443: not in the "
			   "allowlist\n") != NULL);
	const char *cl = strstr(page, "Content-Length: ");
	CHECK(cl && (size_t)atoi(cl + 16) == strlen(strstr(page, "\r\n\r\n") + 4));
	free(page);
}

int main(void)
{
	TEST(refused_ipv4_classes);
	TEST(ordinary_addresses_pass);
	TEST(refused_ipv6_classes_and_mapped_forms);
	TEST(odd_ip_forms_are_flagged);
	TEST(patterns_match_names_and_ports);
	TEST(malformed_patterns_are_refused);
	TEST(connect_and_absolute_requests_are_read);
	TEST(odd_requests_are_refused);
	TEST(error_pages_say_who_refused_and_why);
	return TEST_EXIT_STATUS();
}
