/* The proxy request from the guest's program, read with Debian's http-parser, and judged by the
 * strictest reading: one Host header at most, and it must name the request's target; an
 * absolute URI for plain HTTP (no user info), host:port for CONNECT. Plain HTTP goes upstream
 * rewritten: origin-form target, hop-by-hop headers dropped, "Connection: close" (one request
 * per connection, so that a client cannot send its next request, meant for another host, down
 * this one).
 */
#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "egress.h"
#include "proto.h"

#define MAX_HEADERS 100

struct header {
	const char *name, *value;
	size_t name_len, value_len;
};

struct parse_state {
	const char *url;
	size_t url_len;
	struct header headers[MAX_HEADERS];
	size_t n_headers;
	bool too_many;
	bool in_value;
	bool complete;
};

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct parse_state *st = p->data;
	if (st->url && st->url + st->url_len == at)
		st->url_len += len;
	else if (!st->url) {
		st->url = at;
		st->url_len = len;
	}
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct parse_state *st = p->data;
	if (!st->in_value && st->n_headers > 0) { /* the same name, continued */
		st->headers[st->n_headers - 1].name_len += len;
		return 0;
	}
	if (st->n_headers == MAX_HEADERS) {
		st->too_many = true;
		return 1;
	}
	st->headers[st->n_headers++] = (struct header){.name = at, .name_len = len};
	st->in_value = false;
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct parse_state *st = p->data;
	if (st->n_headers == 0)
		return 1;
	struct header *h = &st->headers[st->n_headers - 1];
	if (st->in_value)
		h->value_len = (size_t)(at + len - h->value); /* continued */
	else {
		h->value = at;
		h->value_len = len;
	}
	st->in_value = true;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	((struct parse_state *)p->data)->complete = true;
	return 0;
}

