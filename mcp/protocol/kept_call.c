/* A call that keeps its state or continues one (keep_state, state_id), for execute_code and
 * `airlock run` alike: which language and VM it takes, where the VM saves, and what the result
 * says afterwards (state_id, state_expires_at, state_error).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "protocol.h"

int kept_call_begin(struct kept_call *kc, struct state_store *st, const char *state_id, bool keep,
		    const char *language, enum al_language *lang, char *err, size_t err_len)
{
	memset(kc, 0, sizeof *kc);
	kc->keep = keep;
	kc->from_state = state_id != NULL;
	if (state_id) {
		char theirs[16];
		int rc = state_language(st, state_id, theirs, sizeof theirs, err, err_len);
		if (rc)
			return rc;
		if (language && strcmp(language, theirs) != 0) {
			snprintf(err, err_len,
				 "language: the state %s is %s; leave language out or give %s", state_id,
				 theirs, theirs);
			return -EINVAL;
		}
		if (sandbox_language(theirs, lang) != 0) {
			snprintf(err, err_len, "state_id '%s' cannot be restored: its language is "
					       "unknown to this airlock",
				 state_id);
			return -EINVAL;
		}
		snprintf(kc->state_id, sizeof kc->state_id, "%s", state_id);
	}
	if ((keep || state_id) && !al_language(*lang)->keeps_state) {
		snprintf(err, err_len, "keep_state: %s has no interpreter whose state could be kept "
				       "(python, javascript and bash have)",
			 sandbox_language_name(*lang));
		return -EINVAL;
	}
	return 0;
}

int kept_call_prepare(struct kept_call *kc, struct state_store *st, struct sandbox_vm *vm,
		      struct sandbox_request *req, char *err, size_t err_len)
{
	if (!kc->keep && !kc->from_state)
		return 0;
	if (!vm->snapshot_dir) {
		snprintf(err, err_len, "kept state needs the language's snapshot, and there is none "
				       "(run `airlock image build`, or see `airlock doctor`)");
		return -ENOENT;
	}
	snprintf(kc->snapshot_dir, sizeof kc->snapshot_dir, "%s", vm->snapshot_dir);
	kc->origin = (struct state_origin){
		.language = sandbox_language_name(req->language),
		.backend = vm->backend->name,
		.snapshot_dir = kc->snapshot_dir,
		.snapshot_memory_ctime_ns = vm->snapshot_memory_ctime_ns,
	};
	if (kc->from_state) {
		int rc = state_find(st, kc->state_id, &kc->origin, &kc->from, err, err_len);
		if (rc)
			return rc;
		vm->kept_state_dir = kc->from.dir;
	}
	if (kc->keep) {
		int rc = state_stage(st, kc->staged, err, err_len);
		if (rc)
			return rc;
		vm->keep_to_dir = kc->staged;
	}
	req->cell = true;
	req->keep = kc->keep;
	return 0;
}

void kept_call_finish(struct kept_call *kc, struct state_store *st, const struct sandbox_result *r)
{
	if (!kc->keep || !kc->staged[0])
		return;
	if (r->error) {
		snprintf(kc->error, sizeof kc->error, "the call failed: nothing to keep");
		state_unstage(kc->staged);
	} else if (!r->kept) {
		snprintf(kc->error, sizeof kc->error, "%s",
			 r->state_error[0] ? r->state_error : "the VM was not saved");
		state_unstage(kc->staged);
	} else if (state_commit(st, kc->staged, &kc->origin, kc->kept_id, &kc->expires_at,
				kc->error, sizeof kc->error) != 0) {
		kc->kept_id[0] = '\0';
	}
	kc->staged[0] = '\0';
}

void kept_call_abandon(struct kept_call *kc)
{
	if (kc->staged[0])
		state_unstage(kc->staged);
	kc->staged[0] = '\0';
}

void kept_call_annotate(const struct kept_call *kc, json_t *structured)
{
	if (!kc->keep || !structured)
		return;
	if (kc->kept_id[0]) {
		char when[32];
		time_t t = (time_t)kc->expires_at;
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
		json_object_set_new(structured, "state_id", json_string(kc->kept_id));
		json_object_set_new(structured, "state_expires_at", json_string(when));
		json_object_set_new(structured, "state_error", json_null());
	} else {
		json_object_set_new(structured, "state_id", json_null());
		json_object_set_new(structured, "state_expires_at", json_null());
		json_object_set_new(structured, "state_error",
				    json_string(kc->error[0] ? kc->error : "no state was kept"));
	}
}
