/* MCP's methods in both eras (see protocol.h). A request whose _meta names a protocol version
 * speaks stateless 2026-07-28: everything it needs is in that request (version, capabilities,
 * log level), its results carry resultType, and server/discover describes the server. Any other
 * request speaks the initialize era (2025-11-25 back to 2024-11-05) of its exchange's session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "protocol.h"

#define META_VERSION "io.modelcontextprotocol/protocolVersion"
#define META_CAPABILITIES "io.modelcontextprotocol/clientCapabilities"
#define META_CLIENT_INFO "io.modelcontextprotocol/clientInfo"
#define META_LOG_LEVEL "io.modelcontextprotocol/logLevel"
#define META_SERVER_INFO "io.modelcontextprotocol/serverInfo"
/* how long a client may cache tools/list and server/discover: the tools never change while a
 * server runs, and a restarted one may have other limits */
#define CACHE_TTL_MS 300000

static const char *const legacy_versions[] = {
	MCP_PROTOCOL_LATEST, "2025-06-18", "2025-03-26", "2024-11-05", NULL,
};

bool mcp_initialize_era_version(const char *version)
{
	for (size_t i = 0; legacy_versions[i]; i++)
		if (strcmp(version, legacy_versions[i]) == 0)
			return true;
	return false;
}

/* What one request is, once read: its era and what its _meta says. */
struct request {
	struct exchange *x;
	json_t *id, *params, *meta;
	const char *method;
	bool stateless;     /* 2026-07-28 */
	const char *version;
	int log_level;      /* -1: no log lines for it */
	bool tasks;         /* declared the tasks extension */
	const char *client_name;
};

/* ---- answers ---- */

static int send_final(struct exchange *x, json_t *msg)
{
	int rc = msg ? x->ops->send(x, msg, true) : UV_ENOMEM;
	json_decref(msg);
	return rc;
}

void reply_error(struct exchange *x, json_t *id, int code, const char *message, json_t *data)
{
	json_t *msg = rpc_error_message(id, code, message);
	if (msg && data)
		json_object_set_new(json_object_get(msg, "error"), "data", data);
	else
		json_decref(data);
	if (send_final(x, msg) == UV_ENOMEM)
		fprintf(stderr, "airlock: out of memory: a request got no answer\n");
}

void reply_result(struct exchange *x, const char *version, json_t *id, json_t *result)
{
	if (result && version && strcmp(version, MCP_PROTOCOL_STATELESS) == 0) {
		if (!json_object_get(result, "resultType"))
			json_object_set_new(result, "resultType", json_string("complete"));
		json_t *meta = json_object_get(result, "_meta");
		if (!meta) {
			meta = json_object();
			json_object_set_new(result, "_meta", meta);
		}
		json_object_set_new(meta, META_SERVER_INFO,
				    json_pack("{s:s, s:s}", "name", "airlock", "version",
					      AIRLOCK_VERSION));
	}
	json_t *msg = result ? json_pack("{s:s, s:O?, s:o}", "jsonrpc", "2.0", "id", id, "result",
					 result)
			     : NULL;
	/* not built, or not encoded: the request still gets its answer */
	if (!msg || x->ops->send(x, msg, true) == UV_ENOMEM)
		reply_error(x, id, RPC_INTERNAL_ERROR,
			    "Internal error: the result could not be encoded", NULL);
	json_decref(msg);
}

static void reply(struct request *r, json_t *result)
{
	reply_result(r->x, r->version, r->id, result);
}

static void fail(struct request *r, int code, const char *message)
{
	reply_error(r->x, r->id, code, message, NULL);
}

/* ---- the request's era ---- */

static json_t *supported_versions(void)
{
	json_t *list = json_pack("[s]", MCP_PROTOCOL_STATELESS);
	for (size_t i = 0; list && legacy_versions[i]; i++)
		json_array_append_new(list, json_string(legacy_versions[i]));
	return list;
}

/* Reads a 2026-07-28 request's _meta. Returns 0, or answers the request with the spec's error
 * and returns -1. */