static bool header_is(const struct header *h, const char *name)
{
	return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

/* Hop-by-hop: they concern the connection to the proxy, never the upstream's. */
static bool hop_by_hop(const struct header *h)
{
	static const char *const names[] = {"connection", "proxy-connection", "keep-alive",
					    "proxy-authorization", "proxy-authenticate", "te",
					    "trailer", "upgrade"};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (header_is(h, names[i]))
			return true;
	return false;
}

static int refuse(char *why, size_t why_len, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
	return status;
}

/* A host as it may be requested: a DNS name of [a-z0-9._-] or an IP literal; copied in lower
 * case (brackets of an IPv6 literal dropped). */
static bool copy_host(const char *text, size_t len, char *out, size_t out_len)
{
	if (len >= 2 && text[0] == '[' && text[len - 1] == ']') {
		text++;
		len -= 2;
	}
	if (len == 0 || len >= out_len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = (char)tolower((unsigned char)text[i]);
		if (!isalnum((unsigned char)c) && c != '.' && c != '-' && c != '_' && c != ':')
			return false;
		out[i] = c;
	}
	out[len] = '\0';
	return out[0] != '.' && out[len - 1] != '.' && !strstr(out, "..");
}

/* Host header "name[:port]" against the target: the same host, and the same port when it has
 * one (the default port of the scheme otherwise). */
static bool host_header_matches(const struct header *h, const char *host, uint16_t port,
				uint16_t default_port)
{
	char value[EGRESS_MAX_HOST + 16];
	if (h->value_len == 0 || h->value_len >= sizeof value)
		return false;
	memcpy(value, h->value, h->value_len);
	value[h->value_len] = '\0';
	char *port_text = NULL;
	if (value[0] == '[') { /* [v6] or [v6]:port */
		char *close = strchr(value, ']');
		if (!close || (close[1] && close[1] != ':'))
			return false;
		port_text = close[1] ? close + 2 : NULL;
		close[1] = '\0';
	} else {
		char *colon = strchr(value, ':');
		if (colon && !strchr(colon + 1, ':')) { /* name:port (a bare v6 has several) */
			*colon = '\0';
			port_text = colon + 1;
		}
	}
	char name[EGRESS_MAX_HOST + 1];
	if (!copy_host(value, strlen(value), name, sizeof name) || strcmp(name, host) != 0)
		return false;
	if (!port_text)
		return default_port == 0 || port == default_port;
	char *end;
	long v = strtol(port_text, &end, 10);
	return *port_text && !*end && v == port;
}

static int append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 1024;
		while (c < *len + n + 1)
			c *= 2;
		char *p = realloc(*buf, c);
		if (!p)
			return -ENOMEM;
		*buf = p;
		*cap = c;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static int build_upstream_head(http_parser *p, const struct parse_state *st,
			       const struct http_parser_url *u, struct egress_request *req,
			       bool has_host)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	const char *method = http_method_str((enum http_method)p->method);
	int rc = append(&buf, &len, &cap, method, strlen(method));
	rc = rc ? rc : append(&buf, &len, &cap, " ", 1);
	if (rc == 0 && (u->field_set & (1 << UF_PATH)))
		rc = append(&buf, &len, &cap, st->url + u->field_data[UF_PATH].off,
			    u->field_data[UF_PATH].len);
	else if (rc == 0)
		rc = append(&buf, &len, &cap, "/", 1);
	if (rc == 0 && (u->field_set & (1 << UF_QUERY))) {
		rc = append(&buf, &len, &cap, "?", 1);
		rc = rc ? rc : append(&buf, &len, &cap, st->url + u->field_data[UF_QUERY].off,
				      u->field_data[UF_QUERY].len);
	}
	char line[EGRESS_MAX_HOST + 32];
	snprintf(line, sizeof line, " HTTP/%u.%u\r\n", p->http_major, p->http_minor);
	rc = rc ? rc : append(&buf, &len, &cap, line, strlen(line));
	for (size_t i = 0; rc == 0 && i < st->n_headers; i++) {
		const struct header *h = &st->headers[i];
		if (hop_by_hop(h))
			continue;
		rc = append(&buf, &len, &cap, h->name, h->name_len);
		rc = rc ? rc : append(&buf, &len, &cap, ": ", 2);
		rc = rc ? rc : append(&buf, &len, &cap, h->value, h->value_len);
		rc = rc ? rc : append(&buf, &len, &cap, "\r\n", 2);
	}
	if (rc == 0 && !has_host) {
		bool v6 = strchr(req->host, ':') != NULL;
		snprintf(line, sizeof line, "Host: %s%s%s", v6 ? "[" : "", req->host, v6 ? "]" : "");
		rc = append(&buf, &len, &cap, line, strlen(line));
		if (rc == 0 && req->port != 80) {
			snprintf(line, sizeof line, ":%u", req->port);
			rc = append(&buf, &len, &cap, line, strlen(line));
		}
		rc = rc ? rc : append(&buf, &len, &cap, "\r\n", 2);
	}
	rc = rc ? rc : append(&buf, &len, &cap, "Connection: close\r\n\r\n", 21);
	if (rc) {
		free(buf);
		return rc;
	}
	req->upstream_head = buf;
	req->upstream_head_len = len;
	return 0;
}