static int read_stateless_meta(struct request *r)
{
	r->x->bad_envelope = true; /* until it is read whole */
	json_t *version = json_object_get(r->meta, META_VERSION);
	json_t *caps = json_object_get(r->meta, META_CAPABILITIES);
	if (!json_is_string(version)) {
		fail(r, RPC_INVALID_PARAMS, "Invalid params: _meta." META_VERSION
					    " must be a string");
		return -1;
	}
	if (strcmp(json_string_value(version), MCP_PROTOCOL_STATELESS) != 0) {
		char requested[RPC_EXCERPT_SIZE(40)];
		rpc_excerpt(requested, sizeof requested, json_string_value(version));
		reply_error(r->x, r->id, RPC_UNSUPPORTED_VERSION, "Unsupported protocol version",
			    json_pack("{s:o, s:s}", "supported", supported_versions(), "requested",
				      requested));
		return -1;
	}
	if (!json_is_object(caps)) {
		fail(r, RPC_INVALID_PARAMS, "Invalid params: _meta." META_CAPABILITIES
					    " must be an object");
		return -1;
	}
	json_t *info = json_object_get(r->meta, META_CLIENT_INFO);
	if (info && !json_is_object(info)) {
		fail(r, RPC_INVALID_PARAMS, "Invalid params: _meta." META_CLIENT_INFO
					    " must be an object");
		return -1;
	}
	r->client_name = json_string_value(json_object_get(info, "name"));
	if (r->client_name && !r->x->one_shot) { /* stdio: the audit log's name for the client */
		char quoted[RPC_EXCERPT_SIZE(CLIENT_LABEL_MAX - 4)];
		snprintf(r->x->client_name, sizeof r->x->client_name, "%s",
			 rpc_excerpt(quoted, sizeof quoted, r->client_name));
	}
	json_t *level = json_object_get(r->meta, META_LOG_LEVEL);
	r->log_level = -1;
	if (level && (r->log_level = log_level_parse(json_string_value(level))) < 0) {
		fail(r, RPC_INVALID_PARAMS,
		     "Invalid params: _meta." META_LOG_LEVEL " must be one of debug, info, notice, "
		     "warning, error, critical, alert, emergency");
		return -1;
	}
	json_t *extensions = json_object_get(caps, "extensions");
	r->tasks = json_is_object(json_object_get(extensions, TASKS_EXTENSION));
	r->version = MCP_PROTOCOL_STATELESS;
	r->x->bad_envelope = false;
	return 0;
}

/* ---- 2026-07-28 ---- */

static json_t *capabilities(bool stateless)
{
	json_t *caps = json_pack("{s:{s:b}, s:{}}", "tools", "listChanged", 0, "logging");
	if (caps && stateless)
		json_object_set_new(caps, "extensions", json_pack("{s:{}}", TASKS_EXTENSION));
	return caps;
}

static void discover(struct server *srv, struct request *r)
{
	char instructions[4096];
	tools_instructions(server_config(srv), instructions, sizeof instructions);
	reply(r, json_pack("{s:o, s:o, s:s, s:i, s:s}", "supportedVersions", supported_versions(),
			   "capabilities", capabilities(true), "instructions", instructions, "ttlMs",
			   CACHE_TTL_MS, "cacheScope", "public"));
}

/* ---- the initialize era ---- */

static void initialize(struct server *srv, struct request *r)
{
	char instructions[4096];
	tools_instructions(server_config(srv), instructions, sizeof instructions);
	const char *asked = json_string_value(json_object_get(r->params, "protocolVersion"));
	const char *version = MCP_PROTOCOL_LATEST;
	for (size_t i = 0; asked && legacy_versions[i]; i++)
		if (strcmp(asked, legacy_versions[i]) == 0)
			version = legacy_versions[i];
	struct exchange *x = r->x;
	snprintf(x->session_version, sizeof x->session_version, "%s", version);
	const char *name = json_string_value(
		json_object_get(json_object_get(r->params, "clientInfo"), "name"));
	char quoted[RPC_EXCERPT_SIZE(CLIENT_LABEL_MAX - 4)];
	snprintf(x->client_name, sizeof x->client_name, "%s",
		 name ? rpc_excerpt(quoted, sizeof quoted, name) : "");
	x->initialized = true;
	reply(r, json_pack("{s:s, s:o, s:{s:s, s:s, s:s}, s:s}", "protocolVersion", version,
			   "capabilities", capabilities(false), "serverInfo", "name", "airlock",
			   "title", "airlock code sandbox", "version", AIRLOCK_VERSION,
			   "instructions", instructions));
}

static void set_log_level(struct request *r)
{
	int level = log_level_parse(json_string_value(json_object_get(r->params, "level")));
	if (level < 0) {
		fail(r, RPC_INVALID_PARAMS,
		     "Invalid params: level must be one of debug, info, notice, warning, error, "
		     "critical, alert, emergency");
		return;
	}
	r->x->session_level = level;
	reply(r, json_object());
}

/* ---- both eras ---- */

static void list_tools(struct server *srv, struct request *r)
{
	json_t *result = json_pack("{s:o}", "tools", tools_list(server_config(srv)));
	if (result && r->stateless) {
		json_object_set_new(result, "ttlMs", json_integer(CACHE_TTL_MS));
		json_object_set_new(result, "cacheScope", json_string("public"));
	}
	reply(r, result);
}

static void call_tool(struct server *srv, struct request *r)
{
	json_t *name = json_object_get(r->params, "name");
	json_t *arguments = json_object_get(r->params, "arguments");
	if (!json_is_string(name)) {
		fail(r, RPC_INVALID_PARAMS, "Invalid params: tools/call needs a string 'name'");
		return;
	}
	const struct tool *tool = tools_find(json_string_value(name));
	if (!tool) {
		char msg[300], quoted[RPC_EXCERPT_SIZE(200)];
		snprintf(msg, sizeof msg, "Unknown tool: %s",
			 rpc_excerpt(quoted, sizeof quoted, json_string_value(name)));
		fail(r, RPC_INVALID_PARAMS, msg);
		return;
	}
	if (arguments && !json_is_object(arguments)) {
		fail(r, RPC_INVALID_PARAMS, "Invalid params: 'arguments' must be an object");
		return;
	}
	struct call *call = call_new(srv, r->x->client, r->x, r->id);
	if (!call) {
		fail(r, RPC_INTERNAL_ERROR, "out of memory");
		return;
	}
	json_t *token = json_object_get(r->meta, "progressToken");
	if (json_is_string(token) || json_is_integer(token))
		call->progress_token = json_incref(token);
	/* 2026-07-28: log lines only when this request asks; the initialize era: the session's */
	call->log_level = r->stateless ? (r->log_level < 0 ? LOG_LEVEL_COUNT : r->log_level)
				       : r->x->session_level;
	/* what the tool knows for the audit line, only where there is one (the code's digest
	 * costs a pass over the code) */
	if (server_config(srv)->audit)
		call->audit = json_pack("{s:s}", "tool", tool->name);
	call->tasks_ok = r->tasks;
	snprintf(call->version, sizeof call->version, "%s", r->version);
	json_t *empty = json_object();
	tool->handler(call, arguments ? arguments : empty);
	json_decref(empty);
}