int egress_request_parse(const char *head, size_t len, struct egress_request *req, char *why,
			 size_t why_len)
{
	*req = (struct egress_request){0};
	struct parse_state st = {0};
	http_parser parser;
	http_parser_init(&parser, HTTP_REQUEST);
	parser.data = &st;
	http_parser_settings settings;
	http_parser_settings_init(&settings);
	settings.on_url = on_url;
	settings.on_header_field = on_header_field;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
	http_parser_execute(&parser, &settings, head, len);
	if (st.too_many)
		return refuse(why, why_len, 431, "more than %d headers", MAX_HEADERS);
	if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || !st.complete || !st.url)
		return refuse(why, why_len, 400, "malformed proxy request (%s)",
			      http_errno_description(HTTP_PARSER_ERRNO(&parser)));
	const struct header *host_header = NULL;
	for (size_t i = 0; i < st.n_headers; i++) {
		if (!header_is(&st.headers[i], "host"))
			continue;
		if (host_header)
			return refuse(why, why_len, 400, "two Host headers");
		host_header = &st.headers[i];
	}
	bool connect = parser.method == HTTP_CONNECT;
	struct http_parser_url u;
	http_parser_url_init(&u);
	if (http_parser_parse_url(st.url, st.url_len, connect, &u) != 0 ||
	    !(u.field_set & (1 << UF_HOST)))
		return refuse(why, why_len, 400,
			      connect ? "CONNECT needs HOST:PORT"
				      : "this is a proxy: send an absolute URI (http://host/path) "
					"or CONNECT host:port");
	if (!copy_host(st.url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len, req->host,
		       sizeof req->host))
		return refuse(why, why_len, 400, "malformed host name");
	if (u.field_set & (1 << UF_USERINFO))
		return refuse(why, why_len, 400, "user information in the URL");
	if (connect) {
		req->kind = EGRESS_CONNECT;
		req->port = u.port;
	} else {
		size_t schema_len = u.field_data[UF_SCHEMA].len;
		if (!(u.field_set & (1 << UF_SCHEMA)) || schema_len != 4 ||
		    strncasecmp(st.url + u.field_data[UF_SCHEMA].off, "http", 4) != 0)
			return refuse(why, why_len, 400,
				      "only http:// URLs go as plain requests; https goes by CONNECT");
		req->kind = EGRESS_PLAIN_HTTP;
		req->port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
	}
	if (req->port == 0)
		return refuse(why, why_len, 400, "port 0");
	/* CONNECT's Host may name the proxy itself: undici (Node's fetch) sends that */
	bool names_proxy = connect && host_header &&
			   (host_header_matches(host_header, "127.0.0.1", AL_EGRESS_PROXY_PORT, 0) ||
			    host_header_matches(host_header, "localhost", AL_EGRESS_PROXY_PORT, 0));
	if (host_header && !names_proxy &&
	    !host_header_matches(host_header, req->host, req->port, connect ? 0 : 80))
		return refuse(why, why_len, 400, "the Host header names another host than the "
			      "request's target %s", req->host);
	if (!connect && build_upstream_head(&parser, &st, &u, req, host_header != NULL) != 0)
		return refuse(why, why_len, 500, "out of memory");
	return 0;
}

void egress_request_free(struct egress_request *req)
{
	free(req->upstream_head);
	req->upstream_head = NULL;
}

size_t egress_request_head_length(const uint8_t *buf, size_t len)
{
	for (size_t i = 3; i < len; i++)
		if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
			return i + 1;
	return 0;
}

static const char *status_text(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 504: return "Gateway Timeout";
	default: return "Error";
	}
}

int egress_error_page(int status, const char *host, uint16_t port, const char *why, char **out,
		      size_t *out_len)
{
	char body[512];
	int body_len;
	if (status == 403)
		body_len = snprintf(body, sizeof body,
				    "airlock's policy refused host %s port %u: %s\n", host, port, why);
	else if (host && host[0] && status >= 500)
		body_len = snprintf(body, sizeof body, "airlock's proxy could not reach %s port %u: %s\n",
				    host, port, why);
	else
		body_len = snprintf(body, sizeof body, "airlock's proxy refused the request: %s\n", why);
	if (body_len < 0)
		return -EINVAL;
	if ((size_t)body_len >= sizeof body)
		body_len = sizeof body - 1;
	size_t cap = (size_t)body_len + 256;
	char *page = malloc(cap);
	if (!page)
		return -ENOMEM;
	int n = snprintf(page, cap,
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			 "Content-Length: %d\r\nConnection: close\r\nX-Airlock-Refused: %d\r\n\r\n%.*s",
			 status, status_text(status), body_len, status, body_len, body);
	*out = page;
	*out_len = (size_t)n;
	return 0;
}