static void handle_request(struct server *srv, struct request *r)
{
	const char *m = r->method;
	if (strcmp(m, "tools/call") == 0) {
		call_tool(srv, r);
	} else if (strcmp(m, "tools/list") == 0) {
		list_tools(srv, r);
	} else if (r->stateless && strcmp(m, "server/discover") == 0) {
		discover(srv, r);
	} else if (r->stateless && task_method(srv, r->x, r->version, m, r->id, r->params,
					       r->tasks)) {
		/* answered */
	} else if (!r->stateless && strcmp(m, "initialize") == 0) {
		initialize(srv, r);
	} else if (!r->stateless && strcmp(m, "ping") == 0) {
		reply(r, json_object());
	} else if (!r->stateless && strcmp(m, "logging/setLevel") == 0) {
		set_log_level(r);
	} else if (!r->stateless && strcmp(m, "server/discover") == 0) {
		/* no _meta: not a 2026-07-28 request, and the initialize era has no discover */
		fail(r, RPC_INVALID_PARAMS, "Invalid params: server/discover needs _meta."
					    META_VERSION " and _meta." META_CAPABILITIES);
	} else {
		char msg[300], quoted[RPC_EXCERPT_SIZE(200)];
		snprintf(msg, sizeof msg, "Method not found: %s%s",
			 rpc_excerpt(quoted, sizeof quoted, m),
			 r->stateless && (!strcmp(m, "initialize") || !strcmp(m, "ping") ||
					  !strcmp(m, "logging/setLevel"))
				 ? " (not in protocol version " MCP_PROTOCOL_STATELESS ")"
				 : "");
		fail(r, RPC_METHOD_NOT_FOUND, msg);
	}
}

static void handle_notification(struct server *srv, struct exchange *x, const char *method,
				json_t *params)
{
	(void)srv;
	if (strcmp(method, "notifications/cancelled") != 0)
		return; /* initialized, roots/list_changed, ...: nothing to do */
	json_t *request_id = json_object_get(params, "requestId");
	struct call *c = request_id ? server_find_call(srv, x, request_id) : NULL;
	if (c) {
		server_log(srv, LOG_DEBUG, "cancelling a call at the client's request");
		call_cancel(c);
	}
}

void server_message(struct server *srv, struct exchange *x, json_t *msg)
{
	x->initialized = x->bad_envelope = false;
	if (!json_is_object(msg)) {
		reply_error(x, NULL, RPC_INVALID_REQUEST,
			    json_is_array(msg) ? "Invalid Request: batches are not supported"
					       : "Invalid Request: expected a JSON object",
			    NULL);
		return;
	}
	json_t *id = json_object_get(msg, "id");
	json_t *method = json_object_get(msg, "method");
	json_t *params = json_object_get(msg, "params");
	const char *jsonrpc = json_string_value(json_object_get(msg, "jsonrpc"));
	bool id_ok = !id || json_is_string(id) || json_is_integer(id);
	if (!id_ok || !jsonrpc || strcmp(jsonrpc, "2.0") != 0 ||
	    (method && !json_is_string(method))) {
		reply_error(x, id_ok ? id : NULL, RPC_INVALID_REQUEST,
			    "Invalid Request: not a JSON-RPC 2.0 request", NULL);
		return;
	}
	if (!method) {
		if (!id || (!json_object_get(msg, "result") && !json_object_get(msg, "error")))
			reply_error(x, id, RPC_INVALID_REQUEST, "Invalid Request: no method", NULL);
		else
			x->ops->send(x, NULL, true); /* a response: nothing to match; ends it */
		return;
	}
	if (params && !json_is_object(params)) {
		if (id)
			reply_error(x, id, RPC_INVALID_PARAMS,
				    "Invalid params: params must be an object", NULL);
		else
			x->ops->send(x, NULL, true);
		return;
	}
	if (!id) {
		handle_notification(srv, x, json_string_value(method), params);
		x->ops->send(x, NULL, true); /* accepted: nothing to say */
		return;
	}
	struct request r = {.x = x, .id = id, .params = params, .method = json_string_value(method),
			    .log_level = -1};
	r.meta = json_object_get(params, "_meta");
	if (r.meta && !json_is_object(r.meta)) {
		x->bad_envelope = true;
		fail(&r, RPC_INVALID_PARAMS, "Invalid params: _meta must be an object");
		return;
	}
	r.stateless = x->stateless || json_object_get(r.meta, META_VERSION) != NULL;
	if (r.stateless && read_stateless_meta(&r) != 0)
		return;
	if (!r.stateless)
		r.version = x->session_version[0] ? x->session_version : MCP_PROTOCOL_LATEST;
	handle_request(srv, &r);
}
